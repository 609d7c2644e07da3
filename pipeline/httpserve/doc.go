// Package httpserve is how every engage service serves HTTP: it listens,
// serves plain HTTP or TLS (a certificate and key read from PEM files and
// read again when they change, optionally client certificates checked
// against a CA), and shuts down gracefully. It also gives each service the
// same /metrics, /healthz and /readyz (Mux, Ready).
package httpserve
