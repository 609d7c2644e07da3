package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/openengage/engage/pipeline/apiauth"
	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/httpserve"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/tagplan"
	"github.com/openengage/engage/segments/processor"
	"github.com/openengage/engage/sinks/clickhouse"
)

func runProcess(ctx context.Context, args []string, _ io.Writer) error {
	fs := newFlagSet("process")
	var kconn kafkaConn
	brokers := kconn.registerConn(fs, "comma-separated Kafka bootstrap brokers (required)")
	cfg := processor.DefaultConfig(nil)
	fs.StringVar(&cfg.Group, "process.group", cfg.Group, "consumer group; the instances of one deployment share it")
	fs.StringVar(&cfg.Topic, "process.topic", cfg.Topic, "input topic of tag records")
	fs.StringVar(&cfg.ChangelogTopic, "process.changelog-topic", cfg.ChangelogTopic, "compacted state changelog, co-partitioned with the input")
	fs.StringVar(&cfg.ChangesTopic, "process.changes-topic", cfg.ChangesTopic, "topic of segment enters and exits")
	fs.StringVar(&cfg.ConfigTopic, "config.topic", cfg.ConfigTopic, "configuration topic (segment definitions)")
	fs.DurationVar(&cfg.FlushInterval, "process.flush-interval", cfg.FlushInterval, "longest wait before changes are produced and offsets committed")
	fs.IntVar(&cfg.FlushRecords, "process.flush-records", cfg.FlushRecords, "or after this many input records")
	fs.BoolVar(&cfg.SimulatedClock, "process.simulated-clock", false, "now is the newest event time of each partition, not the wall clock (replays, tests, dry runs)")
	fs.DurationVar(&cfg.SessionTimeout, "process.session-timeout", cfg.SessionTimeout, "how long before a silent instance's partitions move to the others")
	fs.DurationVar(&cfg.EvictAfter, "process.evict-after", cfg.EvictAfter, "retention of devices no longer seen: evicted (memberships exit with cause \"evicted\", state deleted) after this long even when a condition without a window reads them, sooner when every condition of their app has a window (the longest plus -process.evict-margin); a device back after it counts as new; 0: never")
	fs.DurationVar(&cfg.EvictMargin, "process.evict-margin", cfg.EvictMargin, "added to an app's longest window before its devices no longer seen are evicted")
	addr := fs.String("addr", "127.0.0.1:8082", "listen address of the segments API, /metrics, /healthz and /readyz; empty: none")
	var hf httpFlags
	hf.register(fs)
	advertise := fs.String("api.advertise", "", "base URL at which the other instances reach this one's API (default: http:// and -addr, with this host's name when -addr has no host)")
	tokens := fs.String("api.tokens", "", "bearer tokens (16 bytes or more) and the apps each may manage: \"TOKEN:app1,app2 TOKEN2:*\" (set it in the environment)")
	clusterSecret := fs.String("api.cluster-secret", "", "secret shared by the instances, with which they authenticate each other's calls (32 bytes or more; required with -api.tokens; set it in the environment)")
	peerAllow := fs.String("api.peer-allow", "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7", "CIDR prefixes other instances' addresses must be in (0.0.0.0/0,::/0: any)")
	peerTimeout := fs.Duration("api.peer-timeout", processor.DefaultPeerTimeout, "longest wait for another instance's answer")
	peerMaxBytes := fs.Int64("api.peer-max-bytes", processor.DefaultPeerMaxBytes, "largest answer read from another instance (a segment's members on its partitions)")
	appsFile := fs.String("apps", "", "apps file, for the tag plans segments are checked against; empty: the embedded demo app")
	logLevel := fs.String("log.level", "info", "log level")
	var cf clickhouseFlags
	cf.register(fs)
	fs.StringVar(&cfg.SinkGroup, "history.sink-group", cfg.SinkGroup, "consumer group of the sink that writes the history store; a fill waits until it has written past the fill's seam")
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
	toks, err := apiauth.ParseTokens("-api.tokens", *tokens)
	if err != nil {
		return err
	}
	var cluster *apiauth.Cluster
	if *clusterSecret != "" || (toks.Len() > 0 && *addr != "") {
		if cluster, err = apiauth.NewCluster("-api.cluster-secret", *clusterSecret); err != nil {
			return err
		}
	}
	tc, err := hf.tlsConfig(log)
	if err != nil {
		return err
	}
	allow, err := processor.ParsePeerAllow(*peerAllow)
	if err != nil {
		return err
	}
	if *peerTimeout <= 0 || *peerMaxBytes <= 0 {
		return fmt.Errorf("-api.peer-timeout %s and -api.peer-max-bytes %d must be positive", *peerTimeout, *peerMaxBytes)
	}
	apps, err := loadApps(*appsFile)
	if err != nil {
		return err
	}
	prod, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(cfg.Brokers, cfg.ChangesTopic), log)
	if err != nil {
		return err
	}
	defer prod.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if *addr != "" {
		cfg.Advertise = *advertise
		if cfg.Advertise == "" {
			cfg.Advertise, err = advertiseURL(*addr)
			if err != nil {
				return err
			}
			if tc != nil {
				// The API answers HTTPS only: the peers call it so.
				cfg.Advertise = "https://" + strings.TrimPrefix(cfg.Advertise, "http://")
			}
		}
		if err := processor.CheckAddr(cfg.Advertise); err != nil {
			return fmt.Errorf("-api.advertise: %w", err)
		}
		if ip, err := netip.ParseAddr(strings.Trim(hostOf(cfg.Advertise), "[]")); err == nil && !slices.ContainsFunc(allow, func(p netip.Prefix) bool { return p.Contains(ip.Unmap()) }) {
			log.Warn("the address this instance advertises is outside -api.peer-allow: the other instances will not call it", "advertise", cfg.Advertise, "peer_allow", *peerAllow)
		}
	}
	if cf.addr != "" {
		// New segments fill their conditions from the raw tags the sink
		// wrote into ClickHouse.
		chCfg := cf.config()
		conn, _, err := clickhouse.Open(ctx, chCfg)
		if err != nil {
			return fmt.Errorf("history store: %w", err)
		}
		defer conn.Close()
		cfg.History = clickhouse.NewHistoryReader(conn, chCfg.Database)
		log.Info("new segments fill from history", "clickhouse", cf.addr, "database", chCfg.Database, "sink_group", cfg.SinkGroup)
	} else {
		log.Info("no history store (-clickhouse.addr): new segments count from when they are saved")
	}
	store := processor.NewStore()
	proc, err := processor.New(cfg, store, prod, processor.NewMetrics(reg), log)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return proc.Run(gctx) })
	if *addr != "" {
		api := &processor.API{Proc: proc, Store: store, Config: prod, Topic: cfg.ConfigTopic, Tokens: toks, Cluster: cluster,
			Client: processor.NewPeerClient(allow), PeerTimeout: *peerTimeout, PeerMaxBytes: *peerMaxBytes,
			Plans: func(id string) (*tagplan.Plan, bool) {
				app, ok := apps.ByID(id)
				if !ok {
					return nil, false
				}
				return app.Plan, true
			}}
		// Ready: Kafka answers (input and changelog have their leaders),
		// the segments are read and every owned partition restored.
		ready := &httpserve.Ready{}
		ready.Add("kafka", kafkaReady(cfg.Brokers, cfg.Topic, cfg.ChangelogTopic))
		ready.Add("processor", func(context.Context) error { return proc.Ready() })
		mux := serviceMux(reg, ready)
		mux.Handle("/v1/", api.Handler())
		if err := serveHTTP(g, gctx, *addr, mux, tc, log, "process"); err != nil {
			return err
		}
		log.Info("segments API listening", "addr", *addr)
	}
	err = g.Wait()
	logStopped(log, "process", err, "records", counterInt(reg, "engage_process_records_total", nil),
		"segment_changes", counterInt(reg, "engage_process_segment_changes_total", nil))
	return err
}

// hostOf returns the host of a URL that CheckAddr accepted.
func hostOf(u string) string {
	p, _ := url.Parse(u)
	return p.Hostname()
}

// advertiseURL is the default base URL of an API listening on addr.
func advertiseURL(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("-addr %q: %w", addr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		if host, err = os.Hostname(); err != nil {
			return "", fmt.Errorf("-addr %q has no host, and this host's name is unknown (%v): set -api.advertise", addr, err)
		}
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

// runSegments manages segment definitions in the configuration topic:
//
//	engage segments put -app A -name N (-text '...' | -file F)
//	engage segments delete -app A -name N
//	engage segments list [-app A]
//	engage segments check -app A (-text '...' | -file F)   (offline: parse and check against the plan)
func runSegments(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("segments: give put, delete, list or check")
	}
	verb := args[0]
	fs := newFlagSet("segments " + verb)
	var kconn kafkaConn
	brokers := kconn.registerConn(fs, "comma-separated Kafka bootstrap brokers")
	topic := fs.String("config.topic", kafkabus.TopicConfig, "configuration topic")
	app := fs.String("app", "", "app id")
	name := fs.String("name", "", "segment name")
	text := fs.String("text", "", "segment text")
	file := fs.String("file", "", "file holding the segment text (- : standard input)")
	appsFile := fs.String("apps", "", "apps file, for the tag plans; empty: the embedded demo app")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if err := kconn.secure(ctx); err != nil {
		return err
	}
	readText := func() (string, error) {
		switch {
		case *text != "" && *file != "":
			return "", errors.New("give -text or -file, not both")
		case *file == "-":
			b, err := io.ReadAll(os.Stdin)
			return string(b), err
		case *file != "":
			b, err := os.ReadFile(*file)
			return string(b), err
		case *text != "":
			return *text, nil
		}
		return "", errors.New("give the segment: -text '...' or -file F")
	}
	plan := func() (*tagplan.Plan, error) {
		apps, err := loadApps(*appsFile)
		if err != nil {
			return nil, err
		}
		a, ok := apps.ByID(*app)
		if !ok {
			return nil, fmt.Errorf("unknown app %q in the apps file", *app)
		}
		return a.Plan, nil
	}
	current := func() (*processor.Store, error) { return followSegments(ctx, splitList(*brokers), *topic) }
	switch verb {
	case "check", "put":
		t, err := readText()
		if err != nil {
			return err
		}
		p, err := plan()
		if err != nil {
			return err
		}
		var others []processor.Definition
		if verb == "put" {
			store, err := current()
			if err != nil {
				return err
			}
			set, _ := store.Current()
			others = set.Defs
		}
		n := *name
		if n == "" && verb == "check" {
			n = "check"
		}
		d := processor.Definition{App: *app, Name: n, Text: t, UpdatedAt: time.Now().UTC()}
		if _, err := processor.Validate(d, p, others); err != nil {
			return err
		}
		if verb == "check" {
			fmt.Fprintln(stdout, "ok")
			return nil
		}
		prod, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(splitList(*brokers), *topic), nil)
		if err != nil {
			return err
		}
		defer prod.Close()
		v, _ := json.Marshal(d)
		if err := prod.Produce(ctx, []bus.Message{{Key: processor.ConfigKey(*app, *name), Value: v}}); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "stored segment %q of app %q\n", *name, *app)
		return nil
	case "delete":
		prod, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(splitList(*brokers), *topic), nil)
		if err != nil {
			return err
		}
		defer prod.Close()
		if err := prod.Produce(ctx, []bus.Message{{Key: processor.ConfigKey(*app, *name)}}); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "deleted segment %q of app %q\n", *name, *app)
		return nil
	case "list":
		store, err := current()
		if err != nil {
			return err
		}
		set, _ := store.Current()
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "APP\tNAME\tVERSION\tTEXT")
		for _, d := range set.Defs {
			if *app == "" || d.App == *app {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", d.App, d.Name, d.Version, strings.Join(strings.Fields(d.Text), " "))
			}
		}
		return tw.Flush()
	}
	return fmt.Errorf("segments: unknown verb %q: give put, delete, list or check", verb)
}

// followSegments reads the segment definitions stored in the configuration
// topic, up to its end.
func followSegments(ctx context.Context, brokers []string, topic string) (*processor.Store, error) {
	store := processor.NewStore()
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ready := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- store.Follow(fctx, func(ctx context.Context, fn func(bus.Message, bool) error) error {
			return kafkabus.FollowPartition(ctx, brokers, topic, 0, fn)
		}, ready, func(err error) { fmt.Fprintln(os.Stderr, "warning:", err) })
	}()
	select {
	case <-ready:
		return store, nil
	case err := <-errc:
		if err == nil { // the reading ended before the topic's end: never a store half read
			err = fmt.Errorf("read %s: stopped before its end", topic)
		}
		return nil, err
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("read %s: nothing within 30 s: is Kafka up and reachable at the brokers given?", topic)
	}
}
