// Package bench holds the end-to-end benchmarks of the platform's stages
// against the real services that `make bench` starts. Each reports its
// figure with b.ReportMetric; see the README for the commands and the
// figures measured on the reference machine (2 cores, 24 GiB).
package bench
