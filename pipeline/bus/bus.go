// Package bus defines how the services hand records to the log (Kafka in
// production) and read them back, independently of any client library, and
// provides a real in-memory log for tests and for the core's own use.
//
// Adapters (package kafkabus) implement these interfaces; bustest holds the
// contract test that every implementation passes.
package bus

import (
	"context"
	"errors"
	"time"

	"github.com/openengage/engage/pipeline/backoff"
)

// Message is one record on the log.
type Message struct {
	Topic string // empty: the producer's default topic
	Key   []byte // app/device: all of a device on one partition
	Value []byte
	// Time is the log's time of the message: when the log took it (the
	// producer stamps the time of Produce, and Kafka topics use log-append
	// time). Producers ignore a Time given to them: the time of an event
	// travels inside Value, and the log's retention must never depend on
	// a client's clock.
	Time time.Time
	// Headers carry metadata, e.g. why a message went to a dead-letter topic.
	Headers []Header
	// Set by readers.
	Partition int
	Offset    int64
}

// Header is a Kafka record header.
type Header struct {
	Key   string
	Value []byte
}

// Producer appends messages to the log.
//
// Produce blocks until every message is durably acknowledged (acks=all) and
// returns nil, or returns an error; after an error some of the messages may
// have been written, never acknowledged as a whole. Messages with the same key
// keep their relative order. The log's time of each message is when it was
// produced, whatever its Time field says. Once Produce has returned nil it
// no longer reads msgs: the caller may reuse their bytes (not after an
// error, when a write cut short may still be under way). Safe for
// concurrent use.
type Producer interface {
	Produce(ctx context.Context, msgs []Message) error
	Close() error
}

// ErrUnavailable is wrapped by producer errors that mean "the log cannot take
// writes now; try again later" as opposed to a bad message.
var ErrUnavailable = errors.New("log unavailable")

// ProduceRetrying produces msgs through p, trying again while the log is
// unavailable (ErrUnavailable), waiting from 100 ms to 5 s between tries,
// until ctx ends. retry, if not nil, is told of each failed try. Any other
// error, or the end of ctx, is returned: msgs may then be partly written,
// and the caller must not go on as if they were.
func ProduceRetrying(ctx context.Context, p Producer, msgs []Message, retry func(err error, wait time.Duration)) error {
	if len(msgs) == 0 {
		return nil
	}
	return backoff.RetryNotify(ctx, produceRetry, func(ctx context.Context) error { return p.Produce(ctx, msgs) },
		func(err error) bool { return errors.Is(err, ErrUnavailable) },
		func(err error, _ int, wait time.Duration) {
			if retry != nil {
				retry(err, wait)
			}
		})
}

// produceRetry paces ProduceRetrying: 100 ms doubling to 5 s, half of each
// wait jittered.
var produceRetry = backoff.Policy{Min: 100 * time.Millisecond, Max: 5 * time.Second, Floor: 0.5}
