// Command engage runs OpenEngage: one binary, one subcommand per service
// (collect, sink, process, schedule, deliver, api) and the tools (segments,
// campaigns, migrate, demo, topics, tagplan, probe). Configuration comes
// from flags and ENGAGE_* environment variables (a flag -kafka.brokers is
// ENGAGE_KAFKA_BROKERS). engage -h lists the commands, engage CMD -h says
// what one does and lists its flags (help.go).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"syscall"
	_ "time/tzdata" // device time zones are checked against the embedded IANA database
)

type command struct {
	name string
	run  func(ctx context.Context, args []string, stdout io.Writer) error
}

// commands are the verbs; what each does is in verbs (help.go).
func commands() []command {
	return []command{
		{"collect", runCollect},
		{"sink", runSink},
		{"process", runProcess},
		{"segments", runSegments},
		{"schedule", runSchedule},
		{"deliver", runDeliver},
		{"campaigns", runCampaigns},
		{"api", runAPI},
		{"migrate", runMigrate},
		{"demo", runDemo},
		{"topics", runTopics},
		{"tagplan", runTagplan},
		{"probe", runProbe},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// runMain runs the command line args and returns the exit status: 0 when
// it did what was asked (help included, on stdout), 2 for a mistake on the
// command line (on stderr, with what to run for help), 1 when the command
// failed.
func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stdout)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help":
		usage(stdout)
		return 0
	case "help":
		if len(args) == 1 {
			usage(stdout)
			return 0
		}
		args = append(slices.Clone(args[1:]), "-h")
	}
	var names []string
	i := slices.IndexFunc(commands(), func(c command) bool { names = append(names, c.name); return c.name == args[0] })
	if i < 0 {
		fmt.Fprintln(stderr, unknownVerb("", args[0], names))
		return 2
	}
	cmd := commands()[i]
	v, _ := findVerb(cmd.name)
	rest := args[1:]
	if len(v.sub) > 0 {
		switch {
		case len(rest) == 0:
			printHelp(stderr, v, nil)
			return 2
		case wantsHelp(rest[:1]):
			printHelp(stdout, v, nil)
			return 0
		case !slices.Contains(v.sub, rest[0]):
			fmt.Fprintln(stderr, unknownVerb(v.path, rest[0], v.sub))
			return 2
		}
		v, _ = findVerb(v.path + " " + rest[0])
		rest = rest[1:]
	}
	if v.noFlags && wantsHelp(rest) {
		printHelp(stdout, v, nil)
		return 0
	}
	err := cmd.run(ctx, args[1:], stdout)
	var help *helpError
	var bad *usageError
	switch {
	case errors.As(err, &help):
		hv, ok := findVerb(help.verb)
		if !ok {
			hv = verbHelp{path: help.verb, summary: v.summary}
		}
		printHelp(stdout, hv, help.fs)
		return 0
	case errors.As(err, &bad):
		fmt.Fprintf(stderr, "engage %s: %v\n", v.path, err)
		return 2
	case err != nil:
		fmt.Fprintf(stderr, "engage %s: %v\n", cmd.name, err)
		return 1
	}
	return 0
}

// logOutput is where the services log (tests read it).
var logOutput io.Writer = os.Stderr

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: use debug, info, warn or error", level)
	}
	return slog.New(slog.NewJSONHandler(logOutput, &slog.HandlerOptions{Level: l, ReplaceAttr: readableAttr})), nil
}
