package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// newFlagSet returns a flag set whose flags, after parse, take their value
// from ENGAGE_* environment variables when not given on the command line.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("engage "+name, flag.ContinueOnError)
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
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			return err
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
