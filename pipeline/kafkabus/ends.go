package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/openengage/engage/pipeline/backoff"

	"github.com/segmentio/kafka-go"
)

// Ends reads the end offsets of partitions over kept connections: a
// stateful service asks for them at every flush (where its outputs end),
// and dialling the leader each time cost a connection, a metadata request
// and two offset requests per call. Safe for concurrent use.
type Ends struct {
	client *kafka.Client
	tr     *kafka.Transport
}

// NewEnds returns an Ends for the cluster; Close releases its connections.
func NewEnds(brokers []string) *Ends {
	tr := Transport(&kafka.Transport{IdleTimeout: time.Minute, MetadataTTL: 10 * time.Second})
	return &Ends{client: &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second, Transport: tr}, tr: tr}
}

// Close closes the idle connections.
func (e *Ends) Close() { e.tr.CloseIdleConnections() }

// Of returns the offset the next message will get in partition partition
// of each topic, in one request; it retries for up to 30 s while the
// cluster does not answer (a leader moving).
func (e *Ends) Of(ctx context.Context, partition int, topics ...string) ([]int64, error) {
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, t := range topics {
		req.Topics[t] = []kafka.OffsetRequest{kafka.LastOffsetOf(partition)}
	}
	deadline := time.Now().Add(30 * time.Second)
	b := backoff.New(leaderWait)
	for {
		out, err := e.of(ctx, req, partition, topics)
		if err == nil {
			return out, nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return nil, err
		}
		if b.Wait(ctx) != nil {
			return nil, err
		}
	}
}

// leaderWait is the policy of the retries that wait for a partition's
// leader (a broker restarting, a leader being elected): from 50 ms to 1 s,
// half of each wait random.
var leaderWait = backoff.Policy{Min: 50 * time.Millisecond, Max: time.Second, Floor: 0.5}

func (e *Ends) of(ctx context.Context, req *kafka.ListOffsetsRequest, partition int, topics []string) ([]int64, error) {
	resp, err := e.client.ListOffsets(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("end offsets of partition %d of %v: %w", partition, topics, err)
	}
	out := make([]int64, len(topics))
	for i, t := range topics {
		found := false
		for _, po := range resp.Topics[t] {
			if po.Partition != partition {
				continue
			}
			if po.Error != nil {
				return nil, fmt.Errorf("end offset of %s/%d: %w", t, partition, po.Error)
			}
			out[i], found = po.LastOffset, true
		}
		if !found {
			return nil, errors.New("end offset of " + t + "/" + fmt.Sprint(partition) + ": not in the answer")
		}
	}
	return out, nil
}
