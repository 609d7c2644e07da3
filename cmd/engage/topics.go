package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/openengage/engage/pipeline/kafkabus"
)

func runTopics(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("topics")
	brokers := fs.String("kafka.brokers", "", "comma-separated Kafka bootstrap brokers (required)")
	partitions := fs.Int("kafka.partitions", 8, "partitions of each partitioned topic")
	replication := fs.Int("kafka.replication", 1, "replication factor (3 in production)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if len(splitList(*brokers)) == 0 {
		return errors.New("no brokers: set -kafka.brokers or ENGAGE_KAFKA_BROKERS")
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	specs := kafkabus.PlatformTopics(*partitions, *replication)
	results, err := kafkabus.EnsureTopics(ctx, splitList(*brokers), specs)
	if err != nil {
		return err
	}
	problems := 0
	for i, r := range results {
		state := "exists"
		if r.Created {
			state = "created"
		}
		policy := "delete"
		if specs[i].Compacted {
			policy = "compact"
		}
		fmt.Fprintf(stdout, "%-26s %-7s partitions=%-3d cleanup=%-7s %s\n", r.Name, state, r.Partitions, policy, specs[i].Purpose)
		if r.Problem != "" {
			problems++
			fmt.Fprintf(stdout, "  problem: %s\n", r.Problem)
		}
	}
	if problems > 0 {
		return fmt.Errorf("%d topics do not match what the platform expects", problems)
	}
	return nil
}
