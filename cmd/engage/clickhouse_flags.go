package main

import (
	"github.com/openengage/engage/sinks/clickhouse"
)

// clickhouseFlags are the ClickHouse settings shared by sink, migrate and api.
type clickhouseFlags struct {
	addr, httpAddr, database, user, password string
	ttlDays                                  int
}

func (c *clickhouseFlags) register(fs interface {
	StringVar(*string, string, string, string)
	IntVar(*int, string, int, string)
}) {
	fs.StringVar(&c.addr, "clickhouse.addr", "", "comma-separated ClickHouse native-protocol addresses (host:9000)")
	fs.StringVar(&c.httpAddr, "clickhouse.http-addr", "", "ClickHouse HTTP address (host:8123); the sink writes through it when set (faster), else through the native protocol")
	fs.StringVar(&c.database, "clickhouse.database", "engage", "database")
	fs.StringVar(&c.user, "clickhouse.user", "default", "user")
	fs.StringVar(&c.password, "clickhouse.password", "", "password")
	fs.IntVar(&c.ttlDays, "clickhouse.ttl-days", 0, "drop raw rows older than this many days (servers with TTL); 0: keep")
}

func (c *clickhouseFlags) config() clickhouse.Config {
	cfg := clickhouse.DefaultConfig(splitList(c.addr)...)
	cfg.Database, cfg.User, cfg.Password, cfg.TTLDays = c.database, c.user, c.password, c.ttlDays
	return cfg
}
