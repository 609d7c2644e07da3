package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/openengage/engage/pipeline/backoff"
	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/httpserve"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/sinks"
	"github.com/openengage/engage/sinks/clickhouse"
)

func runMigrate(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("migrate")
	var cf clickhouseFlags
	cf.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg := cf.config()
	conn, f, err := clickhouse.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	applied, err := clickhouse.Migrate(ctx, conn, cfg, f)
	if err != nil {
		return err
	}
	v, err := clickhouse.SchemaVersion(ctx, conn, cfg.Database)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\ndatabase %s at schema version %d (applied now: %v)\n", f, cfg.Database, v, applied)
	return nil
}

func runSink(ctx context.Context, args []string, _ io.Writer) error {
	fs := newFlagSet("sink")
	var cf clickhouseFlags
	cf.register(fs)
	var kconn kafkaConn
	brokers := kconn.registerConn(fs, "comma-separated Kafka bootstrap brokers (required)")
	group := fs.String("sink.group", "engage-sink", "consumer group of the tags stream")
	topic := fs.String("sink.topic", kafkabus.TopicTags, "topic of tag records to write")
	decisions := fs.Bool("sink.decisions", true, "also write the scheduler's decisions (-sink.decisions-topic) into the decisions table: a second stream in this process "+
		"with its own consumer group, batches and metrics (stream=\"decisions\"), written through the native protocol; it waits for the topic while it does not exist "+
		"(engage topics creates it); false: tags only")
	decisionsTopic := fs.String("sink.decisions-topic", kafkabus.TopicDecisions, "topic of the scheduler's decisions")
	decisionsGroup := fs.String("sink.decisions-group", "engage-sink-decisions", "consumer group of the decisions stream")
	feedback := fs.Bool("sink.feedback", true, "also write the dispatcher's delivery results (-sink.feedback-topic) into the delivery_results table: a third stream in this process "+
		"with its own consumer group, batches and metrics (stream=\"feedback\"), written through the native protocol; it waits for the topic while it does not exist "+
		"(engage topics creates it); false: not written")
	feedbackTopic := fs.String("sink.feedback-topic", kafkabus.TopicFeedback, "topic of the dispatcher's delivery results")
	feedbackGroup := fs.String("sink.feedback-group", "engage-sink-feedback", "consumer group of the feedback stream")
	scfg := sinks.DefaultConfig(kafkabus.TopicTagsDead)
	scfg.Transient = clickhouse.Transient // setup errors (credentials, schema) logged as such, retried every -sink.backoff-max
	fs.StringVar(&scfg.DeadTopic, "sink.dead-topic", scfg.DeadTopic, "dead-letter topic of every stream (the source_topic header names the stream's topic)")
	fs.IntVar(&scfg.BatchRows, "sink.batch-rows", scfg.BatchRows, "flush a batch at this many records (or -sink.batch-bytes, or -sink.flush-interval: whichever comes first)")
	fs.IntVar(&scfg.BatchBytes, "sink.batch-bytes", scfg.BatchBytes, "flush a batch at this many bytes of records (or -sink.batch-rows, or -sink.flush-interval)")
	fs.DurationVar(&scfg.FlushInterval, "sink.flush-interval", scfg.FlushInterval, "flush a batch this long after its first record (or -sink.batch-rows, or -sink.batch-bytes)")
	fs.IntVar(&scfg.Writers, "sink.writers", scfg.Writers, "batches written to ClickHouse at once (commits stay in order)")
	fs.DurationVar(&scfg.BackoffMax, "sink.backoff-max", scfg.BackoffMax, "longest wait between retries of a failed write")
	fs.DurationVar(&scfg.DrainTimeout, "sink.drain-timeout", scfg.DrainTimeout, "on SIGTERM, how long the batches being written may take to be written and committed before the sink exits (batches not yet started are read again after a restart); 0: abandon them at once")
	fs.DurationVar(&scfg.LogInterval, "sink.log-interval", scfg.LogInterval, "how often each stream logs the rows it wrote and its consumer lag (an idle stream once); 0: never")
	metricsAddr := fs.String("metrics.addr", "127.0.0.1:9101", "where /metrics, /healthz and /readyz are served; empty: nowhere")
	var hf httpFlags
	hf.register(fs)
	migrate := fs.Bool("migrate", true, "apply schema migrations at start")
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
	bl := splitList(*brokers)
	tc, err := hf.tlsConfig(log)
	if err != nil {
		return err
	}
	cfg := cf.config()
	conn, f, err := clickhouse.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	if *migrate {
		applied, err := clickhouse.Migrate(ctx, conn, cfg, f)
		if err != nil {
			return err
		}
		v, err := clickhouse.SchemaVersion(ctx, conn, cfg.Database)
		if err != nil {
			return err
		}
		if len(applied) > 0 {
			log.Info(fmt.Sprintf("sink: schema migrated to version %d", v), "database", cfg.Database, "applied", applied, "version", v)
		} else {
			log.Info(fmt.Sprintf("sink: schema at version %d, no migration to apply", v), "database", cfg.Database, "version", v)
		}
	}
	consumer, err := kafkabus.NewConsumer(kafkabus.ConsumerConfig{Brokers: bl, Group: *group, Topic: *topic}, log)
	if err != nil {
		return err
	}
	defer consumer.Close()
	dead, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(bl, scfg.DeadTopic), log)
	if err != nil {
		return err
	}
	defer dead.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(lagGauge("tags", bl, *group, *topic))
	var rows clickhouse.RowWriter = clickhouse.NewWriter(conn, cfg.Database)
	via := "native protocol"
	if cf.httpAddr != "" {
		if rows, err = clickhouse.NewHTTPWriter(ctx, conn, cfg, cf.httpAddr); err != nil {
			return err
		}
		via = "HTTP " + cf.httpAddr + ", Native format"
	}
	s, err := sinks.New(scfg, consumer, sinks.TagWriter{Rows: rows, Permanent: clickhouse.IsPermanent}, dead, "tags", reg, log)
	if err != nil {
		return err
	}
	s.SetLag(streamLag(bl, *group, *topic))
	log.Info("sink: starting", "clickhouse", f.String(), "database", cfg.Database, "writes", via, "group", *group, "decisions", *decisions, "feedback", *feedback)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.Run(gctx) })
	chw := clickhouse.NewWriter(conn, cfg.Database)
	for _, st := range []jsonStream{
		{*decisions, "decisions", "-sink.decisions", *decisionsTopic, *decisionsGroup, sinks.DecisionWriter{Store: chw, Permanent: clickhouse.IsPermanent}},
		{*feedback, "feedback", "-sink.feedback", *feedbackTopic, *feedbackGroup, sinks.FeedbackWriter{Store: chw, Permanent: clickhouse.IsPermanent}},
	} {
		if !st.on {
			continue
		}
		closeFn, err := st.start(g, gctx, scfg, bl, dead, reg, log)
		if err != nil {
			return err
		}
		defer closeFn()
	}
	if *metricsAddr != "" {
		// Ready: Kafka answers (the tags topic has its leaders) and
		// ClickHouse answers.
		ready := &httpserve.Ready{}
		ready.Add("kafka", kafkaReady(bl, *topic))
		ready.Add("clickhouse", func(ctx context.Context) error { return conn.Ping(ctx) })
		if err := serveHTTP(g, gctx, *metricsAddr, serviceMux(reg, ready), tc, log, "sink"); err != nil {
			return err
		}
	}
	err = g.Wait()
	logStopped(log, "sink", err, "rows", int64(counterTotal(reg, "engage_sink_rows_total", nil)),
		"dead_letters", int64(counterTotal(reg, "engage_sink_dead_letters_total", nil)))
	return err
}

// streamLag tells the messages of topic that group has not committed.
func streamLag(brokers []string, group, topic string) func(context.Context) (int64, error) {
	return func(ctx context.Context) (int64, error) { return kafkabus.GroupLag(ctx, brokers, group, topic) }
}

// jsonStream is a stream that the sink writes next to the tags: the
// scheduler's decisions, the dispatcher's delivery results.
type jsonStream struct {
	on           bool
	name, flag   string // the metrics' stream label; the flag that turns it off
	topic, group string
	w            sinks.Writer
}

// start runs the stream in g, once its topic exists, and returns what
// closes its consumer.
func (st jsonStream) start(g *errgroup.Group, gctx context.Context, scfg sinks.Config, brokers []string, dead bus.Producer,
	reg *prometheus.Registry, log *slog.Logger) (func(), error) {
	c, err := kafkabus.NewConsumer(kafkabus.ConsumerConfig{Brokers: brokers, Group: st.group, Topic: st.topic}, log)
	if err != nil {
		return nil, err
	}
	s, err := sinks.New(scfg, c, st.w, dead, st.name, reg, log)
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	reg.MustRegister(lagGauge(st.name, brokers, st.group, st.topic))
	s.SetLag(streamLag(brokers, st.group, st.topic))
	g.Go(func() error {
		if err := waitForTopic(gctx, brokers, st.topic, st.flag, 10*time.Second, log); err != nil {
			return nil // stopped while waiting
		}
		log.Info("sink: stream "+st.name+" starting", "stream", st.name, "topic", st.topic, "group", st.group)
		return s.Run(gctx)
	})
	return func() { _ = c.Close() }, nil
}

// lagGauge reports the messages of topic that group has not committed (-1
// when Kafka does not answer within 5 s, or the topic does not exist).
func lagGauge(stream string, brokers []string, group, topic string) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "engage_sink_lag_messages", Help: "Messages of the topic the sink's group has not committed.",
		ConstLabels: prometheus.Labels{"stream": stream}}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		lag, err := kafkabus.GroupLag(ctx, brokers, group, topic)
		if err != nil {
			return -1
		}
		return float64(lag)
	})
}

// waitForTopic returns once topic exists, looking again after waits that
// grow from a second (or every, if shorter) to every, and says in the log
// that it waits (once, and again only if why changes), naming the flag that
// turns its stream off. It must not join a group on a missing topic: the
// broker would create it (auto.create.topics.enable) with its default
// partition count, not co-partitioned with engage.tags.
func waitForTopic(ctx context.Context, brokers []string, topic, flag string, every time.Duration, log *slog.Logger) error {
	said := ""
	poll := backoff.New(backoff.Policy{Min: min(time.Second, every), Max: every, Floor: 0.5})
	for {
		parts, err := kafkabus.Partitions(ctx, brokers)
		if err == nil && parts[topic] > 0 {
			if said != "" {
				log.Info("topic exists now", "topic", topic)
			}
			return nil
		}
		msg, args := "topic does not exist: run engage topics (or set "+flag+"=false); its sink starts when it exists", []any{"topic", topic}
		if err != nil {
			msg, args = "cannot read the topics; retrying", append(args, "err", err)
		}
		if msg != said {
			log.Warn(msg, args...)
			said = msg
		}
		if err := poll.Wait(ctx); err != nil {
			return err
		}
	}
}
