package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/openengage/engage/pipeline/apiauth"
	"github.com/openengage/engage/pipeline/collector"
	"github.com/openengage/engage/sinks/analytics"
	"github.com/openengage/engage/sinks/clickhouse"
)

// planSource gives the analytics API the apps' tag plans from the apps file.
func planSource(apps *collector.Apps) analytics.PlanSource {
	plans := map[string]analytics.PlannedTags{}
	for _, app := range apps.List() {
		if app.Plan == nil {
			continue
		}
		tags, anyCrash := app.Plan.Tags()
		pt := analytics.PlannedTags{AnyCrash: anyCrash}
		for _, t := range tags {
			pt.Tags = append(pt.Tags, analytics.PlannedTag{Kind: t.Section, Name: t.Name})
		}
		plans[app.ID] = pt
	}
	return analytics.PlanSourceFunc(func(app string) (analytics.PlannedTags, bool) {
		p, ok := plans[app]
		return p, ok
	})
}

func runAPI(ctx context.Context, args []string, _ io.Writer) error {
	fs := newFlagSet("api")
	var cf clickhouseFlags
	cf.register(fs)
	addr := fs.String("addr", "127.0.0.1:8081", "listen address")
	tokens := fs.String("api.tokens", "", "bearer tokens and the apps each may read: \"TOKEN:app1,app2 TOKEN2:*\" (set it in the environment, not on the command line)")
	appsFile := fs.String("apps", "", "apps file, for the tag plans of the coverage report; empty: the embedded demo app")
	logLevel := fs.String("log.level", "info", "log level")
	if err := parse(fs, args); err != nil {
		return err
	}
	log, err := newLogger(*logLevel)
	if err != nil {
		return err
	}
	cfg := analytics.DefaultConfig()
	if cfg.Tokens, err = apiauth.ParseTokens("-api.tokens", *tokens); err != nil {
		return err
	}
	apps, err := loadApps(*appsFile)
	if err != nil {
		return err
	}
	ccfg := cf.config()
	conn, f, err := clickhouse.Open(ctx, ccfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	api, err := analytics.New(conn, ccfg.Database, cfg, log, planSource(apps))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *addr, err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := metricsMux(reg) // /metrics, /healthz
	var requests atomic.Int64
	handler := api.Handler()
	mux.Handle("/v1/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		handler.ServeHTTP(w, r)
	}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Info("analytics API listening", "addr", ln.Addr().String(), "clickhouse", f.String(), "database", ccfg.Database)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err = <-errc:
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err = srv.Shutdown(shutdown)
	}
	logStopped(log, "api", err, "requests", requests.Load())
	return err
}
