package engine

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/segments"
)

var update = flag.Bool("update", false, "rewrite the expected output of the script tests in testdata/")

// The script tests read testdata/*.txt: blocks of a command line, input
// lines, "----" and the expected output, separated by blank lines. Lines
// starting with # outside blocks are comments. Commands:
//
//	segments [app=<app>]      input: "<name>[@<version>]: <expression>" lines, the
//	                          complete set of that app; output: changes, then the
//	                          status of segments that are invalid or incomplete
//	records [now=<time>]      input: records, one a line (see parseRecord); the
//	                          clock is the simulated one (newest event time seen)
//	                          unless now is given; output: changes
//	advance <time>            fire due timers; output: changes
//	members                   every segment's size and members
//	explain <device> <segment> [app=<app>]
//	restore                   rebuild the engine from its changelog (what Dirty
//	                          gave so far), with the same segments
//	state <device> [app=<app>]  the state's size in bytes
//	status                    every segment's status
//
// Run with -update to rewrite the expected output.
func TestScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no script tests in testdata: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) { runScript(t, f) })
	}
}

type block struct {
	line    int
	cmd     string
	input   []string
	want    string
	comment []string // lines before the block
}

func parseScript(t *testing.T, path string) ([]*block, []string) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	var blocks []*block
	var pending []string
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if strings.TrimSpace(l) == "" || strings.HasPrefix(l, "#") {
			pending = append(pending, l)
			continue
		}
		for len(pending) > 0 && pending[0] == "" && len(blocks) > 0 {
			pending = pending[1:] // the blank line that ends a block is written with it
		}
		b := &block{line: i + 1, cmd: l, comment: pending}
		pending = nil
		for i++; i < len(lines) && lines[i] != "----"; i++ {
			if strings.TrimSpace(lines[i]) == "" {
				t.Fatalf("%s:%d: block without ----", path, b.line)
			}
			b.input = append(b.input, lines[i])
		}
		var want []string
		for i++; i < len(lines) && lines[i] != ""; i++ {
			want = append(want, lines[i])
		}
		b.want = strings.Join(want, "\n")
		blocks = append(blocks, b)
	}
	return blocks, pending
}

func runScript(t *testing.T, path string) {
	blocks, tail := parseScript(t, path)
	s := newScript(t)
	var out strings.Builder
	changed := false
	for _, b := range blocks {
		got := strings.TrimRight(s.run(b), "\n")
		if got != b.want {
			if !*update {
				t.Errorf("%s:%d: %s\n--- got:\n%s\n--- want:\n%s", path, b.line, b.cmd, got, b.want)
			}
			changed = true
		}
		for _, c := range b.comment {
			out.WriteString(c + "\n")
		}
		out.WriteString(b.cmd + "\n")
		for _, l := range b.input {
			out.WriteString(l + "\n")
		}
		out.WriteString("----\n")
		if got != "" {
			out.WriteString(got + "\n")
		}
		out.WriteString("\n")
	}
	for i, c := range tail {
		if i == len(tail)-1 && c == "" {
			break
		}
		out.WriteString(c + "\n")
	}
	if *update && changed {
		if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

type script struct {
	t         *testing.T
	e         *Engine
	segs      map[string][]*segments.Segment // by app
	changelog map[string][]byte
	offset    int64
	now       time.Time
	clock     time.Time // the simulated clock
	version   int64
}

func newScript(t *testing.T) *script {
	return &script{t: t, e: New(Options{}), segs: map[string][]*segments.Segment{}, changelog: map[string][]byte{}}
}

func (s *script) fatalf(b *block, format string, args ...any) {
	s.t.Fatalf("line %d: %s: %s", b.line, b.cmd, fmt.Sprintf(format, args...))
}

func (s *script) run(b *block) string {
	fields := strings.Fields(b.cmd)
	args := map[string]string{}
	var pos []string
	for _, f := range fields[1:] {
		if k, v, ok := strings.Cut(f, "="); ok {
			args[k] = v
		} else {
			pos = append(pos, f)
		}
	}
	app := args["app"]
	if app == "" {
		app = "app"
	}
	var out []Change
	var text strings.Builder
	switch fields[0] {
	case "segments":
		var segs []*segments.Segment
		for _, l := range b.input {
			name, expr, ok := strings.Cut(l, ":")
			if !ok {
				s.fatalf(b, "segment line %q: want name: expression", l)
			}
			// A segment keeps its version while its text does not change.
			name = strings.TrimSpace(name)
			var version int64
			for _, old := range s.segs[app] {
				if old.Name == name && old.Text == strings.TrimSpace(expr) {
					version = old.Version
				}
			}
			if version == 0 {
				s.version++
				version = s.version
			}
			node, err := segments.Parse(strings.TrimSpace(expr))
			if err != nil {
				s.fatalf(b, "parse %q: %v", expr, err)
			}
			segs = append(segs, &segments.Segment{App: app, Name: name, Text: strings.TrimSpace(expr), Expr: node, Version: version})
		}
		s.segs[app] = segs
		var sts []Status
		var err error
		out, sts, err = s.e.SetSegments(s.allSegments(), s.clock)
		if err != nil {
			return "error: " + err.Error()
		}
		writeChanges(&text, out)
		for _, st := range sts {
			if st.Err != nil || !st.Complete {
				writeStatus(&text, st)
			}
		}
	case "records":
		for _, l := range b.input {
			r, offset, now := s.parseRecord(b, app, l, args["now"])
			out = s.e.Apply(r, offset, now, out)
		}
		writeChanges(&text, out)
	case "advance":
		at := s.parseTime(b, pos[0])
		if at.After(s.clock) {
			s.clock = at
		}
		writeChanges(&text, s.e.Advance(at, nil))
	case "members":
		s.members(&text)
	case "explain":
		at := s.clock
		if v, ok := args["at"]; ok {
			at = s.parseTime(b, v)
		}
		x, err := s.e.Explain(app, pos[1], pos[0], at)
		if err != nil {
			return "error: " + err.Error()
		}
		text.WriteString(x.String())
	case "restore":
		s.flush()
		s.e = New(Options{})
		if _, _, err := s.e.SetSegments(s.allSegments(), s.clock); err != nil {
			s.fatalf(b, "%v", err)
		}
		keys := make([]string, 0, len(s.changelog))
		for k := range s.changelog {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if err := s.e.Restore([]byte(k), s.changelog[k]); err != nil {
				s.fatalf(b, "%v", err)
			}
		}
		fmt.Fprintf(&text, "restored %d states", len(keys))
	case "state":
		s.flush()
		st, ok := s.changelog[app+"/"+pos[0]]
		if !ok {
			return "no state"
		}
		fmt.Fprintf(&text, "%d bytes", len(st))
	case "status":
		for _, st := range s.e.Statuses() {
			writeStatus(&text, st)
		}
	default:
		s.fatalf(b, "unknown command")
	}
	s.flush()
	return text.String()
}

func (s *script) allSegments() []*segments.Segment {
	apps := make([]string, 0, len(s.segs))
	for a := range s.segs {
		apps = append(apps, a)
	}
	sort.Strings(apps)
	var all []*segments.Segment
	for _, a := range apps {
		all = append(all, s.segs[a]...)
	}
	return all
}

// flush writes what Dirty gives to the script's changelog.
func (s *script) flush() {
	s.e.Dirty(func(k, st []byte) {
		if st == nil {
			delete(s.changelog, string(k))
			return
		}
		s.changelog[string(k)] = append([]byte(nil), st...)
	})
}

func (s *script) members(w *strings.Builder) {
	for _, st := range s.e.Statuses() {
		if st.Err != nil {
			continue
		}
		var ids []string
		if err := s.e.Members(st.App, st.Segment, func(id string) bool { ids = append(ids, id); return true }); err != nil {
			s.t.Fatal(err)
		}
		sort.Strings(ids)
		n, _ := s.e.Size(st.App, st.Segment)
		if n != len(ids) {
			s.t.Errorf("segment %s/%s: size %d, %d members", st.App, st.Segment, n, len(ids))
		}
		name := st.Segment
		if st.App != "app" {
			name = st.App + "/" + name
		}
		fmt.Fprintf(w, "%s (%d): %s\n", name, n, strings.Join(ids, " "))
	}
}

func writeChanges(w *strings.Builder, cs []Change) {
	for _, c := range cs {
		dir := "exit "
		if c.Enter {
			dir = "enter"
		}
		name := c.Segment
		if c.App != "app" {
			name = c.App + "/" + name
		}
		fmt.Fprintf(w, "%s %s %s at %s (%s)\n", dir, name, c.DeviceID, c.Time.Format(time.RFC3339), c.CauseText())
	}
}

func writeStatus(w *strings.Builder, st Status) {
	name := st.Segment
	if st.App != "app" {
		name = st.App + "/" + name
	}
	switch {
	case st.Err != nil:
		fmt.Fprintf(w, "status %s: invalid: %v\n", name, st.Err)
	case st.Complete:
		fmt.Fprintf(w, "status %s: complete\n", name)
	default:
		fmt.Fprintf(w, "status %s: counts from %s: %s\n", name, st.CountsFrom.Format(time.RFC3339), st.Why)
	}
}

func (s *script) parseTime(b *block, v string) time.Time {
	at, err := time.Parse(time.RFC3339, v)
	if err != nil {
		s.fatalf(b, "time %q: %v", v, err)
	}
	return at
}

var scriptKinds = map[string]tag.Kind{
	"session": tag.KindSessionStart, "session_end": tag.KindSessionEnd, "activity": tag.KindActivityStart,
	"activity_end": tag.KindActivityEnd, "event": tag.KindEvent, "job_start": tag.KindJobStart, "job_end": tag.KindJobEnd,
	"job": tag.KindJob, "error": tag.KindError, "crash": tag.KindCrash, "app_info": tag.KindAppInfo, "device": tag.KindDevice, "push": tag.KindPush,
}

// parseRecord reads `<time> <device> <kind> ["name"] [key=value ...]`.
// Special keys: id= (message id, default m<offset>), offset= (input
// offset, default the next one), dur= (a Go duration). For app_info the
// pairs are app-info values; for device they are device fields. Values:
// "quoted" strings, numbers, true/false, RFC 3339 dates, else strings.
func (s *script) parseRecord(b *block, app, line, now string) (*tag.Record, int64, time.Time) {
	toks := splitFields(line)
	if len(toks) < 3 {
		s.fatalf(b, "record %q: want <time> <device> <kind> ...", line)
	}
	r := &tag.Record{AppID: app, DeviceID: toks[1], Time: s.parseTime(b, toks[0])}
	k, ok := scriptKinds[toks[2]]
	if !ok {
		s.fatalf(b, "record %q: unknown kind %q", line, toks[2])
	}
	r.Kind = k
	rest := toks[3:]
	if len(rest) > 0 && strings.HasPrefix(rest[0], `"`) {
		r.Name, _ = strconv.Unquote(rest[0])
		rest = rest[1:]
	}
	s.offset++
	offset := s.offset
	for _, kv := range rest {
		key, val, ok := strings.Cut(kv, "=")
		if !ok {
			s.fatalf(b, "record %q: %q is not key=value", line, kv)
		}
		switch {
		case key == "id":
			r.MessageID = val
		case key == "offset":
			offset, _ = strconv.ParseInt(val, 10, 64)
			s.offset--
		case key == "dur":
			d, err := time.ParseDuration(val)
			if err != nil {
				s.fatalf(b, "record %q: %v", line, err)
			}
			r.Duration = d
		case k == tag.KindDevice:
			if r.Device == nil {
				r.Device = &tag.DeviceInfo{}
			}
			setDeviceField(r.Device, key, val)
		case k == tag.KindAppInfo:
			r.AppInfo = append(r.AppInfo, tag.Extra{Key: key, Value: parseValue(val)})
		default:
			r.Extras = append(r.Extras, tag.Extra{Key: key, Value: parseValue(val)})
		}
	}
	if r.MessageID == "" {
		r.MessageID = "m" + strconv.FormatInt(offset, 10)
	}
	sort.Slice(r.Extras, func(i, j int) bool { return r.Extras[i].Key < r.Extras[j].Key })
	sort.Slice(r.AppInfo, func(i, j int) bool { return r.AppInfo[i].Key < r.AppInfo[j].Key })
	at := r.Time
	if now != "" {
		at = s.parseTime(b, now)
	}
	if at.After(s.clock) {
		s.clock = at
	}
	return r, offset, s.clock
}

func splitFields(l string) []string {
	var out []string
	for {
		l = strings.TrimLeft(l, " ")
		if l == "" {
			return out
		}
		i, inQuote := 0, false
		for ; i < len(l); i++ {
			if l[i] == '"' && (i == 0 || l[i-1] != '\\') {
				inQuote = !inQuote
			}
			if l[i] == ' ' && !inQuote {
				break
			}
		}
		out = append(out, l[:i])
		l = l[i:]
	}
}

func parseValue(v string) tag.Value {
	if s, err := strconv.Unquote(v); err == nil {
		return tag.String(s)
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		return tag.Number(f)
	}
	if b, err := strconv.ParseBool(v); err == nil {
		return tag.Bool(b)
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return tag.Date(t)
	}
	return tag.String(v)
}

func setDeviceField(d *tag.DeviceInfo, key, val string) {
	if s, err := strconv.Unquote(val); err == nil {
		val = s
	}
	switch key {
	case "platform":
		d.Platform = val
	case "app_version":
		d.AppVersion = val
	case "os_version":
		d.OSVersion = val
	case "model":
		d.Model = val
	case "manufacturer":
		d.Manufacturer = val
	case "locale":
		d.Locale = val
	case "country":
		d.Country = val
	case "timezone":
		d.TimeZone = val
	}
}
