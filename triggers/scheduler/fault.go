package scheduler

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
)

// Fault injection for the crash tests: ENGAGE_FAULT=<point>:<n> makes the
// process exit at once, as if killed, the nth time it reaches point:
//
//	after-outputs  deliveries and decisions written, states not yet
//	after-states   states written, input offsets not yet committed
//
// A SIGKILL from outside rarely lands in these windows (they last
// milliseconds); the tests need them hit every time. Unset in production.
var fault = parseFault(os.Getenv("ENGAGE_FAULT"))

type faultPoint struct {
	point string
	n     int64
	seen  atomic.Int64
}

func parseFault(v string) *faultPoint {
	p, n, ok := strings.Cut(v, ":")
	if !ok {
		return nil
	}
	k, err := strconv.ParseInt(n, 10, 64)
	if err != nil || k <= 0 {
		return nil
	}
	return &faultPoint{point: p, n: k}
}

// reach exits the process if the fault is set for point and this is its
// nth time.
func reach(point string) {
	if fault == nil || fault.point != point {
		return
	}
	if fault.seen.Add(1) == fault.n {
		fmt.Fprintf(os.Stderr, "ENGAGE_FAULT: exiting at %s #%d\n", point, fault.n)
		os.Exit(137)
	}
}
