package collector

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// buffer bounds the bytes of accepted records waiting for Kafka's
// acknowledgement. When it is full the collector answers 503 at once
// instead of queueing without bound.
type buffer struct {
	mu       sync.Mutex
	capacity int64
	used     int64
	full     func() // counts refusals
}

func (b *buffer) tryAcquire(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.capacity {
		if b.full != nil {
			b.full()
		}
		return false
	}
	b.used += n
	return true
}

func (b *buffer) release(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
}

func (b *buffer) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// bucket is an app's rate limit: a token bucket of records per second
// (golang.org/x/time/rate) that a request larger than the burst may leave
// in debt.
type bucket struct {
	mu    sync.Mutex // the check and the take are one step
	lim   *rate.Limiter
	rate  float64 // tokens per second; 0: unlimited
	burst int
}

func newBucket(r, burst float64) *bucket {
	if r <= 0 {
		return nil
	}
	b := int(math.Ceil(math.Max(burst, r)))
	return &bucket{lim: rate.NewLimiter(rate.Limit(r), b), rate: r, burst: b}
}

// empty reports whether the bucket has not even one token left, and how
// long until it has: a request of this app is refused before its body is
// read.
func (b *bucket) empty(now time.Time) (bool, time.Duration) {
	if b == nil {
		return false, 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if t := b.lim.TokensAt(now); t < 1 {
		return true, time.Duration((1 - t) / b.rate * float64(time.Second))
	}
	return false, 0
}

// take takes n tokens, or returns how long to wait until they would be
// there. A request larger than the burst waits for a full bucket and then
// leaves it in debt.
func (b *bucket) take(now time.Time, n int) (ok bool, wait time.Duration) {
	if b == nil || n <= 0 {
		return true, 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	enough := float64(min(n, b.burst))
	if t := b.lim.TokensAt(now); t < enough {
		return false, time.Duration((enough - t) / b.rate * float64(time.Second))
	}
	// Reservations of at most the burst each; those after the first are
	// kept although they would have to wait: that is the debt.
	for n > 0 {
		k := min(n, b.burst)
		b.lim.ReserveN(now, k)
		n -= k
	}
	return true, 0
}

// What a request may hold in memory per byte of its body (after
// decompression): the body, the positions of its records, their encoded
// form on its way to Kafka, the rejections listed and the answer. Measured
// on the bodies of BenchmarkCollectorWorstVsTypical, a native request held
// at most 2.7 times its body besides the body itself (tiny valid records,
// whose encoded form is larger than their JSON). A Segment batch is decoded
// whole before its records are encoded: about 11 times its body for a batch
// of tiny messages. A request is weighed at this times its body before the
// body is read; TestCollectorMemoryBudgetUnderLoad checks the heap under
// load.
const (
	nativeMemoryFactor  = 6
	segmentMemoryFactor = 16
)

// requestWeight is the share of the memory budget that a request of n body
// bytes takes.
func requestWeight(n int64, segment bool) int64 {
	if segment {
		return segmentMemoryFactor * n
	}
	return nativeMemoryFactor * n
}
