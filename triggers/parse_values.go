package triggers

import (
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// The readers of a campaign file's values: each reads one node, records
// where it was written, and reports a mistake at the node.

// maxCampaignNodes bounds the nodes a campaign file may have, counting
// those reached through YAML aliases again: a small file of aliases to
// aliases must not make the walk grow faster than the file.
const maxCampaignNodes = 100_000

const tooBigMsg = "the campaign has more than %d values"

// spend counts n's children against maxCampaignNodes, and reports false
// (once) when the file has too many.
func (p *campaignParser) spend(n *yaml.Node) bool {
	p.nodes += len(n.Content)
	if p.nodes <= maxCampaignNodes {
		return true
	}
	if !p.tooBig {
		p.tooBig = true
		p.errorf(n, "", tooBigMsg+" (counting those YAML aliases repeat): it cannot be a campaign", maxCampaignNodes)
	}
	return false
}

// keys reads the mapping n, whose keys must be among allowed, and returns
// its values by key; what names the mapping in messages. Null is an empty
// mapping. It reports unknown keys (with a suggestion for typos), keys
// given twice and keys that are not strings, and returns nil when n is
// absent (nil) or not a mapping.
func (p *campaignParser) keys(n *yaml.Node, path, what string, allowed []string) map[string]*yaml.Node {
	if n == nil {
		return nil
	}
	n = derefNode(n)
	p.mark(path, n)
	if isNullNode(n) {
		return map[string]*yaml.Node{}
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, path, "%s must be a mapping with keys %s, not %s", what, listKeys(allowed), describeNode(n))
		return nil
	}
	m := make(map[string]*yaml.Node, len(n.Content)/2)
	p.entries(n, path, func(key string, k, v *yaml.Node) {
		if !slices.Contains(allowed, key) {
			p.errorf(k, joinPath(path, key), "unknown key %q in %s: use %s%s", key, what, listKeys(allowed), didYouMean(key, allowed))
			return
		}
		m[key] = v
	})
	return m
}

// entries calls fn for each key and (dereferenced) value of the mapping
// n, reporting keys that are not strings and keys given twice. YAML merge
// keys (<<: *anchor, or a list of anchors) bring in the keys of the
// mappings they name that n does not have itself (the first merged
// mapping that has a key gives it).
func (p *campaignParser) entries(n *yaml.Node, path string, fn func(key string, k, v *yaml.Node)) {
	if !p.spend(n) {
		return
	}
	seen := make(map[string]*yaml.Node, len(n.Content)/2)
	var merges []*yaml.Node // key, value, key, value …
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := derefNode(n.Content[i]), derefNode(n.Content[i+1])
		switch {
		case k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge":
			merges = append(merges, k, v)
			continue
		case k.Kind != yaml.ScalarNode:
			p.errorf(k, path, "a key must be a text, not %s", describeNode(k))
			continue
		case isNullNode(k):
			p.errorf(k, path, "a key must be a text, not null (quote it if it is a name)")
			continue
		}
		if first, dup := seen[k.Value]; dup {
			p.errorf(k, joinPath(path, k.Value), "duplicate key %q (first at %d:%d)", k.Value, first.Line, first.Column)
			continue
		}
		seen[k.Value] = k
		p.mark(joinPath(path, k.Value), v)
		fn(k.Value, k, v)
	}
	for i := 0; i < len(merges); i += 2 {
		p.merge(merges[i], merges[i+1], path, seen, fn, 0)
	}
}

// maxMergeDepth bounds merges of merges (an anchor may even merge
// itself).
const maxMergeDepth = 8

// merge brings in the keys of the mapping (or list of mappings) v, merged
// by the merge key k, that are not in seen.
func (p *campaignParser) merge(k, v *yaml.Node, path string, seen map[string]*yaml.Node, fn func(key string, k, v *yaml.Node), depth int) {
	v = derefNode(v)
	switch {
	case depth > maxMergeDepth:
		p.errorf(k, path, "merges nest deeper than %d levels (does an anchor merge itself?)", maxMergeDepth)
	case v.Kind == yaml.SequenceNode:
		for _, item := range v.Content {
			p.merge(k, item, path, seen, fn, depth+1)
		}
	case v.Kind != yaml.MappingNode:
		p.errorf(k, path, "<< merges a mapping (<<: *anchor), not %s", describeNode(v))
	case p.spend(v):
		var inner []*yaml.Node
		for i := 0; i+1 < len(v.Content); i += 2 {
			mk, mv := derefNode(v.Content[i]), derefNode(v.Content[i+1])
			switch {
			case mk.Kind == yaml.ScalarNode && mk.ShortTag() == "!!merge":
				inner = append(inner, mk, mv)
			case mk.Kind != yaml.ScalarNode || isNullNode(mk):
				p.errorf(mk, path, "a key must be a text, not %s", describeNode(mk))
			case seen[mk.Value] == nil:
				seen[mk.Value] = mk
				p.mark(joinPath(path, mk.Value), mv)
				fn(mk.Value, mk, mv)
			}
		}
		for i := 0; i < len(inner); i += 2 {
			p.merge(inner[i], inner[i+1], path, seen, fn, depth+1)
		}
	}
}

// list calls fn for each (dereferenced) item of the list n; null is an
// empty list.
func (p *campaignParser) list(n *yaml.Node, path, what string, fn func(i int, item *yaml.Node, path string)) {
	n = derefNode(n)
	p.mark(path, n)
	switch {
	case isNullNode(n):
		return
	case n.Kind != yaml.SequenceNode:
		p.errorf(n, path, "%s must be a list, not %s", what, describeNode(n))
		return
	case !p.spend(n):
		return
	}
	for i, item := range n.Content {
		item = derefNode(item)
		at := indexPath(path, i)
		p.mark(at, item)
		fn(i, item, at)
	}
}

// derefNode follows an alias (*name) to the node it names.
func derefNode(n *yaml.Node) *yaml.Node {
	for i := 0; i < 8 && n.Kind == yaml.AliasNode && n.Alias != nil; i++ {
		n = n.Alias
	}
	return n
}

func isNullNode(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// describeNode names a node's kind for error messages.
func describeNode(n *yaml.Node) string {
	switch {
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case isNullNode(n):
		return "nothing"
	case n.Kind == yaml.ScalarNode:
		return strconv.Quote(truncateText(n.Value, 40))
	}
	return "an alias"
}

func truncateText(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}

// pathName is the last name of a path, for messages: "title" for
// "what.content.en.title".
func pathName(path string) string {
	return path[strings.LastIndexByte(path, '.')+1:]
}

// scalar returns the scalar n, or reports that n is not one.
func (p *campaignParser) scalar(n *yaml.Node, path, want string) (*yaml.Node, bool) {
	n = derefNode(n)
	p.mark(path, n)
	if n.Kind != yaml.ScalarNode || isNullNode(n) {
		p.errorf(n, path, "%s must be %s, not %s", pathName(path), want, describeNode(n))
		return n, false
	}
	return n, true
}

// str reads a text; "" when n is absent.
func (p *campaignParser) str(n *yaml.Node, path string) string {
	if n == nil {
		return ""
	}
	n, ok := p.scalar(n, path, "a text")
	if !ok {
		return ""
	}
	return n.Value
}

// text reads a message text, a template, reporting its mistakes at their
// place in the file.
func (p *campaignParser) text(n *yaml.Node, path string) string {
	s := p.str(n, path)
	if s == "" {
		return s
	}
	n = derefNode(n)
	p.pos.texts[path] = textLoc{at: Pos{n.Line, n.Column}, style: n.Style}
	if _, err := ParseTemplate(s); err != nil {
		for _, e := range err.(Errors) {
			p.errs = append(p.errs, p.pos.placeError(path, s, e.Line, e.Col, e.Msg))
		}
	}
	return s
}

// names reads one text or a list of texts.
func (p *campaignParser) names(n *yaml.Node, path, what string) []string {
	n = derefNode(n)
	if n.Kind == yaml.ScalarNode && !isNullNode(n) {
		p.mark(path, n)
		p.mark(indexPath(path, 0), n)
		return []string{n.Value}
	}
	out := []string{}
	p.list(n, path, what, func(i int, item *yaml.Node, path string) {
		out = append(out, p.str(item, path))
	})
	return out
}

// integer reads a whole number (of 32 bits, signed).
func (p *campaignParser) integer(n *yaml.Node, path string) (int, bool) {
	n, ok := p.scalar(n, path, "a whole number")
	if !ok {
		return 0, false
	}
	if n.ShortTag() == "!!int" {
		if i, err := strconv.ParseInt(n.Value, 0, 32); err == nil {
			return int(i), true
		}
	}
	p.errorf(n, path, "%s must be a whole number between %d and %d, not %s", pathName(path), math.MinInt32, math.MaxInt32, describeNode(n))
	return 0, false
}

// boolean reads true or false.
func (p *campaignParser) boolean(n *yaml.Node, path string) bool {
	n, ok := p.scalar(n, path, "true or false")
	if !ok {
		return false
	}
	if b, err := strconv.ParseBool(strings.ToLower(n.Value)); err == nil && n.ShortTag() == "!!bool" {
		return b
	}
	p.errorf(n, path, "%s must be true or false, not %s", pathName(path), describeNode(n))
	return false
}

// numberNode reads a number written as one.
func numberNode(n *yaml.Node) (float64, bool) {
	if t := n.ShortTag(); t != "!!int" && t != "!!float" {
		return 0, false
	}
	if f, err := strconv.ParseFloat(n.Value, 64); err == nil && !math.IsInf(f, 0) {
		return f, true
	}
	if i, err := strconv.ParseInt(n.Value, 0, 64); err == nil {
		return float64(i), true
	}
	return 0, false
}

// percent reads a percentage: 10%, 0.5% or a plain number.
func (p *campaignParser) percent(n *yaml.Node, path string) float64 {
	n, ok := p.scalar(n, path, "a percentage")
	if !ok {
		return 0
	}
	if f, ok := numberNode(n); ok {
		return f
	}
	if s, ok := strings.CutSuffix(strings.TrimSpace(n.Value), "%"); ok && n.ShortTag() == "!!str" {
		if f, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
			return f
		}
	}
	p.errorf(n, path, "%s must be a percentage such as 10%% or 0.5%%, not %s", pathName(path), describeNode(n))
	return 0
}

// duration reads a duration; 0 when n is absent or wrong.
func (p *campaignParser) duration(n *yaml.Node, path string) time.Duration {
	if n == nil {
		return 0
	}
	d, _ := p.durationOK(n, path)
	return d
}

func (p *campaignParser) durationOK(n *yaml.Node, path string) (time.Duration, bool) {
	n, ok := p.scalar(n, path, "a duration")
	if !ok {
		return 0, false
	}
	d, problem := parseDurationText(n.Value)
	if problem != "" {
		p.errorf(n, path, "%s must be a duration such as 2d, 36h or 90m, not %s: %s", pathName(path), describeNode(n), problem)
		return 0, false
	}
	return d, true
}

// maxFileDuration is the longest duration a campaign file may write.
const maxFileDuration = 36500 * 24 * time.Hour

// fileDurationUnits are the units a duration may be written in. There is no
// month: it has no fixed length.
var fileDurationUnits = map[string]time.Duration{
	"ms": time.Millisecond,
	"s":  time.Second, "sec": time.Second, "secs": time.Second, "second": time.Second, "seconds": time.Second,
	"m": time.Minute, "min": time.Minute, "mins": time.Minute, "minute": time.Minute, "minutes": time.Minute,
	"h": time.Hour, "hour": time.Hour, "hours": time.Hour,
	"d": 24 * time.Hour, "day": 24 * time.Hour, "days": 24 * time.Hour,
	"w": 7 * 24 * time.Hour, "week": 7 * 24 * time.Hour, "weeks": 7 * 24 * time.Hour,
}

// parseDurationText reads a duration such as 2d, 36h, 1d12h, 90 minutes
// or -1h (negative durations are Check's to refuse where they make no
// sense); problem says what is wrong.
func parseDurationText(s string) (d time.Duration, problem string) {
	s = strings.TrimSpace(s)
	neg := strings.HasPrefix(s, "-")
	rest := strings.TrimPrefix(s, "-")
	if rest == "0" {
		return 0, ""
	}
	if rest == "" {
		return 0, "it is empty"
	}
	for rest != "" {
		i := 0
		for i < len(rest) && '0' <= rest[i] && rest[i] <= '9' {
			i++
		}
		if i == 0 {
			return 0, "expected a number of units, such as 2d"
		}
		n, err := strconv.ParseInt(rest[:i], 10, 64)
		digits := rest[:i]
		rest = strings.TrimLeft(rest[i:], " ")
		j := 0
		for j < len(rest) && ('a' <= rest[j] && rest[j] <= 'z' || 'A' <= rest[j] && rest[j] <= 'Z') {
			j++
		}
		if j == 0 {
			return 0, digits + " needs a unit: " + digits + "d, " + digits + "h, " + digits + "m or " + digits + "s"
		}
		u, ok := fileDurationUnits[strings.ToLower(rest[:j])]
		if !ok {
			return 0, "unknown unit " + strconv.Quote(rest[:j]) + ": use w, d, h, m, s or ms (a month has no fixed length: write 30d)"
		}
		if err != nil || n > int64(maxFileDuration/u) || d+time.Duration(n)*u > maxFileDuration {
			return 0, "it is too long: at most 36500d"
		}
		d += time.Duration(n) * u
		rest = strings.TrimLeft(rest[j:], " ")
	}
	if neg {
		d = -d
	}
	return d, ""
}

var timeOfDayText = regexp.MustCompile(`^(\d{1,2}):(\d{2})$`)

// timeOfDay reads a 24-hour local time of day, HH:MM. Hours and minutes
// out of range (24:00, 10:61) are kept for Check to report.
func (p *campaignParser) timeOfDay(n *yaml.Node, path string) *TimeOfDay {
	n, ok := p.scalar(n, path, "a time of day")
	if !ok {
		return nil
	}
	m := timeOfDayText.FindStringSubmatch(strings.TrimSpace(n.Value))
	if m == nil {
		p.errorf(n, path, "%s must be a local time of day such as \"09:00\" or \"18:30\" (24-hour HH:MM), not %s", pathName(path), describeNode(n))
		return nil
	}
	h, _ := strconv.Atoi(m[1])
	mins, _ := strconv.Atoi(m[2])
	return &TimeOfDay{Hour: h, Minute: mins}
}

// instant reads an RFC 3339 instant (2026-12-24T18:00:00Z, with an
// offset, or a date alone for its midnight UTC). With local, it reads a
// wall time: without an offset (2026-12-24T18:00), or with Z; the wall
// time is returned in UTC.
func (p *campaignParser) instant(n *yaml.Node, path string, local bool) time.Time {
	n, ok := p.scalar(n, path, "an instant")
	if !ok {
		return time.Time{}
	}
	s := strings.TrimSpace(n.Value)
	if len(s) > 10 && s[10] == ' ' {
		s = s[:10] + "T" + s[11:]
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		if _, off := t.Zone(); local && off != 0 {
			p.errorf(n, path, "with local_time the instant is a wall time in each device's zone: write it without an offset (%s) or with Z, not %s",
				t.Format("2006-01-02T15:04"), describeNode(n))
			return time.Time{}
		}
		return t.UTC()
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t
	}
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			if local {
				return t
			}
			p.errorf(n, path, "%s has no time zone: add Z for UTC (%sZ) or an offset such as +02:00, or set local_time: true for each device's own wall time",
				describeNode(n), s)
			return time.Time{}
		}
	}
	p.errorf(n, path, "%s must be an instant such as 2026-12-24T18:00:00Z (RFC 3339) or a date such as 2026-12-24, not %s", pathName(path), describeNode(n))
	return time.Time{}
}

// fileRateUnits are the units of a rate, in seconds.
var fileRateUnits = map[string]float64{
	"s": 1, "sec": 1, "second": 1,
	"m": 60, "min": 60, "minute": 60,
	"h": 3600, "hour": 3600,
	"d": 86400, "day": 86400,
}

// rate reads sends per unit of time (100/s, 6000/min, 10000/h), or a
// plain number of sends per second, and returns sends per second.
func (p *campaignParser) rate(n *yaml.Node, path string) float64 {
	n, ok := p.scalar(n, path, "a rate")
	if !ok {
		return 0
	}
	if f, ok := numberNode(n); ok {
		return f
	}
	if count, unit, ok := strings.Cut(n.Value, "/"); ok {
		f, err := strconv.ParseFloat(strings.TrimSpace(count), 64)
		secs, known := fileRateUnits[strings.ToLower(strings.TrimSpace(unit))]
		if err == nil && known && !math.IsInf(f, 0) && !math.IsNaN(f) {
			return f / secs
		}
	}
	p.errorf(n, path, "rate must be sends per unit of time, such as 100/s, 6000/min or 10000/h, not %s", describeNode(n))
	return 0
}

// fileWeekdays are the weekdays as files write them, short and long.
var (
	fileWeekdays     = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}
	fileWeekdaysLong = []string{"sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"}
)

// every reads when a recurring campaign sends: day (nil: every day),
// weekdays (monday to friday), weekends, one weekday, or a list of them.
func (p *campaignParser) every(n *yaml.Node, path string) []time.Weekday {
	n = derefNode(n)
	if n.Kind == yaml.ScalarNode && !isNullNode(n) {
		p.mark(path, n)
		switch s := strings.ToLower(strings.TrimSpace(n.Value)); s {
		case "day", "daily":
			return nil
		case "weekdays":
			return []time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday}
		case "weekends":
			return []time.Weekday{time.Saturday, time.Sunday}
		default:
			if d, ok := p.weekday(n, path); ok {
				return []time.Weekday{d}
			}
			return nil
		}
	}
	var days []time.Weekday
	p.list(n, path, "every", func(i int, item *yaml.Node, path string) {
		if item, ok := p.scalar(item, path, "a weekday"); ok {
			if d, ok := p.weekday(item, path); ok {
				days = append(days, d)
			}
		}
	})
	if n.Kind == yaml.SequenceNode && len(n.Content) == 0 {
		p.errorf(n, path, "every: [] names no weekday: write every: day, or the weekdays, such as [mon, thu]")
	}
	return days
}

func (p *campaignParser) weekday(n *yaml.Node, path string) (time.Weekday, bool) {
	s := strings.ToLower(strings.TrimSpace(n.Value))
	for d := range fileWeekdays {
		if s == fileWeekdays[d] || s == fileWeekdaysLong[d] {
			return time.Weekday(d), true
		}
	}
	options := append([]string{"day", "weekdays", "weekends"}, fileWeekdays...)
	p.errorf(n, path, "unknown day %s: use day, weekdays, weekends, or mon, tue, wed, thu, fri, sat, sun%s", describeNode(n), didYouMean(s, append(options, fileWeekdaysLong...)))
	return 0, false
}
