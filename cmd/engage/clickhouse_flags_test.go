package main

import (
	"strings"
	"testing"
	"time"

	"github.com/openengage/engage/deploy/servicetest"
)

// TestClickHouseFlagsConfig checks that the flags (and their environment
// variables) reach the configuration.
func TestClickHouseFlagsConfig(t *testing.T) {
	t.Setenv("ENGAGE_CLICKHOUSE_PASSWORD", "from-env")
	fs := newFlagSet("test")
	var cf clickhouseFlags
	cf.register(fs)
	if err := parse(fs, []string{"-clickhouse.addr", "a:9440,b:9440", "-clickhouse.tls-ca", "/ca.pem", "-clickhouse.tls-server-name", "ch.internal",
		"-clickhouse.insert-timeout", "7s", "-clickhouse.query-timeout", "9s", "-clickhouse.user", "engage"}); err != nil {
		t.Fatal(err)
	}
	cfg := cf.config()
	if !cfg.TLS.Enabled || cfg.TLS.CA != "/ca.pem" || cfg.TLS.ServerName != "ch.internal" {
		t.Errorf("TLS %+v: want enabled by -clickhouse.tls-ca, with its CA and server name", cfg.TLS)
	}
	if cfg.Password != "from-env" || cfg.User != "engage" || len(cfg.Addr) != 2 {
		t.Errorf("user %q password %q addr %v", cfg.User, cfg.Password, cfg.Addr)
	}
	if cfg.InsertTimeout != 7*time.Second || cfg.QueryTimeout != 9*time.Second || cfg.AllowPlaintextPassword {
		t.Errorf("insert timeout %s, query timeout %s, allow plaintext %v", cfg.InsertTimeout, cfg.QueryTimeout, cfg.AllowPlaintextPassword)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

// TestClickHouseRefusalsAtStart runs engage migrate as an operator would
// get it wrong: each mistake ends the command at once with status 1 and an
// error that says what to fix.
func TestClickHouseRefusalsAtStart(t *testing.T) {
	addr := servicetest.Env(t, "ENGAGE_CLICKHOUSE_ADDR", "CLICKHOUSE")[0]
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"password without TLS", []string{"-clickhouse.password", "secret"}, "-clickhouse.allow-plaintext-password"},
		{"unknown user", []string{"-clickhouse.user", "nobody_flags_test"}, "clickhouse at " + addr + ": authentication failed for user nobody_flags_test"},
		{"cert without key", []string{"-clickhouse.tls", "-clickhouse.tls-cert", "c.pem"}, "-clickhouse.tls-cert and -clickhouse.tls-key go together"},
		{"missing CA file", []string{"-clickhouse.tls-ca", "/nonexistent/ca.pem"}, "-clickhouse.tls-ca"},
		{"TLS to a plain port", []string{"-clickhouse.tls"}, "clickhouse at " + addr},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, stderr := run(t, append([]string{"migrate", "-clickhouse.addr", addr, "-clickhouse.database", "flags_test_never_made"}, c.args...)...)
			if code != 1 || !strings.Contains(stderr, c.want) {
				t.Fatalf("exit %d, stderr %q: want 1 and %q", code, stderr, c.want)
			}
		})
	}
}
