package kafkabus_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/openengage/engage/pipeline/kafkabus"
)

// The errors a consumer meets while a broker is down or its partitions
// move are transient; a cancelled context, a missing topic and an offset
// out of range are not.
func TestTransient(t *testing.T) {
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: &net.AddrError{Err: "connection refused"}}
	for err, want := range map[error]bool{
		fmt.Errorf("failed to dial: %w", fmt.Errorf("failed to open connection to 127.0.0.1:1: %w", dial)): true,
		fmt.Errorf("read: %w", syscall.ECONNREFUSED):                                                       true,
		fmt.Errorf("read: %w", io.ErrUnexpectedEOF):                                                        true,
		io.EOF:                              true,
		net.ErrClosed:                       true,
		kafka.NotLeaderForPartition:         true,
		kafka.LeaderNotAvailable:            true,
		kafka.GroupCoordinatorNotAvailable:  true,
		kafka.NotCoordinatorForGroup:        true,
		kafka.NotEnoughReplicas:             true,
		kafka.RequestTimedOut:               true,
		context.Canceled:                    false,
		context.DeadlineExceeded:            false,
		kafka.UnknownTopicOrPartition:       true, // Kafka says retry: a topic being created
		kafka.OffsetOutOfRange:              false,
		kafka.TopicAuthorizationFailed:      false,
		errors.New("kafka consumer: other"): false,
		nil:                                 false,
	} {
		if got := kafkabus.Transient(err); got != want {
			t.Errorf("Transient(%v) = %v, want %v", err, got, want)
		}
	}
}
