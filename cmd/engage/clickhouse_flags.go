package main

import (
	"flag"
	"time"

	"github.com/openengage/engage/sinks/clickhouse"
)

// clickhouseFlags are the ClickHouse settings shared by sink, migrate, api,
// process and dry-run.
type clickhouseFlags struct {
	addr, httpAddr, database, user, password string
	ttlDays                                  int
	tls                                      bool
	tlsCA, tlsCert, tlsKey, tlsServerName    string
	allowPlaintextPassword                   bool
	insertTimeout, queryTimeout              time.Duration
}

func (c *clickhouseFlags) register(fs *flag.FlagSet) {
	d := clickhouse.DefaultConfig()
	fs.StringVar(&c.addr, "clickhouse.addr", "", "comma-separated ClickHouse native-protocol addresses (host:9000; with -clickhouse.tls the secure port, host:9440)")
	fs.StringVar(&c.httpAddr, "clickhouse.http-addr", "", "ClickHouse HTTP address (host:8123; with -clickhouse.tls the HTTPS port, host:8443); the sink writes through it when set (faster), else through the native protocol")
	fs.StringVar(&c.database, "clickhouse.database", "engage", "database")
	fs.StringVar(&c.user, "clickhouse.user", "default", "user (the api needs only a read-only one)")
	fs.StringVar(&c.password, "clickhouse.password", "", "password; set it in the environment (ENGAGE_CLICKHOUSE_PASSWORD) rather than on the command line, where ps shows it")
	fs.BoolVar(&c.tls, "clickhouse.tls", false, "connect with TLS, native protocol and HTTP alike")
	fs.StringVar(&c.tlsCA, "clickhouse.tls-ca", "", "PEM file of the CA that signed the server's certificate (implies -clickhouse.tls); empty: the system's roots")
	fs.StringVar(&c.tlsCert, "clickhouse.tls-cert", "", "PEM client certificate, for servers that ask for one (with -clickhouse.tls-key)")
	fs.StringVar(&c.tlsKey, "clickhouse.tls-key", "", "PEM key of -clickhouse.tls-cert")
	fs.StringVar(&c.tlsServerName, "clickhouse.tls-server-name", "", "name the server's certificate must carry; empty: the host of the address")
	fs.BoolVar(&c.allowPlaintextPassword, "clickhouse.allow-plaintext-password", false, "send -clickhouse.password without TLS (refused otherwise: anyone on the path reads it)")
	fs.DurationVar(&c.insertTimeout, "clickhouse.insert-timeout", d.InsertTimeout, "deadline of each insert")
	fs.DurationVar(&c.queryTimeout, "clickhouse.query-timeout", d.QueryTimeout, "deadline of each query (an API request whose query runs out answers 504)")
	fs.IntVar(&c.ttlDays, "clickhouse.ttl-days", 0, "drop raw rows older than this many days (servers with TTL); 0: keep")
}

func (c *clickhouseFlags) config() clickhouse.Config {
	cfg := clickhouse.DefaultConfig(splitList(c.addr)...)
	cfg.Database, cfg.User, cfg.Password, cfg.TTLDays = c.database, c.user, c.password, c.ttlDays
	cfg.TLS = clickhouse.TLSFiles{Enabled: c.tls || c.tlsCA != "", CA: c.tlsCA, Cert: c.tlsCert, Key: c.tlsKey, ServerName: c.tlsServerName}
	cfg.AllowPlaintextPassword = c.allowPlaintextPassword
	cfg.InsertTimeout, cfg.QueryTimeout = c.insertTimeout, c.queryTimeout
	return cfg
}
