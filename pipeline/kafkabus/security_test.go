package kafkabus

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/openengage/engage/deploy/servicetest"
)

// Settings that cannot work are refused, each with a message naming what
// is wrong.
func TestSecurityBuildRefuses(t *testing.T) {
	dir := t.TempDir()
	if err := servicetest.WriteTestCerts(dir, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		s    Security
		want string
	}{
		{Security{SASLMechanism: "PLAIN", User: "u", Password: "p"}, "SASL PLAIN without TLS"},
		{Security{SASLMechanism: "SCRAM-SHA-1", User: "u", Password: "p"}, `SASL mechanism "SCRAM-SHA-1" unknown`},
		{Security{SASLMechanism: "SCRAM-SHA-512", User: "u"}, "SCRAM-SHA-512 needs a user and a password"},
		{Security{User: "u", Password: "p"}, "no SASL mechanism"},
		{Security{CAFile: filepath.Join(dir, "ca.pem")}, "TLS is off"},
		{Security{TLS: true, CAFile: filepath.Join(dir, "missing.pem")}, "TLS CA file: open " + filepath.Join(dir, "missing.pem")},
		{Security{TLS: true, CAFile: notPEM}, "holds no PEM certificate"},
		{Security{TLS: true, CertFile: filepath.Join(dir, "server.pem")}, "needs both its certificate file and its key file"},
		{Security{TLS: true, CertFile: filepath.Join(dir, "server.pem"), KeyFile: filepath.Join(dir, "ca-key.pem")}, "TLS client certificate"},
	} {
		_, err := c.s.build()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one with %q", c.s, err, c.want)
		}
	}
	for _, s := range []Security{
		{},
		{SASLMechanism: "none"},
		{SASLMechanism: "PLAIN", User: "u", Password: "p", AllowPlaintextSASL: true},
		{TLS: true, SASLMechanism: "plain", User: "u", Password: "p"},
		{TLS: true, CAFile: filepath.Join(dir, "ca.pem"), CertFile: filepath.Join(dir, "server.pem"), KeyFile: filepath.Join(dir, "server-key.pem"), ServerName: "x"},
		{SASLMechanism: "SCRAM-SHA-256", User: "u", Password: "p"},
	} {
		if _, err := s.build(); err != nil {
			t.Errorf("%+v: %v", s, err)
		}
	}
}

// A refused TLS handshake or SASL exchange is never transient, even when
// it comes wrapped as a network error: retrying cannot cure it.
func TestTransientAuthFailures(t *testing.T) {
	tlsErr := &net.OpError{Op: "remote error", Net: "tcp", Err: &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}}
	for err, want := range map[error]bool{
		fmt.Errorf("dial: %w", tlsErr):                                false,
		&net.OpError{Op: "read", Net: "tcp", Err: tls.AlertError(42)}: false,
		kafka.SASLAuthenticationFailed:                                false,
		fmt.Errorf("could not successfully authenticate to 127.0.0.1:1 with SASL: %w", kafka.SASLAuthenticationFailed): false,
		&AuthError{What: "SASL authentication", Err: errors.New("x")}:                                                  false,
		&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}:                                    true,
	} {
		if got := Transient(err); got != want {
			t.Errorf("Transient(%v) = %v, want %v", err, got, want)
		}
	}
}

// Configure sets the process's security once, before any client is made;
// setting the same again does nothing.
func TestConfigureOnce(t *testing.T) {
	if err := Configure(Security{SASLMechanism: "none"}); err != nil {
		t.Fatalf("plaintext, as it is: %v", err)
	}
	current() // a client was made
	if err := Configure(Security{TLS: true}); err == nil || !strings.Contains(err.Error(), "after a Kafka client was made") {
		t.Fatalf("TLS after a client was made: %v", err)
	}
	if err := Configure(Security{}); err != nil {
		t.Fatalf("plaintext again: %v", err)
	}
	if security.Load() != nil {
		t.Fatal("a refused Configure changed the setting")
	}
}

// Against a real broker's SASL_SSL listener: the right credentials pass
// with SCRAM-SHA-512 and PLAIN; a wrong password, a CA that did not sign
// the broker's certificate and a server name it does not carry each fail
// at once with an error naming the failure, which is not transient.
func TestCheckAuthRealKafka(t *testing.T) {
	t.Parallel() // a broker and a ClickHouse of its own: overlaps the other tests that start their own
	sec := servicetest.StartSecure(t)
	otherCA := t.TempDir()
	if err := servicetest.WriteTestCerts(otherCA, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	check := func(s Security, brokers ...string) error {
		t.Helper()
		sc, err := s.build()
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		start := time.Now()
		if len(brokers) == 0 {
			brokers = []string{sec.KafkaSASLSSL}
		}
		err = checkAuth(ctx, brokers, sc)
		if d := time.Since(start); d > 30*time.Second {
			t.Errorf("%s %s: check took %v", s.SASLMechanism, s.Password, d)
		}
		return err
	}
	for _, mech := range []string{SASLScramSHA512, SASLPlain} {
		if err := check(Security{TLS: true, CAFile: sec.CAFile, SASLMechanism: mech, User: sec.User, Password: sec.Password}); err != nil {
			t.Errorf("%s with the right password: %v", mech, err)
		}
	}
	for _, c := range []struct {
		s    Security
		want string
	}{
		{Security{TLS: true, CAFile: sec.CAFile, SASLMechanism: SASLScramSHA512, User: sec.User, Password: "wrong"},
			`^kafka: SASL authentication failed for user engage at ` + regexp.QuoteMeta(sec.KafkaSASLSSL) + `: .*SASL Authentication failed`},
		{Security{TLS: true, CAFile: sec.CAFile, SASLMechanism: SASLPlain, User: sec.User, Password: "wrong"},
			`^kafka: SASL authentication failed for user engage at ` + regexp.QuoteMeta(sec.KafkaSASLSSL) + `: `},
		{Security{TLS: true, CAFile: filepath.Join(otherCA, "ca.pem"), SASLMechanism: SASLScramSHA512, User: sec.User, Password: sec.Password},
			`^kafka: TLS handshake failed for user engage at ` + regexp.QuoteMeta(sec.KafkaSASLSSL) + `: .*certificate signed by unknown authority`},
		{Security{TLS: true, CAFile: sec.CAFile, ServerName: "kafka.example.com", SASLMechanism: SASLScramSHA512, User: sec.User, Password: sec.Password},
			`^kafka: TLS handshake failed .*kafka.example.com`},
		// TLS without SASL on the SASL_SSL listener; TLS on the plaintext one.
		{Security{TLS: true, CAFile: sec.CAFile},
			`^kafka: connection setup failed at ` + regexp.QuoteMeta(sec.KafkaSASLSSL) + `: .*EOF \(the broker closed the connection before answering: does its listener at this address take TLS without SASL\?\)$`},
		{Security{TLS: true, CAFile: sec.CAFile, SASLMechanism: SASLScramSHA512, User: sec.User, Password: sec.Password},
			`^kafka: connection setup failed for user engage at ` + regexp.QuoteMeta(sec.KafkaPlain) + `: .*EOF \(the broker closed the connection before answering: does its listener at this address take TLS with SASL SCRAM-SHA-512\?\)$`},
	} {
		broker := sec.KafkaSASLSSL // unless the case is about the plaintext listener
		if strings.Contains(c.want, regexp.QuoteMeta(sec.KafkaPlain)) {
			broker = sec.KafkaPlain
		}
		err := check(c.s, broker)
		if err == nil || !regexp.MustCompile(c.want).MatchString(err.Error()) {
			t.Errorf("%s password %q CA %s: error %v, want one matching %s", c.s.SASLMechanism, c.s.Password, c.s.CAFile, err, c.want)
			continue
		}
		if Transient(err) {
			t.Errorf("%v: transient", err)
		}
	}
}
