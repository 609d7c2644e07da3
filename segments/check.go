package segments

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/pipeline/tagplan"
)

// The language's limits, which Check enforces.
const (
	MinWindow    = time.Minute   // shortest rolling window of a did condition
	MaxWindow    = 90 * day      // longest rolling window of a did condition
	MaxCount     = 1000          // largest count a did condition compares with
	MinUnchanged = time.Minute   // shortest "unchanged for"
	MaxUnchanged = 365 * day     // longest "unchanged for"
	MaxValues    = 1000          // most values in an in list
	maxErrors    = 50            // problems reported for one segment
	versionHint  = `as in "2.1"` // how a version is written
)

// Check holds a segment to its app's tag plan and to the language's limits,
// and returns every problem it finds as Errors (nil if there are none),
// each at its position in the text (or JSON path) with a specific message:
// a tag the plan does not declare (with the closest declared name), an
// extras or app_info key the plan does not declare, a value of another
// type than the plan declares, an operator that does not apply to the
// type, a window outside 1m..90d, a count outside 0..1000, a sample
// outside (0%, 100%], an unknown device field, a reference to a segment
// that segmentExists does not know (or to itself).
//
// A nil plan accepts every tag and key, but Check still requires that
// each attribute or extra is compared with values of one type throughout
// the expression. A nil segmentExists accepts every reference. Reference
// cycles across segments are CheckRefs' job.
func Check(seg *Segment, plan *tagplan.Plan, segmentExists func(name string) bool) error {
	c := &checker{seg: seg, plan: plan, exists: segmentExists, uses: map[string]typeUse{}}
	switch {
	case seg == nil || seg.Expr == nil:
		c.errorf(Pos{}, "", "the segment has no expression")
	case plan != nil && seg.App != "" && plan.App != seg.App:
		c.errorf(Pos{}, "", "the segment belongs to app %q but the tag plan to app %q", seg.App, plan.App)
	default:
		c.node(seg.Expr, "")
	}
	if len(c.errs) == 0 {
		return nil
	}
	return c.errs
}

// checker walks one expression, collecting problems.
type checker struct {
	seg    *Segment
	plan   *tagplan.Plan
	exists func(string) bool
	errs   Errors
	uses   map[string]typeUse // attribute or extra → the first type it was compared with
}

// typeUse is the first type something was compared with, and where.
type typeUse struct {
	typ tag.Type
	at  Pos
}

func (c *checker) errorf(pos Pos, path, format string, args ...any) {
	if len(c.errs) == maxErrors {
		c.errs = append(c.errs, &Error{Pos: pos, Path: path, Msg: fmt.Sprintf("too many problems (more than %d): fix these first", maxErrors)})
	}
	if len(c.errs) > maxErrors {
		return
	}
	c.errs = append(c.errs, &Error{Pos: pos, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// inPlan names the plan in messages: `in the tag plan of app "game"`.
func (c *checker) inPlan() string { return fmt.Sprintf("in the tag plan of app %q", c.plan.App) }

func (c *checker) node(n Node, path string) {
	switch n := n.(type) {
	case nil:
		c.errorf(Pos{}, path, "no expression here (nil node)")
	case *And:
		c.list(n.At, n.Args, "and", path)
	case *Or:
		c.list(n.At, n.Args, "or", path)
	case *Not:
		c.node(n.X, path+"/not")
	case *Since:
		c.since(n, path+"/since")
	case *Did:
		c.did(n, path+"/did")
	case *Attr:
		c.attr(n, path+"/attr")
	case *Unchanged:
		c.unchanged(n, path+"/unchanged")
	case *Ref:
		c.ref(n, path+"/segment")
	case *Sample:
		c.sample(n, path+"/sample")
	default:
		c.errorf(Pos{}, path, "unknown node %T", n)
	}
}

func (c *checker) list(at Pos, args []Node, op, path string) {
	path += "/" + op
	if len(args) < 2 {
		c.errorf(at, path, "%s needs at least two conditions, found %d", op, len(args))
	}
	for i, a := range args {
		c.node(a, path+"/"+strconv.Itoa(i))
	}
}

func (c *checker) since(s *Since, path string) {
	switch s.Moment {
	case MomentFirstSession, MomentLastSeen:
		if s.Kind != tag.KindInvalid || s.Name != "" {
			c.errorf(s.At, path, "first_session and last_seen take no kind or name (kind %s, name %q)", s.Kind, s.Name)
		}
	case MomentLastTag:
		c.tag(s.At, path, s.Kind, s.Name)
	default:
		c.errorf(s.At, path+"/moment", "unknown moment %d: expected first_session, last_seen or last", s.Moment)
	}
	r := s.Range
	switch {
	case r.Absolute && r.From.IsZero() && r.To.IsZero():
		c.errorf(s.At, path, "the range has neither an after nor a before date")
	case r.Absolute && !r.From.IsZero() && !r.To.IsZero() && !r.From.Before(r.To):
		c.errorf(s.At, path, "between %s and %s: the earlier date comes first", formatDate(r.From), formatDate(r.To))
	case r.Absolute:
	case r.Min < 0 || r.Max < 0:
		c.errorf(s.At, path, "the range has a negative age (min %s, max %s)", r.Min, r.Max)
	case r.Max == 0:
		c.errorf(s.At, path, "within 0s is always empty: give a duration above zero, such as within 1d")
	case r.Min > r.Max:
		c.errorf(s.At, path, "between %s and %s ago: the shorter duration comes first (between %s and %s ago)",
			FormatDuration(r.Min), FormatDuration(r.Max), FormatDuration(r.Max), FormatDuration(r.Min))
	}
}

// tag checks the kind and name of a record a condition names, and
// reports whether the plan declares it by name (so its extras are
// declared one by one).
func (c *checker) tag(at Pos, path string, k tag.Kind, name string) bool {
	word, ok := KindWord(k)
	switch {
	case !ok:
		c.errorf(at, path+"/kind", "kind %s is not one of %s", k, kindList)
		return false
	case k == tag.KindSessionStart && name != "":
		c.errorf(at, path+"/name", "sessions have no name, found %q", name)
		return false
	case k == tag.KindSessionStart:
		return false // sessions are not in tag plans
	case name == "":
		c.errorf(at, path+"/name", "the %s's name is empty", word)
		return false
	case c.plan == nil:
		return false
	case c.plan.HasTag(k, name):
		return k != tag.KindCrash || listed(c.plan.TagNames(k), name)
	}
	hint := ""
	if s, ok := tagplan.Suggest(name, c.plan.TagNames(k)); ok {
		hint = fmt.Sprintf(" (did you mean %q?)", s)
	} else {
		var elsewhere []string
		for _, other := range []tag.Kind{tag.KindActivityStart, tag.KindEvent, tag.KindJob, tag.KindError, tag.KindCrash} {
			if other != k && listed(c.plan.TagNames(other), name) {
				w, _ := KindWord(other)
				elsewhere = append(elsewhere, fmt.Sprintf("%s %q", w, name))
			}
		}
		if len(elsewhere) > 0 {
			hint = fmt.Sprintf(" (did you mean %s?)", strings.Join(elsewhere, " or "))
		}
	}
	c.errorf(at, path+"/name", "%s %q is not %s%s", word, name, c.inPlan(), hint)
	return false
}

func listed(names []string, name string) bool {
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}

func (c *checker) did(d *Did, path string) {
	declared := c.tag(d.At, path, d.Kind, d.Name)
	word := kindWord(d.Kind)
	for i, f := range d.Where {
		fp := fmt.Sprintf("%s/where/%d", path, i)
		at := f.At
		if at == (Pos{}) {
			at = d.At
		}
		if !tag.ValidKey(f.Key) {
			c.errorf(at, fp+"/key", "%s is not a valid extras key: a letter, then letters, digits or _, at most %d bytes", Quote(f.Key), tag.MaxKeyLen)
			continue
		}
		subject := fmt.Sprintf("extra %q of %s %q", f.Key, word, d.Name)
		typ, ok := tag.TypeInvalid, false
		if c.plan != nil {
			typ, ok = c.plan.ExtraType(d.Kind, d.Name, f.Key)
			if !ok && declared {
				hint := ""
				if s, ok := tagplan.Suggest(f.Key, c.plan.ExtraKeys(d.Kind, d.Name)); ok {
					hint = fmt.Sprintf(" (did you mean %q?)", s)
				}
				c.errorf(at, fp+"/key", "%s %q has no extra %q %s%s", word, d.Name, f.Key, c.inPlan(), hint)
				continue
			}
		}
		c.comparison(comparand{
			subject: subject, use: "extra\x00" + word + "\x00" + d.Name + "\x00" + f.Key,
			typ: typ, planned: ok,
		}, f.Op, f.Values, at, fp)
	}
	if f := d.Duration; f != nil {
		c.taking(d, f, path+"/taking")
	}
	if _, ok := countOpWords[d.Count.Op]; !ok {
		c.errorf(d.At, path+"/count/op", "operator %s does not compare counts: expected at least, at most, exactly, more than or fewer than", d.Count.Op)
	}
	if d.Count.N < 0 || d.Count.N > MaxCount {
		c.errorf(d.At, path+"/count/n", "count %d is out of range: from 0 to %d times", d.Count.N, MaxCount)
	}
	switch w := d.Window; {
	case w == 0:
	case w < MinWindow:
		c.errorf(d.At, path+"/window", "window %s is too short: at least %s", FormatDuration(w), FormatDuration(MinWindow))
	case w > MaxWindow:
		c.errorf(d.At, path+"/window", "window %s is too long: at most %s", FormatDuration(w), FormatDuration(MaxWindow))
	}
}

func (c *checker) taking(d *Did, f *Filter, path string) {
	at := f.At
	if at == (Pos{}) {
		at = d.At
	}
	switch d.Kind {
	case tag.KindJob, tag.KindActivityStart, tag.KindSessionStart:
	default:
		c.errorf(at, path, "taking applies to jobs, activities and sessions, which have a duration; a%s %s has none",
			map[bool]string{true: "n"}[strings.HasPrefix(kindWord(d.Kind), "e")], kindWord(d.Kind))
	}
	if f.Key != "duration" {
		c.errorf(at, path, "the duration filter's key is %q: expected \"duration\"", f.Key)
	}
	if _, ok := durationOps[f.Op.String()]; !ok {
		c.errorf(at, path+"/op", "operator %s does not compare durations: expected more than, less than, at least, at most or between", f.Op)
		return
	}
	if n := arity(f.Op); len(f.Values) != n {
		word := durationOpWords[f.Op]
		if f.Op == OpBetween {
			word = "between"
		}
		c.errorf(at, path+"/values", "taking %s needs %d duration%s, found %d", word, n, map[bool]string{true: "s"}[n != 1], len(f.Values))
		return
	}
	for i, v := range f.Values {
		if v.Relative || v.Value.Type != tag.TypeNumber || !finite(v.Value.Num) || v.Value.Num < 0 {
			c.errorf(at, fmt.Sprintf("%s/values/%d", path, i), "a duration is a number of milliseconds of at least 0, found %s", formatOperand(v))
			return
		}
	}
	if f.Op == OpBetween && f.Values[0].Value.Num > f.Values[1].Value.Num {
		c.errorf(at, path+"/values", "taking between %s and %s: the shorter duration comes first",
			FormatDuration(msDuration(f.Values[0].Value.Num)), FormatDuration(msDuration(f.Values[1].Value.Num)))
	}
}

func (c *checker) attr(a *Attr, path string) {
	switch a.Source {
	case SourceAppInfo:
		typ, ok := c.appInfoKey(a.At, path, a.Key)
		if ok || c.plan == nil {
			c.comparison(comparand{subject: fmt.Sprintf("app_info %q", a.Key), use: "app_info\x00" + a.Key, typ: typ, planned: ok && c.plan != nil}, a.Op, a.Values, a.At, path)
		}
	case SourceDevice:
		if !listed(DeviceFields, a.Key) {
			hint := ""
			if s, ok := tagplan.Suggest(a.Key, DeviceFields); ok {
				hint = fmt.Sprintf(" (did you mean %s?)", s)
			}
			c.errorf(a.At, path+"/key", "unknown device field %q: expected %s%s", a.Key, strings.Join(DeviceFields, ", "), hint)
			return
		}
		if c.comparison(comparand{subject: a.Key, typ: tag.TypeString, device: true, version: a.Key == "app_version" || a.Key == "os_version"}, a.Op, a.Values, a.At, path) {
			c.deviceValues(a, path)
		}
	default:
		c.errorf(a.At, path+"/source", "unknown source %d: expected app_info or a device field", a.Source)
	}
}

// appInfoKey checks an app_info key and returns its declared type.
func (c *checker) appInfoKey(at Pos, path, key string) (tag.Type, bool) {
	if !tag.ValidKey(key) {
		c.errorf(at, path+"/key", "app_info %s is not a valid key: a letter, then letters, digits or _, at most %d bytes", Quote(key), tag.MaxKeyLen)
		return tag.TypeInvalid, false
	}
	if c.plan == nil {
		return tag.TypeInvalid, false
	}
	typ, ok := c.plan.AppInfoType(key)
	if !ok {
		hint := ""
		if s, ok := tagplan.Suggest(key, c.plan.AppInfoKeys()); ok {
			hint = fmt.Sprintf(" (did you mean %q?)", s)
		}
		c.errorf(at, path+"/key", "app_info %q is not %s%s", key, c.inPlan(), hint)
	}
	return typ, ok
}

func (c *checker) unchanged(u *Unchanged, path string) {
	c.appInfoKey(u.At, path, u.Key)
	if u.Min < MinUnchanged || u.Min > MaxUnchanged {
		c.errorf(u.At, path+"/for", "unchanged for %s is out of range: from %s to %s", FormatDuration(u.Min), FormatDuration(MinUnchanged), FormatDuration(MaxUnchanged))
	}
}

func (c *checker) ref(r *Ref, path string) {
	switch {
	case r.Name == "":
		c.errorf(r.At, path+"/name", "the segment's name is empty")
	case c.seg != nil && c.seg.Name != "" && r.Name == c.seg.Name:
		c.errorf(r.At, path+"/name", "segment %q refers to itself", r.Name)
	case c.exists != nil && !c.exists(r.Name):
		app := ""
		if c.seg != nil && c.seg.App != "" {
			app = fmt.Sprintf(" in app %q", c.seg.App)
		}
		c.errorf(r.At, path+"/name", "there is no segment %q%s", r.Name, app)
	}
}

func (c *checker) sample(s *Sample, path string) {
	if !finite(s.Percent) || s.Percent <= 0 || s.Percent > 100 {
		c.errorf(s.At, path+"/percent", "sample %s%% is out of range: above 0%% and at most 100%%", formatNumber(s.Percent))
	}
}
