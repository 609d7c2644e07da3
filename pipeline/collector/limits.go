package collector

import (
	"math"
	"sync"
	"time"
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

// bucket is a token bucket of records per second for one app.
type bucket struct {
	mu     sync.Mutex
	rate   float64 // tokens per second; 0: unlimited
	burst  float64
	tokens float64
	last   time.Time
}

func newBucket(rate, burst float64) *bucket {
	if burst < rate {
		burst = rate
	}
	return &bucket{rate: rate, burst: burst, tokens: burst}
}

// take takes n tokens, or returns how long to wait until they would be there.
func (b *bucket) take(now time.Time, n int) (ok bool, wait time.Duration) {
	if b == nil || b.rate <= 0 {
		return true, 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() {
		b.tokens = math.Min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	need := float64(n)
	// A request larger than the burst waits for a full bucket and then
	// leaves it in debt.
	enough := math.Min(need, b.burst)
	if b.tokens >= enough {
		b.tokens -= need
		return true, 0
	}
	return false, time.Duration((enough - b.tokens) / b.rate * float64(time.Second))
}
