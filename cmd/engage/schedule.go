package main

import (
	"context"
	"io"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/openengage/engage/pipeline/apiauth"
	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/httpserve"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/tagplan"
	"github.com/openengage/engage/segments/processor"
	"github.com/openengage/engage/triggers/scheduler"
)

func runSchedule(ctx context.Context, args []string, _ io.Writer) error {
	fs := newFlagSet("schedule")
	var kconn kafkaConn
	brokers := kconn.registerConn(fs, "comma-separated Kafka bootstrap brokers (required)")
	cfg := scheduler.DefaultConfig(nil)
	fs.StringVar(&cfg.Group, "schedule.group", cfg.Group, "consumer group; the instances of one deployment share it")
	fs.StringVar(&cfg.Topic, "schedule.topic", cfg.Topic, "input topic: the processor's segment changes")
	fs.StringVar(&cfg.ChangelogTopic, "schedule.changelog-topic", cfg.ChangelogTopic, "compacted state changelog, co-partitioned with the input")
	fs.StringVar(&cfg.DeliveriesTopic, "schedule.deliveries-topic", cfg.DeliveriesTopic, "topic of the sends, for the dispatcher")
	fs.StringVar(&cfg.DecisionsTopic, "schedule.decisions-topic", cfg.DecisionsTopic, "topic of every decision and its reason")
	fs.StringVar(&cfg.ConfigTopic, "config.topic", cfg.ConfigTopic, "configuration topic (campaigns and caps)")
	fs.DurationVar(&cfg.FlushInterval, "schedule.flush-interval", cfg.FlushInterval, "longest wait before decisions are produced and offsets committed; due sends fire at this tick on the wall clock")
	fs.IntVar(&cfg.FlushRecords, "schedule.flush-records", cfg.FlushRecords, "or after this many input messages")
	fs.BoolVar(&cfg.SimulatedClock, "schedule.simulated-clock", false, "now is the newest time of each partition's input (the processor's clock), not the wall clock: run the processor with -process.simulated-clock too")
	fs.DurationVar(&cfg.SessionTimeout, "schedule.session-timeout", cfg.SessionTimeout, "how long before a silent instance's partitions move to the others")
	fs.DurationVar(&cfg.EvictAfter, "schedule.evict-after", cfg.EvictAfter, "retention of a device's state without input (in no segment, nothing waiting, no caps or repeat history that still counts); a once: true campaign's send is kept that long; 0: never")
	fs.DurationVar(&cfg.EvictMargin, "schedule.evict-margin", cfg.EvictMargin, "how long after the processor evicted a device (and after its caps and repeat history stop counting) its state is deleted")
	addr := fs.String("addr", "127.0.0.1:8083", "listen address of the campaigns API, /metrics, /healthz and /readyz; empty: none")
	var hf httpFlags
	hf.register(fs)
	tokens := fs.String("api.tokens", "", "bearer tokens (16 bytes or more) of the campaigns API and the apps each may manage: \"TOKEN:app1,app2 TOKEN2:*\" (set it in the environment); empty: no API")
	appsFile := fs.String("apps", "", "apps file, for the tag plans campaigns are checked against; empty: the embedded demo app")
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
	toks, err := apiauth.ParseTokens("-api.tokens", *tokens)
	if err != nil {
		return err
	}
	tc, err := hf.tlsConfig(log)
	if err != nil {
		return err
	}
	apps, err := loadApps(*appsFile)
	if err != nil {
		return err
	}
	prod, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(cfg.Brokers, cfg.DeliveriesTopic), log)
	if err != nil {
		return err
	}
	defer prod.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	store := scheduler.NewStore()
	svc, err := scheduler.New(cfg, store, prod, scheduler.NewMetrics(reg), log)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return svc.Run(gctx) })
	if *addr != "" {
		// Ready: Kafka answers (input and changelog have their leaders),
		// the campaigns are read and every owned partition restored.
		ready := &httpserve.Ready{}
		ready.Add("kafka", kafkaReady(cfg.Brokers, cfg.Topic, cfg.ChangelogTopic))
		ready.Add("scheduler", func(context.Context) error { return svc.Ready() })
		mux := serviceMux(reg, ready)
		if toks.Len() > 0 {
			// The API checks campaigns against the stored segments.
			segs := processor.NewStore()
			ready := make(chan struct{})
			g.Go(func() error {
				return segs.Follow(gctx, func(ctx context.Context, fn func(bus.Message, bool) error) error {
					return kafkabus.FollowPartition(ctx, cfg.Brokers, cfg.ConfigTopic, 0, fn)
				}, ready, func(err error) { log.Warn("segment configuration", "err", err) })
			})
			api := &scheduler.CampaignAPI{Campaigns: store, Segments: segs, Config: prod, Topic: cfg.ConfigTopic, Tokens: toks,
				Plans: func(id string) (*tagplan.Plan, bool) {
					app, ok := apps.ByID(id)
					if !ok {
						return nil, false
					}
					return app.Plan, true
				}}
			mux.Handle("/v1/", api.Handler())
		}
		if err := serveHTTP(g, gctx, *addr, mux, tc, log, "schedule"); err != nil {
			return err
		}
		log.Info("schedule: listening", "addr", *addr, "campaigns_api", toks.Len() > 0)
	}
	err = g.Wait()
	logStopped(log, "schedule", err, "input", counterInt(reg, "engage_schedule_input_total", nil),
		"deliveries", counterInt(reg, "engage_schedule_deliveries_total", nil), "decisions", counterInt(reg, "engage_schedule_decisions_total", nil))
	return err
}
