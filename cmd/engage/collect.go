package main

import (
	"context"
	"embed"
	"io"
	"log/slog"
	"os"
	"path"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/openengage/engage/delivery/inbox"
	"github.com/openengage/engage/pipeline/backoff"
	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/collector"
	"github.com/openengage/engage/pipeline/httpserve"
	"github.com/openengage/engage/pipeline/kafkabus"
)

//go:embed defaults
var defaults embed.FS

func loadApps(file string) (*collector.Apps, error) {
	if file != "" {
		return collector.LoadApps(file)
	}
	data, err := defaults.ReadFile("defaults/apps.yaml")
	if err != nil {
		return nil, err
	}
	return collector.ParseApps("embedded apps.yaml", data, func(p string) ([]byte, error) {
		return defaults.ReadFile(path.Join("defaults", p))
	})
}

func runCollect(ctx context.Context, args []string, _ io.Writer) error {
	fs := newFlagSet("collect")
	cfg := collector.DefaultConfig()
	var kf kafkaFlags
	kf.register(fs)
	var hf httpFlags
	hf.register(fs)
	appsFile := fs.String("apps", "", "apps file (YAML: ids, write keys, tag plans, rate limits); empty: the embedded demo app")
	logLevel := fs.String("log.level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "listen address")
	fs.Int64Var(&cfg.MaxBodyBytes, "collector.max-body-bytes", cfg.MaxBodyBytes, "largest native request body, after gunzip")
	fs.Int64Var(&cfg.BufferBytes, "collector.buffer-bytes", cfg.BufferBytes, "bytes of accepted records that may wait for Kafka; beyond it requests get 503")
	fs.DurationVar(&cfg.ProduceTimeout, "collector.produce-timeout", cfg.ProduceTimeout, "how long a request waits for Kafka's acknowledgement before 503")
	fs.DurationVar(&cfg.RetryAfter, "collector.retry-after", cfg.RetryAfter, "Retry-After advised with 503")
	fs.StringVar(&cfg.PublicURL, "collector.public-url", "", "URL at which SDKs reach the collector (for the Segment settings endpoint); empty: the request's Host")
	fs.IntVar(&cfg.MaxRecords, "collector.max-records", cfg.MaxRecords, "most records in one native request (messages in one Segment batch); beyond it 413")
	fs.Int64Var(&cfg.MemoryBudget, "collector.memory-budget", cfg.MemoryBudget, "bytes that the requests in flight may hold, taken before a body is read (6x the body, 16x for Segment; the body limit when its length is unknown or it is gzipped); beyond it 503 at once. The Go memory limit is set to it plus 64 MiB unless GOMEMLIMIT is set")
	fs.DurationVar(&cfg.ReadTimeout, "collector.read-timeout", cfg.ReadTimeout, "time within which a request's body must have arrived; beyond it 408")
	fs.DurationVar(&cfg.ProcessTimeout, "collector.process-timeout", cfg.ProcessTimeout, "time within which a request's records must be decoded and checked; beyond it 503")
	serveInbox := fs.Bool("collector.inbox", true, "serve the devices' in-app messages (GET /v1/inapp), following the inbox topic in memory")
	inboxTopic := fs.String("collector.inbox-topic", kafkabus.TopicInbox, "the compacted topic of the devices' in-app messages (engage deliver writes it)")
	tagsTopic := fs.String("collector.topic", kafkabus.TopicTags, "the topic the accepted records go to")
	inboxSimulated := fs.Bool("collector.inbox-simulated-clock", false, "judge the in-app messages' expiry by the newest delivery time in the inbox, not the wall clock (with the other services' simulated clocks: replays, tests)")
	if err := parse(fs, args); err != nil {
		return err
	}
	log, err := newLogger(*logLevel)
	if err != nil {
		return err
	}
	tc, err := hf.tlsConfig(log)
	if err != nil {
		return err
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// The budget bounds what requests hold; the limit makes the
		// garbage collector reclaim what they leave before the heap grows
		// much past it.
		debug.SetMemoryLimit(cfg.MemoryBudget + 64<<20)
	}
	apps, err := loadApps(*appsFile)
	if err != nil {
		return err
	}
	brokers, stopKafka, err := kf.connect(ctx, log)
	if err != nil {
		return err
	}
	defer stopKafka()
	pcfg := kafkabus.DefaultProducerConfig(brokers, *tagsTopic)
	pcfg.BatchTimeout, pcfg.Compression = kf.batchTimeout, kf.compression
	prod, err := kafkabus.NewProducer(pcfg, log)
	if err != nil {
		return err
	}
	defer prod.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := collector.New(cfg, apps, prod, reg, log)
	if err != nil {
		return err
	}
	if *serveInbox {
		store := inbox.NewStore()
		if *inboxSimulated {
			sim := &simulatedInbox{Store: store}
			srv.SetInbox(sim)
			go followInbox(ctx, brokers, *inboxTopic, sim, log)
		} else {
			srv.SetInbox(store)
			go followInbox(ctx, brokers, *inboxTopic, store, log)
		}
	}
	// Ready again without traffic once Kafka answers and the topic has
	// its leaders.
	srv.SetProbe(kafkaReady(brokers, *tagsTopic))
	ln, err := httpserve.Listen(cfg.Addr)
	if err != nil {
		return err
	}
	err = srv.RunTLS(ctx, ln, tc)
	logStopped(log, "collect", err, "records_accepted", counterInt(reg, "engage_collector_records_total", map[string]string{"outcome": "accepted"}),
		"records_rejected", counterInt(reg, "engage_collector_records_total", map[string]string{"outcome": "rejected"}))
	return err
}

// followInbox follows every partition of engage.inbox into store until ctx
// ends, waiting for the topic while it does not exist (looking again
// after topicPoll's waits). A partition whose following fails is followed
// again after inboxRetry's waits (from the start after a minute of
// following).
func followInbox(ctx context.Context, brokers []string, topic string, store inboxApplier, log *slog.Logger) {
	poll := backoff.New(topicPoll)
	for warned := false; ; warned = true {
		parts, err := kafkabus.Partitions(ctx, brokers)
		if n := parts[topic]; err == nil && n > 0 {
			for p := range n {
				go func() {
					retry := backoff.New(inboxRetry)
					for ctx.Err() == nil {
						began := time.Now()
						err := kafkabus.FollowPartition(ctx, brokers, topic, p, func(m bus.Message, _ bool) error {
							if m.Key == nil {
								return nil
							}
							if err := store.Apply(m.Key, m.Value); err != nil {
								log.Warn("inbox record skipped", "err", err)
							}
							return nil
						})
						if ctx.Err() != nil {
							return
						}
						if time.Since(began) > time.Minute {
							retry.Reset()
						}
						wait := retry.Next()
						log.Warn("following the inbox failed; trying again", "partition", p, "retry_in", wait, "err", err)
						if backoff.Sleep(ctx, wait) != nil {
							return
						}
					}
				}()
			}
			return
		}
		if !warned {
			log.Warn("in-app messages: waiting for the topic (engage topics creates it)", "topic", topic, "err", err)
		}
		if poll.Wait(ctx) != nil {
			return
		}
	}
}

// topicPoll paces the looks for a topic that does not exist yet: from 1 s
// to 10 s. inboxRetry paces the following of an inbox partition after a
// failure: from 1 s to 30 s. Both half jittered (pipeline/backoff).
var (
	topicPoll  = backoff.Policy{Min: time.Second, Max: 10 * time.Second, Floor: 0.5}
	inboxRetry = backoff.Policy{Min: time.Second, Max: 30 * time.Second, Floor: 0.5}
)
