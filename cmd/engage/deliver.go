package main

import (
	"context"
	"errors"
	"io"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/openengage/engage/delivery"
	"github.com/openengage/engage/delivery/dispatcher"
	"github.com/openengage/engage/pipeline/httpserve"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/tag"
)

func runDeliver(ctx context.Context, args []string, _ io.Writer) error {
	fs := newFlagSet("deliver")
	var kconn kafkaConn
	brokers := kconn.registerConn(fs, "comma-separated Kafka bootstrap brokers (required)")
	cfg := dispatcher.DefaultConfig(nil)
	creds := fs.String("credentials", "", "the apps' APNs and FCM credentials (YAML; docs/delivery.md); keys are read from the files or environment variables it names (required)")
	fs.StringVar(&cfg.Group, "deliver.group", cfg.Group, "consumer group; the instances of one deployment share it")
	fs.StringVar(&cfg.Topic, "deliver.topic", cfg.Topic, "input topic: the scheduler's deliveries")
	fs.StringVar(&cfg.ChangelogTopic, "deliver.changelog-topic", cfg.ChangelogTopic, "compacted state (attempts, dead tokens), co-partitioned with the input")
	fs.StringVar(&cfg.DecisionsTopic, "deliver.decisions-topic", cfg.DecisionsTopic, "topic of the decisions (accepted, failed, unreachable, expired, unknown)")
	fs.StringVar(&cfg.FeedbackTopic, "deliver.feedback-topic", cfg.FeedbackTopic, "topic of each delivery's result, for the statistics")
	fs.StringVar(&cfg.TagsTopic, "deliver.tags-topic", cfg.TagsTopic, "tags topic, where a token a provider declared dead is reported (a push record token_dead of the device)")
	fs.StringVar(&cfg.InboxTopic, "deliver.inbox-topic", cfg.InboxTopic, "compacted topic of each device's in-app messages, co-partitioned with the input (the collector serves it)")
	fs.DurationVar(&cfg.FlushInterval, "deliver.flush-interval", cfg.FlushInterval, "longest wait of a batch of deliveries")
	fs.IntVar(&cfg.Batch, "deliver.batch", cfg.Batch, "deliveries sent together at most, per partition")
	fs.IntVar(&cfg.InFlight, "deliver.in-flight", cfg.InFlight, "sends waiting for the provider at once, per partition")
	fs.IntVar(&cfg.MaxAttempts, "deliver.max-attempts", cfg.MaxAttempts, "tries of a delivery the provider keeps failing (429, 5xx)")
	fs.DurationVar(&cfg.RetryBase, "deliver.retry-base", cfg.RetryBase, "first wait before another try; it doubles, with jitter, at least the provider's Retry-After")
	fs.DurationVar(&cfg.RetryMax, "deliver.retry-max", cfg.RetryMax, "longest wait before another try")
	fs.DurationVar(&cfg.AuthPause, "deliver.auth-pause", cfg.AuthPause, "how long an app whose credentials the provider refused waits before trying again")
	fs.IntVar(&cfg.MaxWaiting, "deliver.max-waiting", cfg.MaxWaiting, "deliveries waiting for another try (an app paused, a provider refusing) per partition before no more are read")
	fs.BoolVar(&cfg.SimulatedClock, "deliver.simulated-clock", false, "judge each delivery's expiry at its own time (when the scheduler decided it), not the wall clock (with the scheduler's -schedule.simulated-clock: replays, tests)")
	fs.DurationVar(&cfg.SessionTimeout, "deliver.session-timeout", cfg.SessionTimeout, "how long before a silent instance's partitions move to the others")
	addr := fs.String("addr", "127.0.0.1:8084", "listen address of /metrics, /healthz and /readyz; empty: none")
	var hf httpFlags
	hf.register(fs)
	logLevel := fs.String("log.level", "info", "log level")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := kconn.secure(ctx); err != nil {
		return err
	}
	log, err := newLogger(*logLevel)
	if err != nil {
		return err
	}
	cfg.Brokers = splitList(*brokers)
	if err := cfg.Validate(); err != nil {
		return err
	}
	tc, err := hf.tlsConfig(log)
	if err != nil {
		return err
	}
	if *creds == "" {
		return errors.New("deliver: give -credentials (the apps' APNs and FCM credentials)")
	}
	providers, err := delivery.LoadCredentials(ctx, *creds)
	if err != nil {
		return err
	}
	defer providers.Close()
	log.Info("deliver: credentials loaded", "apps", providers.Apps())
	prod, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(cfg.Brokers, cfg.DecisionsTopic), log)
	if err != nil {
		return err
	}
	defer prod.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	senders := func(app string, p tag.PushProvider) (dispatcher.Sender, bool) { return providers.Sender(app, p) }
	d, err := dispatcher.New(cfg, senders, prod, dispatcher.NewMetrics(reg), log)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return d.Run(gctx) })
	if *addr != "" {
		// Ready: Kafka answers and the input topic has its leaders.
		ready := &httpserve.Ready{}
		ready.Add("kafka", kafkaReady(cfg.Brokers, cfg.Topic))
		if err := serveHTTP(g, gctx, *addr, serviceMux(reg, ready), tc, log, "deliver"); err != nil {
			return err
		}
	}
	err = g.Wait()
	logStopped(log, "deliver", err, "deliveries_read", counterInt(reg, "engage_deliver_deliveries_read_total", nil),
		"accepted", counterInt(reg, "engage_deliver_results_total", map[string]string{"outcome": "accepted"}),
		"finished", counterInt(reg, "engage_deliver_results_total", nil))
	return err
}
