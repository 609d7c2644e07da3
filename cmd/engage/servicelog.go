package main

import (
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// readableAttr makes the services' JSON logs read as an operator expects,
// whichever package logs: durations in human units ("1.5s", "3h12m",
// never nanoseconds); an error always under "err" (never "error", and no
// "err": null when there was none); keys in snake_case ("from offset" is
// "from_offset"); Kafka's sentinel offsets in words (-2: the first, as no
// offset was committed).
func readableAttr(_ []string, a slog.Attr) slog.Attr {
	if a.Key == "error" {
		a.Key = "err"
	}
	if strings.Contains(a.Key, " ") {
		a.Key = strings.ReplaceAll(a.Key, " ", "_")
	}
	v := a.Value
	switch {
	case v.Kind() == slog.KindDuration:
		return slog.String(a.Key, humanDuration(v.Duration()))
	case a.Key == "err" && v.Kind() == slog.KindAny && v.Any() == nil:
		return slog.Attr{}
	case v.Kind() == slog.KindString && strings.Contains(v.String(), "offset -"):
		// The Kafka client's own messages ("… at offset -2: …").
		return slog.String(a.Key, sentinelOffsets.Replace(v.String()))
	case strings.HasSuffix(a.Key, "offset") && v.Kind() == slog.KindInt64:
		switch v.Int64() {
		case -2: // kafka.FirstOffset
			return slog.String(a.Key, "first (none committed)")
		case -1: // kafka.LastOffset
			return slog.String(a.Key, "last (none committed)")
		}
	}
	return a
}

var sentinelOffsets = strings.NewReplacer("offset -2", "the first offset (none committed)", "offset -1", "the last offset (none committed)")

// humanDuration rounds d to what a person reads: 850ms, 1.25s, 3m7s, 3h12m.
func humanDuration(d time.Duration) string {
	abs := d.Abs()
	switch {
	case abs < time.Millisecond:
		return d.String()
	case abs < time.Second:
		return d.Round(time.Millisecond).String()
	case abs < time.Minute:
		return d.Round(10 * time.Millisecond).String()
	}
	s := d.Round(time.Second).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// counterTotal sums the counter called name in g over the series whose
// labels include match (nil: all); 0 when there is none.
func counterTotal(g prometheus.Gatherer, name string, match map[string]string) float64 {
	families, _ := g.Gather()
	total := 0.0
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for k, want := range match {
				found := false
				for _, l := range m.GetLabel() {
					if l.GetName() == k {
						found = l.GetValue() == want
					}
				}
				if !found {
					continue series
				}
			}
			if c := m.GetCounter(); c != nil {
				total += c.GetValue()
			}
		}
	}
	return total
}

// processStart is when this process started.
var processStart = time.Now()

// logStopped says that service stopped, how long it ran and what it did
// (key/value pairs), and why when err is not nil.
func logStopped(log *slog.Logger, service string, err error, did ...any) {
	ran := time.Since(processStart)
	args := append([]any{"ran", ran}, did...)
	if err != nil {
		log.Error(service+": stopped on an error after "+humanDuration(ran), append(args, "err", err)...)
		return
	}
	log.Info(service+": stopped after "+humanDuration(ran), args...)
}

// counterInt is counterTotal as a whole number, for the logs.
func counterInt(g prometheus.Gatherer, name string, match map[string]string) int64 {
	return int64(counterTotal(g, name, match))
}
