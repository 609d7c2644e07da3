package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Config says how to reach ClickHouse.
type Config struct {
	Addr        []string // host:port of the native protocol (9000-style)
	Database    string
	User        string
	Password    string
	DialTimeout time.Duration
	TTLDays     int // raw rows older than this are dropped (servers with TTL); 0: keep
}

// DefaultConfig returns the defaults for the given addresses.
func DefaultConfig(addr ...string) Config {
	return Config{Addr: addr, Database: "engage", User: "default", DialTimeout: 5 * time.Second}
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate checks the configuration.
func (c Config) Validate() error {
	if len(c.Addr) == 0 {
		return errors.New("clickhouse: no address: set -clickhouse.addr or ENGAGE_CLICKHOUSE_ADDR")
	}
	if !identRE.MatchString(c.Database) {
		return fmt.Errorf("clickhouse: database name %q: use letters, digits and _", c.Database)
	}
	if c.TTLDays < 0 {
		return errors.New("clickhouse: negative TTL")
	}
	return nil
}

// Open connects and returns the connection and the server's features.
func Open(ctx context.Context, cfg Config) (driver.Conn, Features, error) {
	if err := cfg.Validate(); err != nil {
		return nil, Features{}, err
	}
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:         cfg.Addr,
		Auth:         clickhouse.Auth{Database: "default", Username: cfg.User, Password: cfg.Password},
		DialTimeout:  cfg.DialTimeout,
		Compression:  &clickhouse.Compression{Method: clickhouse.CompressionLZ4},
		MaxOpenConns: 8,
	})
	if err != nil {
		return nil, Features{}, fmt.Errorf("clickhouse open: %w", err)
	}
	v, err := conn.ServerVersion()
	if err != nil {
		_ = conn.Close()
		return nil, Features{}, fmt.Errorf("clickhouse at %v: %w", cfg.Addr, err)
	}
	return conn, FeaturesOf(v.Version.Major, v.Version.Minor), nil
}

// Features are what the server supports beyond ClickHouse 18.16.
type Features struct {
	Major, Minor   uint64
	LowCardinality bool // LowCardinality(String) without an experimental setting (19.9+)
	DateTime64     bool // DateTime64(3) (20.1+)
	TTL            bool // table TTL (19.6+)
}

// FeaturesOf returns the features of a server version.
func FeaturesOf(major, minor uint64) Features {
	at := func(ma, mi uint64) bool { return major > ma || major == ma && minor >= mi }
	return Features{Major: major, Minor: minor, LowCardinality: at(19, 9), DateTime64: at(20, 1), TTL: at(19, 6)}
}

func (f Features) String() string {
	return fmt.Sprintf("ClickHouse %d.%d (LowCardinality %v, DateTime64 %v, TTL %v)", f.Major, f.Minor, f.LowCardinality, f.DateTime64, f.TTL)
}
