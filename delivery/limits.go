package delivery

import (
	"context"
	"fmt"

	"golang.org/x/sync/semaphore"
	"golang.org/x/time/rate"

	"github.com/openengage/engage/triggers/scheduler"
)

// Limits bound one app's sends to one provider: at most Rate a second
// (0: no limit), at most MaxInFlight waiting for an answer at once (0: no
// limit), so that one app's campaign cannot take a provider's whole
// quota, nor a shared connection's streams.
type Limits struct {
	Rate        float64 `yaml:"rate"`
	MaxInFlight int     `yaml:"max_in_flight"`
}

func (l Limits) check() error {
	if l.Rate < 0 || l.MaxInFlight < 0 {
		return fmt.Errorf("rate %g and max_in_flight %d must not be negative", l.Rate, l.MaxInFlight)
	}
	return nil
}

// Limited wraps a sender with limits (the sender itself when there are none).
func Limited(s PushSender, l Limits) PushSender {
	if l.Rate == 0 && l.MaxInFlight == 0 {
		return s
	}
	ls := &limited{next: s}
	if l.Rate > 0 {
		ls.rate = rate.NewLimiter(rate.Limit(l.Rate), max(1, int(l.Rate/10))) // bursts of a tenth of a second
	}
	if l.MaxInFlight > 0 {
		ls.sem = semaphore.NewWeighted(int64(l.MaxInFlight))
	}
	return ls
}

type limited struct {
	next PushSender
	rate *rate.Limiter
	sem  *semaphore.Weighted
}

func (l *limited) Send(ctx context.Context, d *scheduler.DeliveryMessage) Result {
	if l.sem != nil {
		if err := l.sem.Acquire(ctx, 1); err != nil {
			return Result{Kind: Retry, Reason: "stopped: " + err.Error()}
		}
		defer l.sem.Release(1)
	}
	if l.rate != nil {
		if err := l.rate.Wait(ctx); err != nil {
			return Result{Kind: Retry, Reason: "stopped: " + err.Error()}
		}
	}
	return l.next.Send(ctx, d)
}
