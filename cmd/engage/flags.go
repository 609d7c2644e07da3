package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// newFlagSet returns a flag set whose flags, after parse, take their value
// from ENGAGE_* environment variables when not given on the command line.
// It prints nothing: parse returns a helpError for -h (main prints the
// help on standard output) and a usageError for a mistake.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("engage "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// envName is the environment variable of a flag: -kafka.brokers →
// ENGAGE_KAFKA_BROKERS.
func envName(flagName string) string {
	r := strings.NewReplacer(".", "_", "-", "_")
	return "ENGAGE_" + strings.ToUpper(r.Replace(flagName))
}

// parse parses args, then applies environment variables to the flags that
// the command line did not set. Flags win over the environment.
func parse(fs *flag.FlagSet, args []string) error {
	fs.VisitAll(func(f *flag.Flag) {
		f.Usage += " [$" + envName(f.Name) + "]"
	})
	// Flags may follow the arguments (engage campaigns dry-run FILE -from
	// …): parse up to each argument, keep it, and go on; "--" ends the
	// flags.
	var pos []string
	verb := strings.TrimPrefix(fs.Name(), "engage ")
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return &helpError{verb: verb, fs: fs}
			}
			return &usageError{fmt.Sprintf("%v (engage %s -h lists the flags)", err, verb)}
		}
		rest = fs.Args()
		if len(rest) == 0 {
			break
		}
		if rest[0] == "--" {
			pos = append(pos, rest[1:]...)
			break
		}
		pos, rest = append(pos, rest[0]), rest[1:]
	}
	if err := fs.Parse(append([]string{"--"}, pos...)); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %w", envName(f.Name), v, e)
			}
		}
	})
	return err
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
