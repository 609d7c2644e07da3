package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/segmentio/kafka-go"
)

// Ping asks the brokers for the cluster's metadata, within ctx's deadline,
// and checks that each of topics exists and has a leader for every
// partition (what a producer needs to write to it). It opens its own
// connections and closes them before returning, so that an answer is
// never one cached from before the cluster went away. Readiness probes
// use it.
func Ping(ctx context.Context, brokers []string, topics ...string) error {
	if len(brokers) == 0 {
		return errors.New("no brokers")
	}
	tr := Transport(&kafka.Transport{ClientID: "engage-ping"}) // the process's TLS and SASL
	defer tr.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: tr}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return fmt.Errorf("brokers %s do not answer: %w", strings.Join(brokers, ","), err)
	}
	if len(md.Brokers) == 0 {
		return fmt.Errorf("brokers %s list no live broker", strings.Join(brokers, ","))
	}
	for _, t := range md.Topics {
		if t.Error != nil {
			return fmt.Errorf("topic %s: %w", t.Name, t.Error)
		}
		if len(t.Partitions) == 0 {
			return fmt.Errorf("topic %s has no partitions", t.Name)
		}
		for _, p := range t.Partitions {
			if p.Error != nil {
				return fmt.Errorf("topic %s partition %d: %w", t.Name, p.ID, p.Error)
			}
			if p.Leader.ID < 0 || p.Leader.Host == "" {
				return fmt.Errorf("topic %s partition %d has no leader", t.Name, p.ID)
			}
		}
	}
	return nil
}
