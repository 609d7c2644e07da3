package main

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// A verb's help: what it does in one line, what follows its flags, and,
// for a verb made of sub-verbs (segments, campaigns, tagplan), those.
type verbHelp struct {
	path    string // "segments put"
	summary string // one line: what it does
	args    string // after [flags]: "FILE", "URL"
	noFlags bool   // it has no flag set: main prints its help
	sub     []string
	more    string // a few lines after the summary, when the flags do not say it all
}

// verbs describes every verb and sub-verb, in the order help lists them.
var verbs = []verbHelp{
	{path: "collect", summary: "serve the collector: apps send their tag data over HTTP, it goes into Kafka"},
	{path: "sink", summary: "write the tags, the scheduler's decisions and the delivery results from Kafka into ClickHouse"},
	{path: "process", summary: "keep every device's segment memberships current and serve the segments API"},
	{path: "segments", summary: "manage segment definitions", sub: []string{"put", "delete", "list", "check"}},
	{path: "segments put", summary: "check a segment against the app's tag plan and the stored segments, then store it"},
	{path: "segments delete", summary: "delete a stored segment (-app, -name)"},
	{path: "segments list", summary: "list the stored segments (every app's, or -app's)"},
	{path: "segments check", summary: "check a segment without storing it: its syntax and the app's tag plan, mistakes at line:column"},
	{path: "schedule", summary: "decide who gets which campaign when: segment changes and time into deliveries and decisions"},
	{path: "deliver", summary: "send the scheduler's deliveries to APNs and FCM, at most once each, and report what happened"},
	{path: "campaigns", summary: "manage campaigns and caps, replay them over past records, estimate their audience",
		sub: []string{"check", "put", "list", "delete", "caps", "dry-run", "estimate"}},
	{path: "campaigns check", summary: "check a campaign file (YAML or JSON) against the app's tag plan and, with -kafka.brokers, the stored segments", args: "FILE"},
	{path: "campaigns put", summary: "check a campaign file, then store it in the configuration topic", args: "FILE"},
	{path: "campaigns list", summary: "list the stored campaigns (every app's, or -app's)"},
	{path: "campaigns delete", summary: "delete a stored campaign (-app, -name)"},
	{path: "campaigns caps", summary: "set an app's caps on a channel: sends per device per day and per week, across its campaigns"},
	{path: "campaigns dry-run", summary: "replay past records through the segments and the scheduler in memory: what the campaigns would have decided", args: "[FILE...]"},
	{path: "campaigns estimate", summary: "count a campaign's audience now: its segments' members, less exclusions, control group and variants", args: "FILE"},
	{path: "api", summary: "serve the analytics API: JSON over HTTP, bearer tokens scoped to apps"},
	{path: "migrate", summary: "create or upgrade the ClickHouse schema"},
	{path: "demo", summary: "three simulated weeks of a news app through the platform, on a broker inside the process"},
	{path: "topics", summary: "create every Kafka topic the platform uses (idempotent) and report those that differ"},
	{path: "tagplan", summary: "check tag plan files", sub: []string{"check"}, noFlags: true},
	{path: "tagplan check", summary: "check tag plan files: every mistake at its line:column", args: "FILE...", noFlags: true},
	{path: "probe", summary: "check a health endpoint: exit 0 if it answers 2xx (the container's health check)", args: "URL", noFlags: true,
		more: "  engage probe http://localhost:8080/readyz"},
}

func findVerb(path string) (verbHelp, bool) {
	i := slices.IndexFunc(verbs, func(v verbHelp) bool { return v.path == path })
	if i < 0 {
		return verbHelp{}, false
	}
	return verbs[i], true
}

// usage is engage's own help.
func usage(w io.Writer) {
	fmt.Fprintln(w, "engage runs OpenEngage: one binary, one command per service and tool.")
	fmt.Fprintln(w, "\nusage: engage <command> [flags]\n\ncommands:")
	for _, v := range verbs {
		if !strings.Contains(v.path, " ") {
			fmt.Fprintf(w, "  %-10s %s\n", v.path, v.summary)
		}
	}
	fmt.Fprintln(w, "\nRun engage <command> -h for what a command does and its flags (engage help <command> says the same).")
	fmt.Fprintln(w, "Every flag can also be set as an ENGAGE_* environment variable: -kafka.brokers is ENGAGE_KAFKA_BROKERS.")
}

// printHelp prints a verb's help: its summary, its usage, then its
// sub-verbs or its flags (fs nil: none).
func printHelp(w io.Writer, v verbHelp, fs *flag.FlagSet) {
	fmt.Fprintf(w, "engage %s: %s\n\n", v.path, v.summary)
	switch {
	case len(v.sub) > 0:
		fmt.Fprintf(w, "usage: engage %s <%s> [flags]\n\n", v.path, strings.Join(v.sub, "|"))
		for _, s := range v.sub {
			sv, _ := findVerb(v.path + " " + s)
			fmt.Fprintf(w, "  %-9s %s\n", s, sv.summary)
		}
		fmt.Fprintf(w, "\nRun engage %s COMMAND -h for what it does and its flags (engage %s %s -h).\n", v.path, v.path, v.sub[0])
		return
	case fs == nil:
		fmt.Fprintln(w, strings.TrimSpace("usage: engage "+v.path+" "+v.args))
	default:
		fmt.Fprintln(w, strings.TrimSpace("usage: engage "+v.path+" [flags] "+v.args))
	}
	if v.more != "" {
		fmt.Fprintf(w, "\n%s\n", v.more)
	}
	if fs != nil {
		printFlags(w, fs, v.path)
	}
}

// flagGroup orders a command's flags: its own first (no prefix, then the
// command's prefix, then the other settings of its own), then what every
// service shares: metrics, Kafka, ClickHouse, logging.
func flagGroup(verb, name string) (rank int, title string) {
	prefix, _, dotted := strings.Cut(name, ".")
	own := strings.Fields(verb)[0]
	switch {
	case !dotted || prefix == own || prefix == own+"or":
		return 0, ""
	case prefix == "metrics":
		return 2, ""
	case prefix == "kafka":
		return 3, "Kafka"
	case prefix == "clickhouse":
		return 4, "ClickHouse"
	case prefix == "log":
		return 5, "logging"
	}
	return 1, ""
}

// printFlags lists the flags group by group (flagGroup), alphabetically
// within a group, each with its type, its default and its environment
// variable.
func printFlags(w io.Writer, fs *flag.FlagSet, verb string) {
	var all []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) { all = append(all, f) })
	if len(all) == 0 {
		return
	}
	slices.SortStableFunc(all, func(a, b *flag.Flag) int {
		ra, _ := flagGroup(verb, a.Name)
		rb, _ := flagGroup(verb, b.Name)
		if ra != rb {
			return ra - rb
		}
		return strings.Compare(a.Name, b.Name)
	})
	fmt.Fprintln(w, "\nflags:")
	last := -1
	for _, f := range all {
		rank, title := flagGroup(verb, f.Name)
		if rank != last && last >= 0 && title != "" {
			fmt.Fprintf(w, "\n%s:\n", title)
		}
		last = rank
		typ, text := flag.UnquoteUsage(f)
		line := "  -" + f.Name
		if typ != "" {
			line += " " + typ
		}
		text = strings.TrimSuffix(text, " [$"+envName(f.Name)+"]")
		var extra []string
		if !zeroDefault(f) {
			def := f.DefValue
			if d, err := time.ParseDuration(def); err == nil && typ == "duration" {
				def = humanDuration(d) // 1m, not 1m0s
			}
			if typ == "string" {
				def = fmt.Sprintf("%q", def)
			}
			extra = append(extra, "default "+def)
		}
		extra = append(extra, "$"+envName(f.Name))
		fmt.Fprintln(w, line)
		wrap(w, "      ", text+" ("+strings.Join(extra, ", ")+")", 100)
	}
}

// wrap writes text in lines of at most width columns, each after indent.
func wrap(w io.Writer, indent, text string, width int) {
	line := indent
	for _, word := range strings.Fields(text) {
		if len(line) > len(indent) && len(line)+1+len(word) > width {
			fmt.Fprintln(w, line)
			line = indent
		}
		if len(line) > len(indent) {
			line += " "
		}
		line += word
	}
	fmt.Fprintln(w, line)
}

func zeroDefault(f *flag.Flag) bool {
	switch f.DefValue {
	case "", "0", "false", "0s":
		return true
	}
	return false
}

// helpError is what parse returns for -h, -help or --help: main prints the
// verb's help on standard output and exits 0.
type helpError struct {
	verb string
	fs   *flag.FlagSet
}

func (e *helpError) Error() string        { return "help requested" }
func (e *helpError) Is(target error) bool { return target == flag.ErrHelp }

// usageError is a mistake on the command line: main prints it on standard
// error and exits 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// wantsHelp reports whether args ask for help before any "--".
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help", "help":
			return true
		}
	}
	return false
}

// suggest returns the candidate closest to s when it is close enough to be
// a typo (at most two edits), or the only one s begins, or "".
func suggest(s string, candidates []string) string {
	best, bestD := "", 3
	var prefixed []string
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestD && d < len(s) {
			best, bestD = c, d
		}
		if len(s) >= 3 && strings.HasPrefix(c, s) {
			prefixed = append(prefixed, c)
		}
	}
	if best == "" && len(prefixed) == 1 {
		best = prefixed[0]
	}
	return best
}

// editDistance is Levenshtein's distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// unknownVerb is the usage error for a verb (or sub-verb of parent) that
// does not exist, with a suggestion when one is close.
func unknownVerb(parent, verb string, known []string) error {
	where := "engage"
	if parent != "" {
		where = "engage " + parent
	}
	msg := fmt.Sprintf("%s: unknown command %q", where, verb)
	if s := suggest(verb, known); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	msg += fmt.Sprintf("; run '%s -h' for the list", where)
	return &usageError{msg}
}
