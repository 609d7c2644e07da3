// Package fault is fault injection for the crash tests: ENGAGE_FAULT=<point>:<n>
// makes the process exit at once, as if killed, the nth time it reaches
// point. A SIGKILL from outside rarely lands in the windows that matter
// (they last milliseconds); the tests need them hit every time. Unset in
// production, it costs a nil check.
package fault

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
)

// The points (each service names its own):
//
//	after-outputs   engage schedule: deliveries and decisions written, states not yet
//	after-states    engage schedule: states written, input offsets not yet committed
//	after-attempts  engage deliver: attempts written, nothing sent yet
//	after-sends     engage deliver: sent, the results not written yet
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

// Reach exits the process if the fault is set for point and this is its
// nth time.
func Reach(point string) {
	if fault == nil || fault.point != point {
		return
	}
	if fault.seen.Add(1) == fault.n {
		fmt.Fprintf(os.Stderr, "ENGAGE_FAULT: exiting at %s #%d\n", point, fault.n)
		os.Exit(137)
	}
}
