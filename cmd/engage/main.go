// Command engage runs OpenEngage: one binary, one subcommand per service
// (collect; later sink, process, schedule, deliver, api) and the tools
// (demo, topics, tagplan). Configuration comes from flags and ENGAGE_*
// environment variables (a flag -kafka.brokers is ENGAGE_KAFKA_BROKERS).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	_ "time/tzdata" // device time zones are checked against the embedded IANA database
)

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout io.Writer) error
}

func commands() []command {
	return []command{
		{"collect", "serve the collector: tag data over HTTP into Kafka", runCollect},
		{"sink", "write the tags and the scheduler's decisions into ClickHouse, exactly once in every query", runSink},
		{"process", "keep every device's segment memberships current (stateful, Kafka changelog)", runProcess},
		{"segments", "manage segment definitions: engage segments put|delete|list|check", runSegments},
		{"schedule", "decide who gets which campaign when: segment changes and time into deliveries and decisions (stateful, Kafka changelog)", runSchedule},
		{"deliver", "send the scheduler's deliveries to APNs and FCM, at most once each, and report what happened", runDeliver},
		{"campaigns", "manage campaigns: engage campaigns check|put|list|delete|caps|dry-run|estimate", runCampaigns},
		{"api", "serve the analytics API (JSON over HTTP, bearer tokens scoped to apps)", runAPI},
		{"migrate", "create or upgrade the ClickHouse schema", runMigrate},
		{"demo", "run the collector on an in-process broker, send a demo stream, show what arrived", runDemo},
		{"topics", "create every Kafka topic the platform uses (idempotent)", runTopics},
		{"tagplan", "check a tag plan file: engage tagplan check FILE...", runTagplan},
		{"probe", "check a health endpoint (the container's health check): engage probe URL", runProbe},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: engage <command> [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nEvery flag can also be set as an ENGAGE_* environment variable: -kafka.brokers is ENGAGE_KAFKA_BROKERS.\nRun engage <command> -h for its flags.")
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage(os.Stderr)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for _, c := range commands() {
		if c.name == os.Args[1] {
			err := c.run(ctx, os.Args[2:], os.Stdout)
			if errors.Is(err, flag.ErrHelp) {
				os.Exit(2)
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "engage %s: %v\n", c.name, err)
				os.Exit(1)
			}
			return
		}
	}
	fmt.Fprintf(os.Stderr, "engage: unknown command %q\n\n", os.Args[1])
	usage(os.Stderr)
	os.Exit(2)
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: use debug, info, warn or error", level)
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}
