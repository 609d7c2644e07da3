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
	fix := fs.Bool("fix-timestamp-type", false, "set message.timestamp.type=LogAppendTime on existing topics that use CreateTime")
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
	fixed := map[string]string{}
	if *fix {
		var names []string
		for _, r := range results {
			if r.TimestampType != kafkabus.LogAppendTime {
				names = append(names, r.Name)
				fixed[r.Name] = r.TimestampType
			}
		}
		if err := kafkabus.FixTimestampType(ctx, splitList(*brokers), names); err != nil {
			return err
		}
		// Report what the broker says now.
		if results, err = kafkabus.EnsureTopics(ctx, splitList(*brokers), specs); err != nil {
			return err
		}
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
		fmt.Fprintf(stdout, "%-26s %-7s partitions=%-3d cleanup=%-7s timestamps=%-13s %s\n", r.Name, state, r.Partitions, policy, r.TimestampType, specs[i].Purpose)
		if was, ok := fixed[r.Name]; ok {
			fmt.Fprintf(stdout, "  fixed: %s %s -> %s (records written before keep their timestamps)\n", kafkabus.ConfigTimestampType, was, r.TimestampType)
		}
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
