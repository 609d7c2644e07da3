package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"
)

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = runMain(context.Background(), args, &o, &e)
	return code, o.String(), e.String()
}

// engage, engage -h, --help and help print the list of commands on
// standard output; with no command at all the exit status says it was not
// a run.
func TestHelpOfEngage(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
	}{{nil, 2}, {[]string{"-h"}, 0}, {[]string{"-help"}, 0}, {[]string{"--help"}, 0}, {[]string{"help"}, 0}} {
		code, out, errOut := run(t, c.args...)
		if code != c.code || errOut != "" || !strings.HasPrefix(out, "engage runs OpenEngage") {
			t.Errorf("engage %q: exit %d (want %d), stderr %q, stdout:\n%s", c.args, code, c.code, errOut, out)
		}
		for _, cmd := range commands() {
			if !strings.Contains(out, "\n  "+cmd.name+" ") {
				t.Errorf("engage %q does not list %s", c.args, cmd.name)
			}
		}
	}
}

// Every verb and sub-verb has its help: on standard output, exit 0, first
// a line saying what it does, then its flags group by group (its own,
// then Kafka's, ClickHouse's, logging), and the same through engage help.
func TestHelpOfEveryVerb(t *testing.T) {
	var paths []string
	for _, c := range commands() {
		v, ok := findVerb(c.name)
		if !ok {
			t.Errorf("%s: no help", c.name)
			continue
		}
		paths = append(paths, c.name)
		for _, s := range v.sub {
			if _, ok := findVerb(c.name + " " + s); !ok {
				t.Errorf("%s %s: no help", c.name, s)
			}
			paths = append(paths, c.name+" "+s)
		}
	}
	if len(paths) != len(verbs) {
		t.Errorf("%d verbs and sub-verbs, %d helps", len(paths), len(verbs))
	}
	for _, path := range paths {
		v, _ := findVerb(path)
		for _, how := range [][]string{
			append(strings.Fields(path), "-h"),
			append(strings.Fields(path), "--help"),
			append([]string{"help"}, strings.Fields(path)...),
		} {
			code, out, errOut := run(t, how...)
			first, _, _ := strings.Cut(out, "\n")
			if code != 0 || errOut != "" || first != "engage "+path+": "+v.summary {
				t.Errorf("engage %s: exit %d, stderr %q, first line %q, want %q", strings.Join(how, " "), code, errOut, first, "engage "+path+": "+v.summary)
				continue
			}
			if !strings.Contains(out, "\nusage: engage "+path) {
				t.Errorf("engage %s: no usage line:\n%s", strings.Join(how, " "), out)
			}
			if len(v.sub) > 0 {
				for _, s := range v.sub {
					if !strings.Contains(out, "\n  "+s+" ") {
						t.Errorf("engage %s does not list %s:\n%s", strings.Join(how, " "), s, out)
					}
				}
				continue
			}
			// The flags in their groups, each group's flags in order.
			var names []string
			for _, l := range strings.Split(out, "\n") {
				if strings.HasPrefix(l, "  -") {
					names = append(names, strings.Fields(l)[0][1:])
				}
			}
			if !v.noFlags && len(names) == 0 {
				t.Errorf("engage %s: no flags listed:\n%s", strings.Join(how, " "), out)
			}
			if !slices.IsSortedFunc(names, func(a, b string) int {
				ra, _ := flagGroup(path, a)
				rb, _ := flagGroup(path, b)
				if ra != rb {
					return ra - rb
				}
				return strings.Compare(a, b)
			}) {
				t.Errorf("engage %s: flags out of order: %q", strings.Join(how, " "), names)
			}
		}
	}
	// The services list their own flags before the shared ones.
	_, out, _ := run(t, "sink", "-h")
	if i, j, k := strings.Index(out, "-sink.batch-rows"), strings.Index(out, "-kafka.brokers"), strings.Index(out, "-log.level"); i < 0 || j < i || k < j {
		t.Errorf("engage sink -h: its own flags, then Kafka's, then logging:\n%s", out)
	}
	if !strings.Contains(out, "(default 100000, $ENGAGE_SINK_BATCH_ROWS)") {
		t.Errorf("engage sink -h: no default nor environment variable:\n%s", out)
	}
}

// Mistakes on the command line: standard error, exit 2, and what was
// probably meant.
func TestCommandLineMistakes(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"colect"}, `engage: unknown command "colect" (did you mean "collect"?)`},
		{[]string{"segment", "list"}, `(did you mean "segments"?)`},
		{[]string{"nonsense"}, `engage: unknown command "nonsense"; run 'engage -h' for the list`},
		{[]string{"segments", "lst"}, `engage segments: unknown command "lst" (did you mean "list"?)`},
		{[]string{"campaigns", "dryrun"}, `(did you mean "dry-run"?)`},
		{[]string{"campaigns", "-app", "x"}, `engage campaigns: unknown command "-app"`},
		{[]string{"segments"}, "usage: engage segments <put|delete|list|check>"},
		{[]string{"collect", "-adr", ":1"}, "engage collect: flag provided but not defined: -adr (engage collect -h lists the flags)"},
		{[]string{"campaigns", "check", "-nope"}, "engage campaigns check: flag provided but not defined: -nope"},
	} {
		code, out, errOut := run(t, c.args...)
		if code != 2 || out != "" || !strings.Contains(errOut, c.want) {
			t.Errorf("engage %q: exit %d, stdout %q, stderr %q; want exit 2 and %q", c.args, code, out, errOut, c.want)
		}
	}
}

func TestHumanDuration(t *testing.T) {
	for d, want := range map[string]string{
		"0s": "0s", "1500ns": "1.5µs", "100ms": "100ms", "1.234567s": "1.23s", "3m7.4s": "3m7s",
		"3h12m0.4s": "3h12m", "5h0m0.2s": "5h", "-2.5s": "-2.5s", "49h30m5s": "49h30m5s",
	} {
		dd, err := time.ParseDuration(d)
		if err != nil {
			t.Fatal(err)
		}
		if got := humanDuration(dd); got != want {
			t.Errorf("humanDuration(%s) = %q, want %q", d, got, want)
		}
	}
}

// The services' logs: durations in human units, errors under "err" and
// only when there is one, keys without spaces, no sentinel offsets.
func TestReadableLogs(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{ReplaceAttr: readableAttr}))
	var noErr error
	log.Info("partition restored", "took", 1234567890*time.Nanosecond, "from offset", int64(-2), "waiting sends", 3,
		"error", errors.New("boom"), "offset", int64(17))
	log.Warn("x", "err", noErr, "in", 90*time.Minute+4*time.Second, "to_offset", int64(-1))
	log.Warn("kafka reader", "detail", "error reading partition 4 of engage.decisions at offset -2: i/o timeout")
	want := `{"level":"INFO","msg":"partition restored","took":"1.23s","from_offset":"first (none committed)","waiting_sends":3,"err":"boom","offset":17}
{"level":"WARN","msg":"x","in":"1h30m4s","to_offset":"last (none committed)"}
{"level":"WARN","msg":"kafka reader","detail":"error reading partition 4 of engage.decisions at the first offset (none committed): i/o timeout"}
`
	var got strings.Builder
	for _, l := range strings.SplitAfter(buf.String(), "\n") {
		if i := strings.Index(l, `"level"`); i >= 0 {
			got.WriteString("{" + l[i:])
		}
	}
	if got.String() != want {
		t.Errorf("got\n%s\nwant\n%s", got.String(), want)
	}
}
