package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/kafkabus/kafkatest"
)

// engage topics asks for production's durability by default (replication
// 3, min.insync.replicas 2) and refuses, before creating anything, a
// cluster that cannot hold it, saying what to do; -dev (or
// -kafka.replication 1) is the single development broker.
func TestTopicsDurabilityRealKafka(t *testing.T) {
	brokers := strings.Join(kafkatest.RealBrokers(t), ",")
	ctx := context.Background()
	for _, c := range []struct {
		args  []string
		want  string
		usage bool
	}{
		{[]string{}, "replication factor 3 needs 3 brokers; this cluster has 1: use -kafka.replication 1 for a single-broker development cluster", false},
		{[]string{"-kafka.replication", "2"}, "replication factor 2 needs 2 brokers; this cluster has 1", false},
		{[]string{"-kafka.replication", "1", "-kafka.min-insync", "2"}, "min.insync.replicas 2 is more than the replication factor 1", false},
		{[]string{"-kafka.replication", "3", "-kafka.min-insync", "4"}, "min.insync.replicas 4 is more than the replication factor 3", false},
		{[]string{"-dev", "-kafka.replication", "3"}, "-dev is -kafka.replication 1 -kafka.min-insync 1: it does not go with -kafka.replication 3", true},
		{[]string{"-dev", "-kafka.min-insync", "2"}, "it does not go with -kafka.min-insync 2", true},
	} {
		var out bytes.Buffer
		err := runTopics(ctx, append([]string{"-kafka.brokers", brokers}, c.args...), &out)
		var ue *usageError
		if err == nil || !strings.Contains(err.Error(), c.want) || errors.As(err, &ue) != c.usage {
			t.Errorf("engage topics %v: %v, want %q (usage error: %v)", c.args, err, c.want, c.usage)
		}
		if out.Len() > 0 {
			t.Errorf("engage topics %v refused, yet printed:\n%s", c.args, out.String())
		}
	}
	// The development settings, by -dev or by the replication factor.
	n := len(kafkabus.PlatformTopics(8, 1))
	for _, args := range [][]string{{"-dev"}, {"-kafka.replication", "1"}, {"-kafka.replication", "1", "-kafka.min-insync", "1"}} {
		var out bytes.Buffer
		if err := runTopics(ctx, append([]string{"-kafka.brokers", brokers, "-kafka.partitions", "8"}, args...), &out); err != nil {
			t.Fatalf("engage topics %v: %v\n%s", args, err, out.String())
		}
		if strings.Count(out.String(), "replicas=1 min.insync=1 ") != n {
			t.Errorf("engage topics %v:\n%s", args, out.String())
		}
	}
}
