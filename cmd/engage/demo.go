package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openengage/engage/delivery"
	"github.com/openengage/engage/delivery/mock"
	"github.com/openengage/engage/pipeline/collector"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/triggers"
)

// runDemo is `engage demo` (`make demo`): three weeks of a small news
// app's life, simulated and sent through the platform's real parts, told
// as a timeline (who got what, when and why; who was held back and why),
// then the analytics that matter.
func runDemo(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("demo")
	var kf kafkaFlags
	kf.register(fs)
	crowd := fs.Int("readers", 112, "how many readers besides the eight the story follows")
	seed := fs.Uint64("seed", 7, "the seed of the simulated readers' behaviour (the same seed tells the same story)")
	if err := parse(fs, args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if kf.brokers == "" && !set["kafka.compression"] {
		kf.compression = "none" // the broker is in this process: compressing buys nothing
	}
	began := time.Now()
	say := func(format string, a ...any) { fmt.Fprintf(stdout, format+"\n", a...) }
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	pop := &demoPop{seed: *seed, byID: map[string]*demoDevice{}}
	demoPersonas(pop)
	demoCrowd(pop, max(*crowd, 0))
	for _, d := range pop.devices {
		pop.byID[d.id] = d
	}
	end := demoStart.AddDate(0, 0, demoDays-1)
	say("OpenEngage demo: three simulated weeks of a news app (%s–%s), %d devices, through the platform's real parts.",
		demoStart.Format("Jan 2"), end.Format("2, 2006"), len(pop.devices))

	if kf.brokers == "" {
		say("  starting a message broker inside this process (nothing is kept; -kafka.brokers HOST:PORT uses your Kafka)")
	} else {
		say("  connecting to Kafka at %s", kf.brokers)
	}
	brokers, stopKafka, err := kf.connect(ctx, log)
	if err != nil {
		return err
	}
	defer stopKafka()

	cfg, err := loadDemoConfig(demoStart)
	if err != nil {
		return err
	}
	say("  checking %d segments and %d campaigns against the app's tag plan, as engage campaigns put does",
		len(cfg.segs), len(cfg.campaigns))

	pcfg := kafkabus.DefaultProducerConfig(brokers, kafkabus.TopicTags)
	pcfg.BatchTimeout, pcfg.Compression = kf.batchTimeout, kf.compression
	prod, err := kafkabus.NewProducer(pcfg, log)
	if err != nil {
		return err
	}
	defer prod.Close()
	srv, err := collector.New(collector.DefaultConfig(), cfg.apps, prod, prometheus.NewRegistry(), log)
	if err != nil {
		return err
	}
	box := newDemoInbox()
	srv.SetInbox(box)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srvCtx, stopSrv := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(srvCtx, ln) }()
	defer func() { stopSrv(); <-done }()
	say("  starting the collector on %s (the HTTP API the apps call: POST /v1/tags, GET /v1/inapp)", ln.Addr())

	apnsMock, apns, fcmMock, fcm, err := startDemoProviders(ctx)
	if err != nil {
		return err
	}
	defer apnsMock.Close()
	defer fcmMock.Close()
	defer apns.Close()
	say("  starting stand-ins for Apple's and Google's push services (APNs on %s, FCM on %s)",
		strings.TrimPrefix(apnsMock.URL(), "https://"), strings.TrimPrefix(strings.TrimPrefix(fcmMock.URL(), "http://"), "https://"))
	if eli := pop.byID["eli-pixel"]; eli != nil {
		fcmMock.AddRule(mock.FCMRule{Token: eli.token, Answer: mock.FCMReject("UNREGISTERED")}) // the app was uninstalled
	}

	follow, err := followTags(ctx, brokers, func(r *tag.Record) bool { _, ok := pop.byID[r.DeviceID]; return r.AppID == demoApp && ok })
	if err != nil {
		return err
	}
	defer follow.close()

	sim := newDemoSim(cfg, pop)
	sim.base, sim.prod, sim.follow, sim.box, sim.apns, sim.fcm = "http://"+ln.Addr().String(), prod, follow, box, apns, fcm
	say("  sending %d days of activity from %d devices to the collector, hour by hour; the segment engine and the campaign", demoDays, len(pop.devices))
	say("  scheduler decide as it arrives (in this process, as engage process and engage schedule do through Kafka)…")
	if err := sim.run(ctx, func(day int) {
		if day%7 == 0 && day < demoDays {
			say("    … %d of %d days, %d records so far", day, demoDays, sim.posted)
		}
	}); err != nil {
		return err
	}
	var pushes, inApp, failed int
	for _, d := range sim.deliveries {
		switch r := sim.results[d.ID]; {
		case r.outcome != "accepted":
			failed++
		case d.Channel == triggers.ChannelInApp:
			inApp++
		default:
			pushes++
		}
	}
	say("  done in %.0f s: %d records through the collector; %d pushes accepted by APNs and FCM, %d in-app, %d not delivered.",
		time.Since(began).Seconds(), sim.posted, pushes, inApp, failed)

	say("")
	say("The campaigns (caps for the app: %d push a day, %d a week per device; a higher priority wins a contested slot):",
		demoCaps["push"].PerDay, demoCaps["push"].PerWeek)
	for _, f := range demoCampaignFiles {
		say("  %-15s %s", f.name, f.about)
	}
	var names []string
	for _, d := range pop.devices {
		if d.name != "" {
			names = append(names, d.name)
		}
	}
	say("The story follows %d readers (%s); the %d others come from seed %d.", len(names), strings.Join(names, ", "), len(pop.devices)-len(names), *seed)
	rep := newDemoReport(sim)
	rep.timeline(stdout)
	rep.analytics(stdout)
	demoNext(stdout, kf.brokers != "")
	return nil
}

// startDemoProviders starts the APNs and FCM mocks and the senders that
// `engage deliver` uses, pointed at them.
func startDemoProviders(ctx context.Context) (*mock.APNs, *delivery.APNs, *mock.FCM, *delivery.FCM, error) {
	am, err := mock.StartAPNs(mock.APNsConfig{KeepRecords: -1})
	if err != nil {
		return nil, nil, nil, nil, err
	}
	const topic = "com.example.news"
	p8, err := am.NewKey("NEWSTEAM01", "NEWSKEY001", topic)
	if err != nil {
		am.Close()
		return nil, nil, nil, nil, err
	}
	as, err := delivery.NewAPNs(delivery.APNsConfig{TeamID: "NEWSTEAM01", KeyID: "NEWSKEY001", Key: p8, Topic: topic, Host: am.URL(), RootCAs: am.CertPool()})
	if err != nil {
		am.Close()
		return nil, nil, nil, nil, err
	}
	fm, err := mock.StartFCM(mock.FCMConfig{KeepRecords: -1})
	if err != nil {
		am.Close()
		return nil, nil, nil, nil, err
	}
	sa, err := fm.NewServiceAccount("news-demo")
	if err == nil {
		var fs *delivery.FCM
		if fs, err = delivery.NewFCM(ctx, delivery.FCMConfig{ServiceAccount: sa, ProjectID: "news-demo", Endpoint: fm.Endpoint()}); err == nil {
			return am, as, fm, fs, nil
		}
	}
	am.Close()
	fm.Close()
	return nil, nil, nil, nil, err
}

// demoNext is the closing: what to try next.
func demoNext(w io.Writer, realKafka bool) {
	fmt.Fprintln(w)
	fmt.Fprintln(w, "That was OpenEngage end to end: collector, segments, campaign scheduler, push delivery, analytics.")
	fmt.Fprintln(w, "What to try next:")
	fmt.Fprintln(w, "  make test                          the whole test suite, against a real Kafka and ClickHouse it starts")
	fmt.Fprintln(w, "  make services && eval \"$(deploy/services/services.sh env)\"")
	fmt.Fprintln(w, "                                     real Kafka and ClickHouse on this machine; then run each service")
	fmt.Fprintln(w, "                                     (bin/engage collect, process, schedule, deliver, sink, api: README, \"Running it\")")
	fmt.Fprintln(w, "  bin/engage campaigns dry-run FILE  what a campaign would have done over the records Kafka holds")
	fmt.Fprintln(w, "  examples/README.md                 apps, tag plans and campaigns to start from")
	fmt.Fprintln(w, "  bin/engage demo -seed 8            another population, another story")
}
