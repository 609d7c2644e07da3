package backoff

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func seeded() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }

// Every wait is within [Floor·c, c] with c = min(Max, Min·2^n); the
// ceilings double until the cap; the waits vary (jitter).
func TestWaitBoundsGrowthCap(t *testing.T) {
	for _, floor := range []float64{0, 0.2, 0.5, 1} {
		p := Policy{Min: 100 * time.Millisecond, Max: 10 * time.Second, Floor: floor}
		b := NewRand(p, seeded())
		distinct := map[time.Duration]bool{}
		for n := range 40 {
			c := min(100*time.Millisecond<<min(n, 30), 10*time.Second)
			if got := p.Ceiling(n); got != c {
				t.Fatalf("floor %v: ceiling %d = %s, want %s", floor, n, got, c)
			}
			lo := time.Duration(float64(c) * floor)
			w := b.Next()
			if w < lo || w > c {
				t.Fatalf("floor %v: wait %d = %s outside [%s, %s]", floor, n, w, lo, c)
			}
			distinct[w] = true
		}
		if floor < 1 && len(distinct) < 35 {
			t.Errorf("floor %v: %d distinct waits of 40: no jitter?", floor, len(distinct))
		}
		if floor == 1 && len(distinct) != 8 { // 100ms … 6.4s, then 10s
			t.Errorf("no jitter: %d distinct waits, want 8", len(distinct))
		}
		if b.Waits() != 40 {
			t.Errorf("waits %d", b.Waits())
		}
	}
}

// The waits grow on average: the mean of full-jitter waits is about half
// the ceiling, at every try.
func TestGrowth(t *testing.T) {
	p := Policy{Min: time.Second, Max: time.Hour}
	r := seeded()
	for n := range 8 {
		var sum time.Duration
		for range 2000 {
			sum += p.Delay(n, r)
		}
		mean, half := sum/2000, p.Ceiling(n)/2
		if mean < half*9/10 || mean > half*11/10 {
			t.Errorf("try %d: mean wait %s, want about %s", n, mean, half)
		}
	}
	if p.Ceiling(1000) != time.Hour || (Policy{Min: time.Second, Max: time.Minute, Factor: 3}).Ceiling(2) != 9*time.Second {
		t.Error("cap or factor not applied")
	}
}

// The same seed gives the same waits.
func TestSeeded(t *testing.T) {
	p := Policy{Min: time.Millisecond, Max: time.Second}
	a, b := NewRand(p, seeded()), NewRand(p, seeded())
	for range 20 {
		if x, y := a.Next(), b.Next(); x != y {
			t.Fatalf("%s ≠ %s", x, y)
		}
	}
}

// Reset starts from Min again.
func TestReset(t *testing.T) {
	p := Policy{Min: time.Second, Max: time.Hour, Floor: 1}
	b := New(p)
	for range 5 {
		b.Next()
	}
	if w := b.Next(); w != 32*time.Second {
		t.Fatalf("sixth wait %s", w)
	}
	b.Reset()
	if w := b.Next(); w != time.Second || b.Waits() != 1 {
		t.Errorf("after reset: %s, %d waits", w, b.Waits())
	}
}

// A Retry-After longer than the computed wait wins, even above Max, for
// one wait only; a shorter one changes nothing.
func TestRetryAfter(t *testing.T) {
	p := Policy{Min: time.Second, Max: 10 * time.Second, Floor: 1}
	b := New(p)
	b.RetryAfter(45 * time.Second)
	if w := b.Next(); w != 45*time.Second {
		t.Errorf("Retry-After 45s: %s", w)
	}
	if w := b.Next(); w != 2*time.Second {
		t.Errorf("after it: %s", w)
	}
	b.RetryAfter(time.Millisecond)
	if w := b.Next(); w != 4*time.Second {
		t.Errorf("short Retry-After: %s", w)
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		p    Policy
		want string
	}{
		{Policy{Max: time.Second}, "minimum"},
		{Policy{Min: 2 * time.Second, Max: time.Second}, "maximum"},
		{Policy{Min: time.Second, Max: time.Second, Factor: 0.5}, "factor"},
		{Policy{Min: time.Second, Max: time.Second, Floor: 1.5}, "floor"},
		{Policy{Min: time.Second, Max: time.Second, Floor: -0.1}, "floor"},
		{Policy{Min: time.Second, Max: time.Second, MaxAttempts: -1}, "attempts"},
	} {
		err := c.p.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error naming %q", c.p, err, c.want)
		}
		if err := Retry(context.Background(), c.p, func(context.Context) error { t.Error("ran"); return nil }, nil); err == nil {
			t.Errorf("%+v: Retry ran", c.p)
		}
	}
	if err := (Policy{Min: time.Second, Max: time.Second}).Validate(); err != nil {
		t.Error(err)
	}
}

var errTransient = errors.New("transient")

// Retry tries again on a retryable error and stops at the first success.
func TestRetryUntilSuccess(t *testing.T) {
	n := 0
	var waits []int
	err := RetryNotify(context.Background(), Policy{Min: time.Microsecond, Max: time.Millisecond}, func(context.Context) error {
		if n++; n < 4 {
			return errTransient
		}
		return nil
	}, func(err error) bool { return errors.Is(err, errTransient) }, func(err error, attempt int, _ time.Duration) { waits = append(waits, attempt) })
	if err != nil || n != 4 || len(waits) != 3 || waits[2] != 3 {
		t.Errorf("err %v after %d tries, notified %v", err, n, waits)
	}
}

// A non-retryable error ends Retry at once, returned as is.
func TestRetryStopsOnPermanent(t *testing.T) {
	perm := errors.New("wrong password")
	n := 0
	err := Retry(context.Background(), Policy{Min: time.Microsecond, Max: time.Millisecond}, func(context.Context) error {
		if n++; n < 3 {
			return errTransient
		}
		return perm
	}, func(err error) bool { return errors.Is(err, errTransient) })
	if err != perm || n != 3 {
		t.Errorf("err %v after %d tries", err, n)
	}
}

func TestRetryMaxAttempts(t *testing.T) {
	n := 0
	err := Retry(context.Background(), Policy{Min: time.Microsecond, Max: time.Millisecond, MaxAttempts: 3}, func(context.Context) error {
		n++
		return errTransient
	}, nil)
	if !errors.Is(err, errTransient) || n != 3 || !strings.Contains(err.Error(), "3 tries") {
		t.Errorf("err %v after %d tries", err, n)
	}
}

// Cancelling ctx ends a long wait promptly (bound generous: the wait is an
// hour).
func TestRetryCtxCancelEndsWait(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	tried := make(chan struct{}, 10)
	done := make(chan error, 1)
	go func() {
		done <- Retry(ctx, Policy{Min: time.Hour, Max: time.Hour, Floor: 1}, func(context.Context) error {
			tried <- struct{}{}
			return errTransient
		}, nil)
	}()
	<-tried
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Retry still waiting a minute after cancel")
	}
	if len(tried) != 0 {
		t.Error("tried again after cancel")
	}
	b := New(Policy{Min: time.Hour, Max: time.Hour})
	if err := b.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait on an ended ctx: %v", err)
	}
}

// The Retry-After carried by an error makes Retry's next wait at least it.
func TestRetryHonoursRetryAfter(t *testing.T) {
	var got []time.Duration
	n := 0
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := RetryNotify(ctx, Policy{Min: time.Microsecond, Max: time.Microsecond}, func(context.Context) error {
		if n++; n == 1 {
			return WithRetryAfter(errTransient, 20*time.Millisecond)
		}
		if n == 2 {
			return errTransient
		}
		return nil
	}, func(err error) bool { return errors.Is(err, errTransient) }, func(_ error, _ int, w time.Duration) { got = append(got, w) })
	if err != nil || len(got) != 2 || got[0] != 20*time.Millisecond || got[1] > time.Microsecond {
		t.Errorf("err %v, waits %v", err, got)
	}
	if WithRetryAfter(nil, time.Second) != nil {
		t.Error("nil wrapped")
	}
}
