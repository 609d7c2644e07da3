package clickhouse

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Config says how to reach ClickHouse.
type Config struct {
	Addr        []string // host:port of the native protocol (9000-style; 9440-style with TLS)
	Database    string
	User        string
	Password    string
	DialTimeout time.Duration
	TTLDays     int // raw rows older than this are dropped (servers with TTL); 0: keep

	// TLS says whether and how to encrypt, for the native protocol and the
	// HTTP interface alike.
	TLS TLSFiles
	// AllowPlaintextPassword lets a password go over a connection without
	// TLS; without it Validate refuses the combination.
	AllowPlaintextPassword bool
	// InsertTimeout bounds each insert (a batch's PrepareBatch to Send, an
	// HTTP insert's request); QueryTimeout each query (Query to Rows.Close,
	// QueryRow to Scan, Select, Exec). Zero: no deadline.
	InsertTimeout time.Duration
	QueryTimeout  time.Duration
	// QueryAttempts is how many times a read (Query, QueryRow, Select) is
	// tried when it fails on a transient error (see Transient); 1: no retry.
	QueryAttempts int
}

// TLSFiles are the TLS settings as an operator gives them: PEM files.
type TLSFiles struct {
	Enabled    bool
	CA         string // the CA that signed the server's certificate; empty: the system's roots
	Cert, Key  string // a client certificate, for servers that ask for one
	ServerName string // the name the server's certificate must carry; empty: the host dialled
}

// LongReadTimeout is the longest a Long call (see Long) waits for the
// server to send anything: clickhouse-go's own default.
const LongReadTimeout = 5 * time.Minute

// DefaultConfig returns the defaults for the given addresses.
func DefaultConfig(addr ...string) Config {
	return Config{
		Addr: addr, Database: "engage", User: "default", DialTimeout: 5 * time.Second,
		InsertTimeout: 30 * time.Second, QueryTimeout: 30 * time.Second, QueryAttempts: 3,
	}
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
	if c.InsertTimeout < 0 || c.QueryTimeout < 0 || c.DialTimeout < 0 {
		return fmt.Errorf("clickhouse: negative timeout (-clickhouse.insert-timeout %v, -clickhouse.query-timeout %v)", c.InsertTimeout, c.QueryTimeout)
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		return errors.New("clickhouse: -clickhouse.tls-cert and -clickhouse.tls-key go together: set both or neither")
	}
	if !c.TLS.Enabled && (c.TLS.CA != "" || c.TLS.Cert != "" || c.TLS.ServerName != "") {
		return errors.New("clickhouse: TLS files or server name given without -clickhouse.tls")
	}
	if c.Password != "" && !c.TLS.Enabled && !c.AllowPlaintextPassword {
		return errors.New("clickhouse: refusing to send the password without TLS, where anyone on the path can read it: set -clickhouse.tls (with -clickhouse.tls-ca for a private CA), or -clickhouse.allow-plaintext-password if the network is trusted")
	}
	return nil
}

// TLSConfig returns the tls.Config of the settings; nil when TLS is off.
func (c Config) TLSConfig() (*tls.Config, error) {
	f := c.TLS
	if !f.Enabled {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.ServerName}
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, fmt.Errorf("clickhouse: -clickhouse.tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("clickhouse: -clickhouse.tls-ca %s: no PEM certificate in it", f.CA)
		}
		cfg.RootCAs = pool
	}
	if f.Cert != "" {
		cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("clickhouse: -clickhouse.tls-cert/-clickhouse.tls-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// Open connects, checks the credentials, and returns the connection and the
// server's features. The connection puts the configured deadlines on every
// call that has none shorter and retries reads that fail on transient
// errors. Wrong credentials are an *AuthError: the caller should stop
// rather than retry.
func Open(ctx context.Context, cfg Config) (driver.Conn, Features, error) {
	if err := cfg.Validate(); err != nil {
		return nil, Features{}, err
	}
	tc, err := cfg.TLSConfig()
	if err != nil {
		return nil, Features{}, err
	}
	// The driver's read timeout bounds a silence of the server on calls
	// without a deadline (Long ones: migrations, history reads), whose
	// server-side sorts may send nothing for a while; every other call's
	// deadline overrides it.
	readTimeout := max(cfg.InsertTimeout, cfg.QueryTimeout, LongReadTimeout)
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:         cfg.Addr,
		Auth:         clickhouse.Auth{Database: "default", Username: cfg.User, Password: cfg.Password},
		TLS:          tc,
		DialTimeout:  cfg.DialTimeout,
		ReadTimeout:  readTimeout,
		Compression:  &clickhouse.Compression{Method: clickhouse.CompressionLZ4},
		MaxOpenConns: 8,
	})
	if err != nil {
		return nil, Features{}, fmt.Errorf("clickhouse open: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout+cfg.QueryTimeout)
	err = conn.Ping(pctx)
	cancel()
	if err == nil {
		var v *driver.ServerVersion
		if v, err = conn.ServerVersion(); err == nil {
			return &timedConn{Conn: conn, cfg: cfg}, FeaturesOf(v.Version.Major, v.Version.Minor), nil
		}
	}
	_ = conn.Close()
	return nil, Features{}, openError(cfg, strings.Join(cfg.Addr, ","), err)
}

// openError names the server and, for wrong credentials, says so.
func openError(cfg Config, addr string, err error) error {
	if IsAuth(err) {
		return &AuthError{Addr: addr, User: cfg.User, Err: err}
	}
	hint := ""
	if cfg.TLS.Enabled && Transient(err) {
		hint = " (is it the server's TLS port?)"
	}
	return fmt.Errorf("clickhouse at %s%s: %w", addr, hint, err)
}

// AuthError is ClickHouse refusing the user or password.
type AuthError struct {
	Addr, User string
	Err        error
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("clickhouse at %s: authentication failed for user %s: %v", e.Addr, e.User, e.Err)
}

func (e *AuthError) Unwrap() error { return e.Err }

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
