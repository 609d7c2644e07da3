package httpserve

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Instrument counts the requests h answers, by status code, as
// PREFIX_requests_total, and observes their latency as
// PREFIX_request_seconds, both registered with reg.
func Instrument(reg prometheus.Registerer, prefix string, h http.Handler) http.Handler {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: prefix + "_requests_total", Help: "HTTP requests answered, by status code."}, []string{"code"})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: prefix + "_request_seconds", Help: "Time to answer an HTTP request.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}, []string{})
	reg.MustRegister(requests, latency)
	return promhttp.InstrumentHandlerCounter(requests, promhttp.InstrumentHandlerDuration(latency, h))
}
