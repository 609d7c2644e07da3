package delivery

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openengage/engage/triggers/scheduler"
)

type slowSender struct {
	now, most atomic.Int64
}

func (s *slowSender) Send(context.Context, *scheduler.DeliveryMessage) Result {
	n := s.now.Add(1)
	for {
		m := s.most.Load()
		if n <= m || s.most.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(20 * time.Millisecond)
	s.now.Add(-1)
	return Result{Kind: Sent}
}

// An app's limits hold however many send at once: in flight at most
// MaxInFlight, and no faster than Rate (after a burst of a tenth of a
// second).
func TestLimits(t *testing.T) {
	s := &slowSender{}
	l := Limited(s, Limits{Rate: 200, MaxInFlight: 5})
	var wg sync.WaitGroup
	start := time.Now()
	for range 100 {
		wg.Add(1)
		go func() { defer wg.Done(); l.Send(context.Background(), &scheduler.DeliveryMessage{}) }()
	}
	wg.Wait()
	took := time.Since(start)
	if m := s.most.Load(); m > 5 || m < 2 {
		t.Errorf("%d in flight at most, want 5 (and some overlap)", m)
	}
	// 100 sends, 20 at once (the burst), then 200/s: at least 0.4 s.
	if took < 400*time.Millisecond {
		t.Errorf("100 sends at 200/s took %s", took)
	}
	if Limited(s, Limits{}) != PushSender(s) {
		t.Error("no limits: the sender itself")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if r := Limited(s, Limits{MaxInFlight: 1}).Send(ctx, &scheduler.DeliveryMessage{}); r.Kind != Retry {
		t.Errorf("a stopped send: %+v", r)
	}
}
