package collector

import (
	"errors"
	"fmt"
	"time"
)

// Config configures the collector.
type Config struct {
	Addr             string        // listen address
	MaxBodyBytes     int64         // native API: request body, after gunzip
	MaxSegmentBatch  int64         // Segment API: batch body (Segment: 500 KB)
	MaxSegmentSingle int64         // Segment API: one call (Segment: 32 KB)
	BufferBytes      int64         // bytes of accepted records that may wait for Kafka at once
	ProduceTimeout   time.Duration // how long a request waits for Kafka's acknowledgement
	RetryAfter       time.Duration // advised in 503 answers
	PublicURL        string        // how SDKs reach us, for the settings endpoint; empty: from the request

	// Bounds on what one request may cost (docs/collector.md, Limits).
	MaxRecords     int           // records of a native request, messages of a Segment batch
	MemoryBudget   int64         // bytes that the requests in flight may hold at once (see requestWeight)
	ReadTimeout    time.Duration // the body must have arrived within it (408)
	ProcessTimeout time.Duration // decoding and checking a request's records (503)
}

// Defaults.
const (
	DefaultAddr             = "127.0.0.1:8080"
	DefaultMaxBodyBytes     = 4 << 20
	DefaultMaxSegmentBatch  = 500 * 1024
	DefaultMaxSegmentSingle = 32 * 1024
	DefaultBufferBytes      = 256 << 20
	DefaultProduceTimeout   = 10 * time.Second
	DefaultRetryAfter       = 5 * time.Second
	DefaultMaxRecords       = 50_000
	DefaultMemoryBudget     = 256 << 20
	DefaultReadTimeout      = 30 * time.Second
	DefaultProcessTimeout   = 10 * time.Second
)

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Addr: DefaultAddr, MaxBodyBytes: DefaultMaxBodyBytes, MaxSegmentBatch: DefaultMaxSegmentBatch,
		MaxSegmentSingle: DefaultMaxSegmentSingle, BufferBytes: DefaultBufferBytes,
		ProduceTimeout: DefaultProduceTimeout, RetryAfter: DefaultRetryAfter,
		MaxRecords: DefaultMaxRecords, MemoryBudget: DefaultMemoryBudget,
		ReadTimeout: DefaultReadTimeout, ProcessTimeout: DefaultProcessTimeout,
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.Addr == "" {
		errs = append(errs, errors.New("collector: empty listen address"))
	}
	if c.MaxBodyBytes < 1024 || c.MaxSegmentBatch < 1024 || c.MaxSegmentSingle < 1024 {
		errs = append(errs, fmt.Errorf("collector: body limits %d/%d/%d must be at least 1 KiB", c.MaxBodyBytes, c.MaxSegmentBatch, c.MaxSegmentSingle))
	}
	if c.BufferBytes < c.MaxBodyBytes {
		errs = append(errs, fmt.Errorf("collector: buffer of %d bytes is smaller than one request (%d): raise -collector.buffer-bytes", c.BufferBytes, c.MaxBodyBytes))
	}
	if c.ProduceTimeout <= 0 || c.RetryAfter <= 0 || c.ReadTimeout <= 0 || c.ProcessTimeout <= 0 {
		errs = append(errs, errors.New("collector: produce, read and process timeouts and retry-after must be positive"))
	}
	if c.MaxRecords < 1 {
		errs = append(errs, fmt.Errorf("collector: at most %d records per request: must be at least 1", c.MaxRecords))
	}
	if largest := max(requestWeight(c.MaxBodyBytes, false), requestWeight(max(c.MaxSegmentBatch, c.MaxSegmentSingle), true)); c.MemoryBudget < largest {
		errs = append(errs, fmt.Errorf("collector: memory budget of %d bytes is smaller than what one request of the largest body may hold (%d): raise -collector.memory-budget", c.MemoryBudget, largest))
	}
	return errors.Join(errs...)
}
