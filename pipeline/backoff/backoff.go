// Package backoff computes the waits between the tries of an operation that
// may fail for a while (a broker restarting, a store refusing writes, a
// provider asking to slow down): exponential growth from a minimum up to a
// cap, with random jitter, and at least what a server asked for
// (Retry-After).
//
// The jitter is "full jitter" (the wait of try n is drawn uniformly from
// [Floor·d, d] with d = min(Max, Min·Factor^n), Floor 0 by default), not
// "decorrelated jitter" (each wait drawn from the previous one). Both
// spread out clients that failed together about equally well; full jitter
// is chosen because a wait depends only on the try's number, not on the
// wait before it: a caller that keeps only a count (the dispatcher keeps
// each delivery's tries in its state, across restarts) gets the same
// policy as a loop holding a Backoff, and the bounds of every wait are
// known in advance (what the tests and the operations guide state). A Floor
// above 0 keeps part of every wait fixed where a wait close to zero would
// be wasted (Floor 0.5 is "equal jitter").
//
// The package is pure: no I/O, no adapter imports; the random source can be
// given (a seeded one in tests).
package backoff

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Policy describes the waits. The zero Factor is 2 and the zero
// MaxAttempts is no limit.
type Policy struct {
	Min    time.Duration // ceiling of the first wait (> 0)
	Max    time.Duration // cap of every wait (≥ Min); a Retry-After may exceed it
	Factor float64       // growth of the ceiling per try (≥ 1; 0 means 2)
	// Floor is the fraction of each wait's ceiling that is not random, in
	// [0, 1]: 0 is full jitter (a wait anywhere in [0, ceiling]), 0.5 is
	// equal jitter, 1 is no jitter.
	Floor float64
	// MaxAttempts bounds the tries Retry makes (the first included); 0 is
	// no limit (until ctx ends or the error is not retryable).
	MaxAttempts int
}

// Validate names what is wrong with p, if anything.
func (p Policy) Validate() error {
	switch {
	case p.Min <= 0:
		return fmt.Errorf("backoff: minimum %s must be positive", p.Min)
	case p.Max < p.Min:
		return fmt.Errorf("backoff: maximum %s is below the minimum %s", p.Max, p.Min)
	case p.Factor != 0 && (p.Factor < 1 || math.IsNaN(p.Factor) || math.IsInf(p.Factor, 0)):
		return fmt.Errorf("backoff: factor %v must be at least 1", p.Factor)
	case !(p.Floor >= 0 && p.Floor <= 1):
		return fmt.Errorf("backoff: floor %v must be within [0, 1]", p.Floor)
	case p.MaxAttempts < 0:
		return fmt.Errorf("backoff: max attempts %d is negative", p.MaxAttempts)
	}
	return nil
}

// Ceiling is the largest wait after the try numbered n (0 for the first
// failure): min(Max, Min·Factor^n).
func (p Policy) Ceiling(n int) time.Duration {
	f := p.Factor
	if f == 0 {
		f = 2
	}
	c := float64(p.Min) * math.Pow(f, float64(max(n, 0)))
	if c >= float64(p.Max) || math.IsInf(c, 0) || math.IsNaN(c) {
		return p.Max
	}
	return time.Duration(c)
}

// Delay is a wait after the try numbered n (0 for the first failure), drawn
// from r (nil: the shared source of math/rand/v2, safe for concurrent use):
// uniform in [Floor·Ceiling(n), Ceiling(n)].
func (p Policy) Delay(n int, r *rand.Rand) time.Duration {
	c := p.Ceiling(n)
	lo := time.Duration(float64(c) * p.Floor)
	span := int64(c - lo)
	if span <= 0 {
		return c
	}
	var j int64
	if r != nil {
		j = r.Int64N(span + 1)
	} else {
		j = rand.Int64N(span + 1)
	}
	return lo + time.Duration(j)
}

// Backoff is the state of one retrying operation: how many waits it has
// had, and a server's request for the next one. Not safe for concurrent
// use.
type Backoff struct {
	p     Policy
	r     *rand.Rand
	n     int
	after time.Duration
}

// New returns a Backoff following p. p must be valid (Validate): New panics
// with Validate's message otherwise, as a policy is the program's, not its
// input's (a policy built from flags is validated with them).
func New(p Policy) *Backoff { return NewRand(p, nil) }

// NewRand is New drawing the jitter from r (nil: the shared source).
func NewRand(p Policy, r *rand.Rand) *Backoff {
	if err := p.Validate(); err != nil {
		panic(err)
	}
	return &Backoff{p: p, r: r}
}

// Next returns the wait before the next try and counts it: the policy's
// Delay for the waits so far, or the server's Retry-After (RetryAfter) when
// that is longer.
func (b *Backoff) Next() time.Duration {
	d := b.p.Delay(b.n, b.r)
	b.n++
	d = max(d, b.after)
	b.after = 0
	return d
}

// RetryAfter makes the next wait at least d (a server's Retry-After); the
// policy's cap does not apply to it: the server asked.
func (b *Backoff) RetryAfter(d time.Duration) { b.after = max(b.after, d) }

// Waits is how many waits Next has given since the start or Reset.
func (b *Backoff) Waits() int { return b.n }

// Reset starts the growth again from Min (after a success).
func (b *Backoff) Reset() { b.n, b.after = 0, 0 }

// Wait sleeps for Next() or until ctx ends, whichever comes first; it
// returns ctx.Err() in the second case.
func (b *Backoff) Wait(ctx context.Context) error {
	return Sleep(ctx, b.Next())
}

// Sleep waits for d or until ctx ends; it returns ctx.Err() if ctx ended
// first.
func Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// AfterError is an error that carries a server's Retry-After: Retry waits at
// least After before the next try.
type AfterError struct {
	Err   error
	After time.Duration
}

func (e *AfterError) Error() string { return e.Err.Error() }
func (e *AfterError) Unwrap() error { return e.Err }

// WithRetryAfter wraps err so that Retry waits at least d before the next
// try; nil stays nil.
func WithRetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &AfterError{Err: err, After: d}
}

// Retry runs op until it succeeds, returns an error that retryable refuses
// (nil retryable: every error is retried), the policy's MaxAttempts are
// made, or ctx ends, waiting between tries as p says. It returns nil, the
// last error of op, or ctx's error when ctx ended (during a wait, or with
// op's error caused by it).
func Retry(ctx context.Context, p Policy, op func(context.Context) error, retryable func(error) bool) error {
	return RetryNotify(ctx, p, op, retryable, nil)
}

// RetryNotify is Retry telling notify, if not nil, of each failed try that
// will be tried again: its error, the number of the try (from 1) and the
// wait before the next.
func RetryNotify(ctx context.Context, p Policy, op func(context.Context) error, retryable func(error) bool, notify func(err error, attempt int, wait time.Duration)) error {
	if err := p.Validate(); err != nil {
		return err
	}
	b := New(p)
	for attempt := 1; ; attempt++ {
		err := op(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if retryable != nil && !retryable(err) {
			return err
		}
		if p.MaxAttempts > 0 && attempt >= p.MaxAttempts {
			return fmt.Errorf("gave up after %d tries: %w", attempt, err)
		}
		if ae := (*AfterError)(nil); errors.As(err, &ae) {
			b.RetryAfter(ae.After)
		}
		wait := b.Next()
		if notify != nil {
			notify(err, attempt, wait)
		}
		if err := Sleep(ctx, wait); err != nil {
			return err
		}
	}
}
