package httpserve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Server serves one handler until its context ends. Zero timeouts take
// the defaults below.
type Server struct {
	Handler http.Handler
	// TLS, when not nil, makes the server answer HTTPS only (see
	// LoadTLS); nil: plain HTTP.
	TLS               *tls.Config
	ReadHeaderTimeout time.Duration // default 10 s
	ReadTimeout       time.Duration // default: none (the handler sets its own deadlines)
	WriteTimeout      time.Duration // default: none
	IdleTimeout       time.Duration // default 2 min
	// ShutdownTimeout is how long requests in flight may take to finish
	// once the context has ended (default 10 s).
	ShutdownTimeout time.Duration
	Log             *slog.Logger
	Name            string // the service, in the log
}

// Listen listens on the TCP address addr; the error names the address.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}

// Scheme is "https" when the server serves TLS, else "http".
func (s *Server) Scheme() string {
	if s.TLS != nil {
		return "https"
	}
	return "http"
}

// Serve serves on ln until ctx ends, then shuts down gracefully: the
// listener closes at once, requests in flight get ShutdownTimeout to
// finish. It returns nil after a clean shutdown, else the error. ln is
// closed when Serve returns.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.Handler == nil {
		return errors.New("httpserve: no handler")
	}
	log := s.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv := &http.Server{
		Handler:           s.Handler,
		TLSConfig:         s.TLS,
		ReadHeaderTimeout: orDefault(s.ReadHeaderTimeout, 10*time.Second),
		ReadTimeout:       s.ReadTimeout,
		WriteTimeout:      s.WriteTimeout,
		IdleTimeout:       orDefault(s.IdleTimeout, 2*time.Minute),
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() {
		if s.TLS != nil {
			// The certificate comes from TLSConfig.GetCertificate.
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("%s: serve on %s: %w", s.name(), ln.Addr(), err)
	case <-ctx.Done():
	}
	wait := orDefault(s.ShutdownTimeout, 10*time.Second)
	sctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
		return fmt.Errorf("%s: shutdown: requests still in flight after %s: %w", s.name(), wait, err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("%s: serve on %s: %w", s.name(), ln.Addr(), err)
	}
	return nil
}

func (s *Server) name() string {
	if s.Name == "" {
		return "http server"
	}
	return s.Name
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
