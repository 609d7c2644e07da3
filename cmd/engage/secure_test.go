package main

// The services over encrypted and authenticated connections: a Kafka
// broker with a SASL_SSL listener and a ClickHouse server with TLS ports,
// both of the test's own with a CA made by the test. The collector and the
// processor reach Kafka with SCRAM-SHA-512, the sink with PLAIN, and the
// sink writes to ClickHouse over TLS as a user with a password. Wrong
// credentials and a missing CA file end a service at start with an error
// that names them.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openengage/engage/deploy/servicetest"
	"github.com/openengage/engage/sinks/clickhouse"
)

func TestServicesOverTLSAndSASL(t *testing.T) {
	t.Parallel() // a broker and a ClickHouse of its own: overlaps the other tests that start their own
	sec := servicetest.StartSecure(t)
	e := servicetest.BuildEngage(t)
	// The passwords come from the environment, as the help says they should.
	e.Env = append(e.Env, "ENGAGE_KAFKA_SASL_PASSWORD="+sec.Password, "ENGAGE_CLICKHOUSE_PASSWORD="+sec.Password)
	kafkaWith := func(mech string) []string {
		return []string{"-kafka.brokers", sec.KafkaSASLSSL, "-kafka.tls", "-kafka.tls-ca", sec.CAFile, "-kafka.sasl-mechanism", mech, "-kafka.sasl-user", sec.User}
	}
	scram, plain := kafkaWith("SCRAM-SHA-512"), kafkaWith("PLAIN")
	const db = "engage_secure"
	ch := []string{"-clickhouse.addr", sec.ClickHouseTLS, "-clickhouse.http-addr", sec.ClickHouseHTTPS, "-clickhouse.tls", "-clickhouse.tls-ca", sec.CAFile,
		"-clickhouse.user", sec.User, "-clickhouse.database", db}

	t.Run("refused at start", func(t *testing.T) {
		missingCA := filepath.Join(t.TempDir(), "no-such-ca.pem")
		otherCA := t.TempDir()
		if err := servicetest.WriteTestCerts(otherCA, "127.0.0.1"); err != nil {
			t.Fatal(err)
		}
		saslFailed := "kafka: SASL authentication failed for user engage at " + sec.KafkaSASLSSL + ": "
		for _, c := range []struct {
			name string
			args []string
			want string
		}{
			{"collect, wrong password", append(append([]string{"collect", "-addr", freeAddr(t)}, scram...), "-kafka.sasl-password", "wrong-password"), saslFailed},
			{"sink, wrong password", append(append([]string{"sink", "-metrics.addr", freeAddr(t)}, plain...), append(ch, "-kafka.sasl-password", "wrong-password")...), saslFailed},
			{"collect, missing CA file", append(append([]string{"collect", "-addr", freeAddr(t)}, scram...), "-kafka.tls-ca", missingCA), "kafka security: TLS CA file: open " + missingCA + ": no such file"},
			{"collect, untrusted broker", append(append([]string{"collect", "-addr", freeAddr(t)}, scram...), "-kafka.tls-ca", filepath.Join(otherCA, "ca.pem")),
				"kafka: TLS handshake failed for user engage at " + sec.KafkaSASLSSL + ": "},
			{"sink, PLAIN without TLS", append([]string{"sink", "-metrics.addr", freeAddr(t), "-kafka.brokers", sec.KafkaPlain, "-kafka.sasl-mechanism", "PLAIN", "-kafka.sasl-user", sec.User}, ch...),
				"-kafka.sasl-mechanism PLAIN without -kafka.tls sends the password readable"},
		} {
			start := time.Now()
			stderr, err := runFor(e, 60*time.Second, c.args...)
			took := time.Since(start)
			t.Logf("%s: exit after %s: %v", c.name, took.Round(time.Millisecond), err)
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Errorf("%s: %v, want exit status 1\n%s", c.name, err, stderr)
			}
			if !strings.Contains(stderr, c.want) {
				t.Errorf("%s: stderr does not say %q:\n%s", c.name, c.want, stderr)
			}
			if took > 20*time.Second {
				t.Errorf("%s: took %s to exit", c.name, took)
			}
		}
	})

	t.Run("collect, sink and process", func(t *testing.T) {
		out := e.Run(append([]string{"topics", "-dev"}, scram...)...)
		if !strings.Contains(out, "created") {
			t.Fatalf("engage topics over SASL_SSL:\n%s", out)
		}
		e.Run(append([]string{"segments", "put", "-app", "demo", "-name", "readers", "-text", `did event "article_read" at least 2 times`}, scram...)...)
		collect := e.Start("collect", "-addr", "/readyz", append([]string{"-log.level", "warn"}, scram...)...).URL
		e.Start("sink", "-metrics.addr", "/healthz", append(append([]string{"-log.level", "warn"}, plain...), ch...)...)
		process := e.Start("process", "-addr", "/healthz", append([]string{"-log.level", "warn", "-api.tokens", apiToken + ":*",
			"-api.cluster-secret", "secure-test-cluster-secret-0123456789abcdef"}, scram...)...).URL

		// sec-d0 reads three articles (a member), sec-d1 one (not).
		ids := []string{"sec-d0-0", "sec-d0-1", "sec-d0-2", "sec-d1-0"}
		l := &load{url: collect}
		l.send(ids)
		if len(l.acked()) != len(ids) {
			t.Fatalf("the collector acknowledged %d of %d records", len(l.acked()), len(ids))
		}

		// In ClickHouse, read back through its TLS port as user engage.
		cfg := clickhouse.DefaultConfig(sec.ClickHouseTLS)
		cfg.Database, cfg.User, cfg.Password = db, sec.User, sec.Password
		cfg.TLS = clickhouse.TLSFiles{Enabled: true, CA: sec.CAFile}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, _, err := clickhouse.Open(ctx, cfg)
		if err != nil {
			t.Fatalf("ClickHouse over TLS: %v", err)
		}
		defer conn.Close()
		var got []string
		waitFor(t, 2*time.Minute, "the records in ClickHouse", func() bool {
			got = got[:0]
			rows, err := conn.Query(context.Background(), "SELECT DISTINCT message_id FROM "+db+".tags ORDER BY message_id")
			if err != nil {
				return false
			}
			defer rows.Close()
			for rows.Next() {
				var id string
				if rows.Scan(&id) == nil {
					got = append(got, id)
				}
			}
			return len(got) >= len(ids)
		})
		if strings.Join(got, ",") != strings.Join(ids, ",") {
			t.Errorf("ClickHouse has %v, want %v", got, ids)
		}

		// The processor read the records over SASL_SSL: the segment has
		// sec-d0 and not sec-d1.
		waitFor(t, 2*time.Minute, "the processor's segment", func() bool { return segmentSizeNow(process) == 1 })
		for device, want := range map[string]bool{"sec-d0": true, "sec-d1": false} {
			if member := explainMember(t, process, device); member != want {
				t.Errorf("device %s: member %v, want %v", device, member, want)
			}
		}
	})
}

// runFor runs the engage binary with args and returns its standard error
// and how it ended; it is killed after limit.
func runFor(e *servicetest.Engage, limit time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.Bin, args...)
	cmd.Env = e.Env
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	err := cmd.Run()
	return stderr.String(), err
}

func freeAddr(t *testing.T) string { return "127.0.0.1:" + strconv.Itoa(servicetest.FreePort(t)) }

// segmentSizeNow returns the size of the segment demo/readers, or -1 when
// the processor does not answer with it (yet).
func segmentSizeNow(url string) int {
	req, _ := http.NewRequest(http.MethodGet, url+"/v1/segments/demo/readers", nil)
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var info struct {
		Size    *int  `json:"size"`
		Missing []int `json:"missing_partitions"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&info) != nil || info.Size == nil || len(info.Missing) > 0 {
		return -1
	}
	return *info.Size
}

// explainMember asks the processor whether device is in demo/readers.
func explainMember(t *testing.T, url, device string) bool {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url+"/v1/segments/demo/readers/explain?device="+device, nil)
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var x struct {
		DeviceID string `json:"device_id"`
		Member   bool   `json:"member"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &x) != nil || x.DeviceID != device {
		t.Fatalf("explain %s: %d %s", device, resp.StatusCode, body)
	}
	return x.Member
}
