package main

import (
	"context"
	"crypto/tls"
	"flag"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/openengage/engage/pipeline/httpserve"
	"github.com/openengage/engage/pipeline/kafkabus"
)

// httpFlags are the HTTP server settings every service shares: TLS from
// PEM files, read again when they change.
type httpFlags struct {
	files httpserve.TLSFiles
}

func (h *httpFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&h.files.Cert, "tls.cert", "", "PEM certificate (chain) of the HTTP server; with -tls.key the server answers HTTPS only (TLS 1.2 or later) and reads both files again when they change; empty: plain HTTP")
	fs.StringVar(&h.files.Key, "tls.key", "", "PEM private key of -tls.cert")
	fs.StringVar(&h.files.ClientCA, "tls.client-ca", "", "PEM CAs whose client certificates the HTTP server accepts; every client must then present one (mutual TLS); empty: no client certificates")
	fs.DurationVar(&h.files.CheckEvery, "tls.check-every", httpserve.DefaultCheckEvery, "how often, at most, the certificate and key files are read again to see whether they changed")
}

// tlsConfig returns the server's TLS configuration, nil for plain HTTP.
func (h *httpFlags) tlsConfig(log *slog.Logger) (*tls.Config, error) {
	return h.files.Config(log)
}

// serviceMux serves /metrics from reg, /healthz and /readyz from ready; the
// service adds its own routes.
func serviceMux(reg *prometheus.Registry, ready *httpserve.Ready) *http.ServeMux {
	return httpserve.Mux(reg, ready)
}

// kafkaReady is a readiness check: the brokers answer a metadata request
// and each of topics has a leader for every partition.
func kafkaReady(brokers []string, topics ...string) func(context.Context) error {
	return func(ctx context.Context) error { return kafkabus.Ping(ctx, brokers, topics...) }
}

// serveHTTP listens on addr and serves h in g (HTTPS when tc is not nil)
// until gctx ends, then shuts the server down (requests in flight get 10 s).
func serveHTTP(g *errgroup.Group, gctx context.Context, addr string, h http.Handler, tc *tls.Config, log *slog.Logger, name string) error {
	ln, err := httpserve.Listen(addr)
	if err != nil {
		return err
	}
	srv := &httpserve.Server{Handler: h, TLS: tc, Log: log, Name: name}
	log.Info(name+": HTTP listening", "addr", ln.Addr().String(), "scheme", srv.Scheme())
	g.Go(func() error { return srv.Serve(gctx, ln) })
	return nil
}
