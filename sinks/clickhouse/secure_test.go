package clickhouse_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openengage/engage/deploy/servicetest"
	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/sinks/clickhouse"
)

// writeCA makes a CA and a server certificate for 127.0.0.1 and localhost
// signed by it, as services.sh wants them, in dir.
func writeCA(t testing.TB, dir string) {
	t.Helper()
	if err := servicetest.WriteTestCerts(dir, "127.0.0.1", "localhost"); err != nil {
		t.Fatal(err)
	}
}

// secureClickHouse is a ClickHouse of the test's own with a TLS native
// port and an HTTPS port, and the user engage with a password.
type secureClickHouse struct {
	own               *servicetest.Own
	ca                string // ca.pem
	password          string
	secureAddr, https string // host:port of the TLS native port and the HTTPS port
}

func startSecure(t *testing.T) *secureClickHouse {
	t.Helper()
	dir := t.TempDir()
	writeCA(t, dir)
	native, https := servicetest.FreePort(t), servicetest.FreePort(t)
	s := &secureClickHouse{ca: filepath.Join(dir, "ca.pem"), password: "s3cret-" + fmt.Sprint(time.Now().UnixNano()%1e6)}
	s.own = servicetest.Start(t, "clickhouse", "ENGAGE_TLS_DIR="+dir, "ENGAGE_SECURE_PASSWORD="+s.password,
		fmt.Sprintf("ENGAGE_CLICKHOUSE_SECURE_PORT=%d", native), fmt.Sprintf("ENGAGE_CLICKHOUSE_HTTPS_PORT=%d", https))
	s.secureAddr, s.https = fmt.Sprintf("127.0.0.1:%d", native), fmt.Sprintf("127.0.0.1:%d", https)
	return s
}

// config is the configuration of user engage over TLS.
func (s *secureClickHouse) config(db string) clickhouse.Config {
	cfg := clickhouse.DefaultConfig(s.secureAddr)
	cfg.Database, cfg.User, cfg.Password = db, "engage", s.password
	cfg.TLS = clickhouse.TLSFiles{Enabled: true, CA: s.ca}
	return cfg
}

// TestSecure runs the native protocol and the HTTP interface over TLS with
// a password, against a real ClickHouse, and checks that wrong credentials
// and certificates fail at start with errors that say so.
func TestSecure(t *testing.T) {
	s := startSecure(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := s.config("secure_test")
	conn, f, err := clickhouse.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := clickhouse.Migrate(ctx, conn, cfg, f); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)
	rows := func(dev string, n int) []clickhouse.Row {
		var rs []clickhouse.Row
		for i := range n {
			rs = append(rs, clickhouse.Row{Rec: tag.Record{Kind: tag.KindEvent, AppID: "news", DeviceID: dev, MessageID: fmt.Sprintf("%s-%d", dev, i),
				Name: "opened", Time: t0.Add(time.Duration(i) * time.Second)}, Offset: int64(i)})
		}
		return rs
	}
	count := func(dev string) uint64 {
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM secure_test.tags WHERE device_id = ?", dev).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	t.Run("native-writes-and-reads", func(t *testing.T) {
		if err := clickhouse.NewWriter(conn, cfg.Database).Write(ctx, rows("native", 7)); err != nil {
			t.Fatal(err)
		}
		if n := count("native"); n != 7 {
			t.Fatalf("%d rows read back over TLS, want 7", n)
		}
	})
	t.Run("http-writes", func(t *testing.T) {
		hw, err := clickhouse.NewHTTPWriter(ctx, conn, cfg, s.https)
		if err != nil {
			t.Fatal(err)
		}
		if err := hw.Write(ctx, rows("https", 5)); err != nil {
			t.Fatal(err)
		}
		if n := count("https"); n != 5 {
			t.Fatalf("%d rows written over HTTPS, want 5", n)
		}
	})
	t.Run("https-refuses-plain-http-port", func(t *testing.T) {
		// TLS asked for, the plain HTTP port given: the handshake fails at start.
		_, err := clickhouse.NewHTTPWriter(ctx, conn, cfg, s.own.SecondAddr())
		if err == nil {
			t.Fatal("TLS to a plain HTTP port succeeded")
		}
	})
	for _, c := range []struct{ name, user, password string }{
		{"wrong-password", "engage", "not-" + s.password},
		{"unknown-user", "nobody", s.password},
	} {
		bad := s.config("secure_test")
		bad.User, bad.Password = c.user, c.password
		want := "authentication failed for user " + c.user
		t.Run(c.name+"-native", func(t *testing.T) {
			_, _, err := clickhouse.Open(ctx, bad)
			var ae *clickhouse.AuthError
			if !errors.As(err, &ae) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), s.secureAddr) {
				t.Fatalf("Open: %v, want an AuthError naming %s and %q", err, s.secureAddr, want)
			}
			if clickhouse.Transient(err) || clickhouse.IsPermanent(err) {
				t.Fatalf("%v classified as transient or as the data's fault", err)
			}
		})
		t.Run(c.name+"-http", func(t *testing.T) {
			_, err := clickhouse.NewHTTPWriter(ctx, conn, bad, s.https)
			var ae *clickhouse.AuthError
			if !errors.As(err, &ae) || !strings.Contains(err.Error(), want) {
				t.Fatalf("NewHTTPWriter: %v, want an AuthError with %q", err, want)
			}
		})
	}
	t.Run("unknown-ca", func(t *testing.T) {
		other := t.TempDir()
		writeCA(t, other)
		bad := s.config("secure_test")
		bad.TLS.CA = filepath.Join(other, "ca.pem")
		if _, _, err := clickhouse.Open(ctx, bad); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("Open with another CA: %v, want a certificate error", err)
		}
		if _, err := clickhouse.NewHTTPWriter(ctx, conn, bad, s.https); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("NewHTTPWriter with another CA: %v, want a certificate error", err)
		}
	})
}

// TestPlaintextPasswordRefused checks that a password is not sent without
// TLS unless the operator allows it, by the flag the error names.
func TestPlaintextPasswordRefused(t *testing.T) {
	cfg := clickhouse.DefaultConfig("127.0.0.1:1") // never dialled
	cfg.Password = "secret"
	ctx := context.Background()
	const flag = "-clickhouse.allow-plaintext-password"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), flag) {
		t.Fatalf("Validate: %v, want a refusal naming %s", err, flag)
	}
	if _, _, err := clickhouse.Open(ctx, cfg); err == nil || !strings.Contains(err.Error(), flag) {
		t.Fatalf("Open: %v, want a refusal naming %s", err, flag)
	}
	if _, err := clickhouse.NewHTTPWriter(ctx, nil, cfg, "127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), flag) {
		t.Fatalf("NewHTTPWriter: %v, want a refusal naming %s", err, flag)
	}
	cfg.AllowPlaintextPassword = true
	if err := cfg.Validate(); err != nil {
		t.Fatalf("allowed: %v", err)
	}
	cfg.AllowPlaintextPassword, cfg.TLS.Enabled = false, true
	if err := cfg.Validate(); err != nil {
		t.Fatalf("over TLS: %v", err)
	}
	cfg.TLS.Enabled, cfg.Password = false, ""
	if err := cfg.Validate(); err != nil {
		t.Fatalf("no password: %v", err)
	}
}
