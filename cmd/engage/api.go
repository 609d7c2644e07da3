package main

import (
	"context"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/openengage/engage/pipeline/apiauth"
	"github.com/openengage/engage/pipeline/collector"
	"github.com/openengage/engage/pipeline/httpserve"
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
	addr := fs.String("addr", "127.0.0.1:8081", "listen address of the analytics API, /metrics, /healthz and /readyz")
	var hf httpFlags
	hf.register(fs)
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
	tc, err := hf.tlsConfig(log)
	if err != nil {
		return err
	}
	cfg := analytics.DefaultConfig()
	cfg.QueryTimeout = cf.queryTimeout // a request's queries, and the server's max_execution_time
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
	ln, err := httpserve.Listen(*addr)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Ready: ClickHouse answers SELECT 1 (the answer kept 2 s, so that
	// probes cost little).
	ready := &httpserve.Ready{TTL: 2 * time.Second}
	ready.Add("clickhouse", func(ctx context.Context) error {
		var one uint8
		return conn.QueryRow(ctx, "SELECT 1").Scan(&one)
	})
	mux := serviceMux(reg, ready)
	var requests atomic.Int64
	// engage_api_requests_total{code}, engage_api_request_seconds.
	handler := httpserve.Instrument(reg, "engage_api", api.Handler())
	mux.Handle("/v1/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		handler.ServeHTTP(w, r)
	}))
	srv := &httpserve.Server{Handler: mux, TLS: tc, Log: log, Name: "api", ShutdownTimeout: 30 * time.Second}
	log.Info("analytics API listening", "addr", ln.Addr().String(), "scheme", srv.Scheme(), "clickhouse", f.String(), "database", ccfg.Database)
	err = srv.Serve(ctx, ln)
	logStopped(log, "api", err, "requests", requests.Load())
	return err
}
