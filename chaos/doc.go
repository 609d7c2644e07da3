// Package chaos is the bounded chaos run of issue 12 (point 8): the
// collector, the sink and the segment processor run as real processes of
// the engage binary against a three-broker Kafka cluster and a ClickHouse
// server of the run's own, under a steady load, while a seeded fault
// driver kills (SIGKILL) and stops (SIGTERM) each of them and one broker
// at a time at random moments, then restarts them. At the end every
// record the collector acknowledged must be in ClickHouse exactly once,
// and the processor's segment memberships must equal those of a fresh,
// undisturbed processor over the same records.
//
// The package holds the pieces the run is made of: the fault plan (Plan,
// pure and seeded), a supervisor of engage processes that keeps their
// address across restarts (Proc), and the load driver (Load). The run
// itself is TestChaos in chaos_test.go, gated by ENGAGE_CHAOS=1: `make
// chaos` sets it; `go test ./...` skips it at once.
package chaos
