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
)

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Addr: DefaultAddr, MaxBodyBytes: DefaultMaxBodyBytes, MaxSegmentBatch: DefaultMaxSegmentBatch,
		MaxSegmentSingle: DefaultMaxSegmentSingle, BufferBytes: DefaultBufferBytes,
		ProduceTimeout: DefaultProduceTimeout, RetryAfter: DefaultRetryAfter,
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
	if c.ProduceTimeout <= 0 || c.RetryAfter <= 0 {
		errs = append(errs, errors.New("collector: produce timeout and retry-after must be positive"))
	}
	return errors.Join(errs...)
}
