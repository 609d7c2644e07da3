package servicetest

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Cluster is a Kafka cluster of the test's own (services.sh up cluster):
// brokers that are each a combined KRaft controller and broker, on free
// loopback ports, with their data in the test's temporary folder. The
// internal topics are replicated on every broker (at most 3) with
// min.insync.replicas one less, so that one broker can be stopped.
type Cluster struct {
	t      testing.TB
	script string
	env    []string
	// Ports are the brokers' client ports, broker i (0-based) at Ports[i].
	Ports []int
	// ControllerPorts are their KRaft controller ports.
	ControllerPorts []int
	// Dir is the cluster's state folder: broker i's data, configuration
	// and logs are in Dir/kafka-node<i+1>.
	Dir string
}

// StartCluster starts a cluster of n brokers (1 to 9) and removes it, data
// and all, when the test ends. env holds further settings of services.sh,
// such as "ENGAGE_KAFKA_CLUSTER_SESSION_TIMEOUT_MS=6000".
func StartCluster(t testing.TB, n int, env ...string) *Cluster {
	t.Helper()
	if n < 1 || n > 9 {
		t.Fatalf("servicetest: a cluster of %d brokers: give 1 to 9", n)
	}
	c := &Cluster{t: t, script: Script(t), Dir: t.TempDir()}
	for range n {
		c.Ports = append(c.Ports, FreePort(t))
		c.ControllerPorts = append(c.ControllerPorts, FreePort(t))
	}
	c.env = append(append(os.Environ(), env...), "ENGAGE_SERVICES_DIR="+c.Dir,
		"ENGAGE_KAFKA_CLUSTER_NODES="+strconv.Itoa(n),
		"ENGAGE_KAFKA_CLUSTER_PORTS="+joinInts(c.Ports),
		"ENGAGE_KAFKA_CLUSTER_CONTROLLER_PORTS="+joinInts(c.ControllerPorts))
	start := time.Now()
	t.Cleanup(func() { c.run("reset", "cluster") })
	if err := c.run("up", "cluster"); err != nil {
		t.Fatal(err)
	}
	t.Logf("servicetest: a Kafka cluster of %d brokers on %s, ready in %s", n, strings.Join(c.Brokers(), ","), time.Since(start).Round(100*time.Millisecond))
	return c
}

// Brokers returns every broker's address, for -kafka.brokers.
func (c *Cluster) Brokers() []string {
	out := make([]string, len(c.Ports))
	for i := range c.Ports {
		out[i] = c.Addr(i)
	}
	return out
}

// Addr is broker i's address (0-based).
func (c *Cluster) Addr(i int) string { return fmt.Sprintf("127.0.0.1:%d", c.Ports[i]) }

// StopBroker stops broker i (0-based) with SIGTERM: a controlled shutdown,
// which hands its leaderships to the others first. Its data is kept.
func (c *Cluster) StopBroker(i int) {
	c.t.Helper()
	if err := c.run("node-down", strconv.Itoa(i+1)); err != nil {
		c.t.Fatal(err)
	}
}

// KillBroker kills broker i (0-based) with SIGKILL, as a crash: the
// controllers move its leaderships once its session times out
// (ENGAGE_KAFKA_CLUSTER_SESSION_TIMEOUT_MS). Its data is kept.
func (c *Cluster) KillBroker(i int) {
	c.t.Helper()
	if err := c.run("node-down", strconv.Itoa(i+1), "kill"); err != nil {
		c.t.Fatal(err)
	}
}

// StartBroker starts broker i (0-based) again and waits until it is back
// in the cluster.
func (c *Cluster) StartBroker(i int) {
	c.t.Helper()
	if err := c.run("node-up", strconv.Itoa(i+1)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *Cluster) run(args ...string) error {
	cmd := exec.Command(c.script, args...)
	cmd.Env = c.env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("services %v: %v\n%s", args, err, out)
	}
	return nil
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}
