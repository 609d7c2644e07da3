package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/openengage/engage/pipeline/kafkabus"
)

func runTopics(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("topics")
	var kconn kafkaConn
	brokers := kconn.registerConn(fs, "comma-separated Kafka bootstrap brokers (required)")
	partitions := fs.Int("kafka.partitions", 8, "partitions of each partitioned topic")
	replication := fs.Int("kafka.replication", 3, "replication factor of the topics it creates (production: 3; a single-broker development cluster: 1, or -dev); refused when the cluster has fewer brokers")
	minInSync := fs.Int("kafka.min-insync", 0, "min.insync.replicas of the topics it creates or checks: how many replicas must have a record before acks=all acknowledges it; 0: the replication factor less one, at least 1 (production: 2 of 3)")
	dev := fs.Bool("dev", false, "a single-broker development cluster: -kafka.replication 1 -kafka.min-insync 1: one copy of each record")
	fix := fs.Bool("fix-timestamp-type", false, "set message.timestamp.type=LogAppendTime on existing topics that use CreateTime")
	fixDurability := fs.Bool("fix-durability", false, "raise min.insync.replicas to -kafka.min-insync on existing topics whose setting is lower (never lowers it)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := kconn.secure(ctx); err != nil {
		return err
	}
	if len(splitList(*brokers)) == 0 {
		return errors.New("no brokers: set -kafka.brokers or ENGAGE_KAFKA_BROKERS")
	}
	if *dev {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if set["kafka.replication"] && *replication != 1 {
			return &usageError{fmt.Sprintf("-dev is -kafka.replication 1 -kafka.min-insync 1: it does not go with -kafka.replication %d", *replication)}
		}
		if set["kafka.min-insync"] && *minInSync != 1 {
			return &usageError{fmt.Sprintf("-dev is -kafka.replication 1 -kafka.min-insync 1: it does not go with -kafka.min-insync %d", *minInSync)}
		}
		*replication, *minInSync = 1, 1
	}
	if *minInSync == 0 {
		*minInSync = kafkabus.DefaultMinInSync(*replication)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	// Refused before anything is created: a replication factor the cluster
	// cannot hold, a min.insync.replicas no write could satisfy.
	if err := kafkabus.CheckDurability(0, *replication, *minInSync); err != nil {
		return err
	}
	n, err := kafkabus.BrokerCount(ctx, splitList(*brokers))
	if err != nil {
		return err
	}
	if err := kafkabus.CheckDurability(n, *replication, *minInSync); err != nil {
		return err
	}
	specs := kafkabus.WithMinInSync(kafkabus.PlatformTopics(*partitions, *replication), *minInSync)
	results, err := kafkabus.EnsureTopics(ctx, splitList(*brokers), specs)
	if err != nil {
		return err
	}
	fixed := map[string]string{}
	raised := map[string]int{}
	if *fix || *fixDurability {
		var names, low []string
		for _, r := range results {
			if *fix && r.TimestampType != kafkabus.LogAppendTime {
				names = append(names, r.Name)
				fixed[r.Name] = r.TimestampType
			}
			if *fixDurability && r.LowMinInSync {
				low = append(low, r.Name)
				raised[r.Name] = r.MinInSync
			}
		}
		if err := kafkabus.FixTimestampType(ctx, splitList(*brokers), names); err != nil {
			return err
		}
		if err := kafkabus.FixMinInSync(ctx, splitList(*brokers), low, *minInSync); err != nil {
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
		fmt.Fprintf(stdout, "%-26s %-7s partitions=%-3d replicas=%d min.insync=%d cleanup=%-7s timestamps=%-13s %s\n",
			r.Name, state, r.Partitions, r.Replication, r.MinInSync, policy, r.TimestampType, specs[i].Purpose)
		if was, ok := fixed[r.Name]; ok {
			fmt.Fprintf(stdout, "  fixed: %s %s -> %s (records written before keep their timestamps)\n", kafkabus.ConfigTimestampType, was, r.TimestampType)
		}
		if was, ok := raised[r.Name]; ok {
			fmt.Fprintf(stdout, "  fixed: %s %d -> %d\n", kafkabus.ConfigMinInSync, was, r.MinInSync)
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
