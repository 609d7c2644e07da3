// Package servicetest lets integration tests use the real services that
// `make test` starts (deploy/services/services.sh), or start their own
// instance of one on free loopback ports when they must stop it mid-test.
package servicetest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Env returns the value of the variable that names a running service. When
// it is unset the test is skipped, loudly; under ENGAGE_REQUIRE_SERVICES=1
// (as `make test` sets) it fails instead.
func Env(t testing.TB, name, what string) []string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		msg := fmt.Sprintf("NO REAL %s: integration test not run. Start it with `make services` and export %s (`make test` does both)", what, name)
		if os.Getenv("ENGAGE_REQUIRE_SERVICES") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return strings.Split(v, ",")
}

// Script returns the path of deploy/services/services.sh (`make test` sets
// ENGAGE_SERVICES_SCRIPT), skipping or failing the test as Env does.
func Script(t testing.TB) string {
	return Env(t, "ENGAGE_SERVICES_SCRIPT", "SERVICES SCRIPT (this test starts and stops a service of its own)")[0]
}

// Own is a service instance of the test's own: its own state folder and
// ports, so that stopping it disturbs no other test.
type Own struct {
	t      testing.TB
	script string
	env    []string
	// Port is the instance's main port (Kafka broker, ClickHouse native).
	Port int
	// Second is its other port (Kafka controller, ClickHouse HTTP).
	Second int
}

// Start starts service ("kafka" or "clickhouse") on free loopback ports and
// removes it, data and all, when the test ends. env holds further settings
// of services.sh for this instance, such as
// "ENGAGE_KAFKA_RETENTION_CHECK_MS=200".
func Start(t testing.TB, service string, env ...string) *Own {
	t.Helper()
	o := &Own{t: t, script: Script(t), Port: FreePort(t)}
	second := FreePort(t)
	o.Second = second
	o.env = append(append(os.Environ(), env...), "ENGAGE_SERVICES_DIR="+t.TempDir())
	switch service {
	case "kafka":
		o.env = append(o.env, fmt.Sprintf("ENGAGE_KAFKA_PORT=%d", o.Port), fmt.Sprintf("ENGAGE_KAFKA_CONTROLLER_PORT=%d", second))
	case "clickhouse":
		o.env = append(o.env, fmt.Sprintf("ENGAGE_CLICKHOUSE_PORT=%d", o.Port), fmt.Sprintf("ENGAGE_CLICKHOUSE_HTTP_PORT=%d", second))
	default:
		t.Fatalf("servicetest: unknown service %q", service)
	}
	o.Run("up", service)
	t.Cleanup(func() { o.Run("reset", service) })
	return o
}

// Addr is the instance's main address.
func (o *Own) Addr() string { return fmt.Sprintf("127.0.0.1:%d", o.Port) }

// SecondAddr is the instance's other address (ClickHouse: HTTP).
func (o *Own) SecondAddr() string { return fmt.Sprintf("127.0.0.1:%d", o.Second) }

// Run runs the services script on the instance: Run("down", "kafka").
func (o *Own) Run(args ...string) {
	o.t.Helper()
	cmd := exec.Command(o.script, args...)
	cmd.Env = o.env
	if out, err := cmd.CombinedOutput(); err != nil {
		o.t.Fatalf("services %v: %v\n%s", args, err, out)
	}
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// ProcCPU returns the CPU time (user + system) process pid has used, from
// /proc; 0 where there is no /proc.
func ProcCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil || pid <= 0 {
		return 0
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

// ClickHousePID finds the oldest ClickHouse server process (the one `make
// services` started, in benchmarks), or returns 0.
func ClickHousePID() int {
	out, err := exec.Command("pgrep", "-o", "-f", "clickhouse-server").Output()
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return pid
}
