package tagplan

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/openengage/engage/pipeline/tag"
)

// Mode is what a plan does with data it does not declare.
type Mode uint8

// The modes. The zero Mode is ModeOff; a plan file without a mode is in
// ModeWarn.
const (
	ModeOff     Mode = iota // no coercion, no checks: the plan is documentation
	ModeWarn                // coerce, accept everything, mark what is unplanned
	ModeEnforce             // coerce, refuse the first unplanned thing of a record
)

var modeNames = [...]string{ModeOff: "off", ModeWarn: "warn", ModeEnforce: "enforce"}

// String returns the mode as it is written in a plan file.
func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// ParseMode returns the mode named s ("off", "warn" or "enforce").
func ParseMode(s string) (Mode, bool) {
	for m, name := range modeNames {
		if name == s {
			return Mode(m), true
		}
	}
	return ModeOff, false
}

// section is one of the plan's lists of tag names.
type section uint8

const (
	secActivities section = iota
	secEvents
	secJobs
	secErrors
	secCrashes
	numSections
)

// sectionKeys are the sections' keys in a plan file; sectionMarks name one
// tag of the section in marks and errors.
var (
	sectionKeys  = [numSections]string{"activities", "events", "jobs", "errors", "crashes"}
	sectionMarks = [numSections]string{"activity", "event", "job", "error", "crash"}
)

// sectionOf returns the section that declares the names of records of kind
// k; false for the kinds that a plan does not check by name.
func sectionOf(k tag.Kind) (section, bool) {
	switch k {
	case tag.KindActivityStart, tag.KindActivityEnd:
		return secActivities, true
	case tag.KindEvent:
		return secEvents, true
	case tag.KindJob, tag.KindJobStart, tag.KindJobEnd:
		return secJobs, true
	case tag.KindError:
		return secErrors, true
	case tag.KindCrash:
		return secCrashes, true
	}
	return 0, false
}

// typeMap maps extras or app-info keys to their declared types.
type typeMap map[string]tag.Type

// Plan is one app's parsed tag plan. A Plan is immutable once parsed, and
// safe for any number of concurrent readers; a nil *Plan accepts everything.
type Plan struct {
	App  string // the app id the plan belongs to
	Mode Mode   // what Apply does with unplanned data

	// tags maps, per section, each declared name to its own extras (nil
	// if none); the global extras are allowed on it too. (Merging them into
	// each tag's would save a look-up per global key but cost tags × global
	// keys of memory.)
	tags     [numSections]map[string]typeMap
	anyCrash bool    // crashes: any (the default)
	extras   typeMap // global extras, allowed on every tag
	appInfo  typeMap
	summary  Summary
}

// ParseFile reads and parses the tag plan at path. Errors in the plan are
// of type Errors and name path.
func ParseFile(path string) (*Plan, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read tag plan: %w", err)
	}
	return Parse(path, data)
}

// Declared reports how a name is declared, for APIs such as Segment's that
// send every tag as a "track" call: tag.KindEvent if name is listed under
// events, else tag.KindJob if under jobs, else tag.KindError if under
// errors. It returns false if none of them lists name, or p is nil.
func (p *Plan) Declared(name string) (tag.Kind, bool) {
	if p == nil {
		return tag.KindInvalid, false
	}
	for _, d := range [...]struct {
		sec  section
		kind tag.Kind
	}{{secEvents, tag.KindEvent}, {secJobs, tag.KindJob}, {secErrors, tag.KindError}} {
		if _, ok := p.tags[d.sec][name]; ok {
			return d.kind, true
		}
	}
	return tag.KindInvalid, false
}

// Summary counts what a plan declares, for `engage tagplan check`.
type Summary struct {
	App        string
	Mode       Mode
	Activities int
	Events     int
	Jobs       int
	Errors     int
	Crashes    int  // declared crash names; 0 when AnyCrash
	AnyCrash   bool // every crash name is allowed
	Extras     int  // global extras keys, allowed on every tag
	TagExtras  int  // extras keys declared on single tags, summed over the tags
	AppInfo    int  // app_info keys
}

// Summary returns the counts of what p declares. A nil plan has a zero
// Summary.
func (p *Plan) Summary() Summary {
	if p == nil {
		return Summary{}
	}
	s := p.summary
	s.App, s.Mode = p.App, p.Mode
	return s
}

// String renders the summary on one line, e.g. `app "news", mode warn: 3
// activities, 3 events, 1 job, 1 error, any crash, 5 tag extras, 1 global
// extra, 4 app_info keys`.
func (s Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "app %q, mode %s: ", s.App, s.Mode)
	count := func(n int, one, many string) string {
		if n == 1 {
			return "1 " + one
		}
		return fmt.Sprintf("%d %s", n, many)
	}
	crashes := "any crash"
	if !s.AnyCrash {
		crashes = count(s.Crashes, "crash", "crashes")
	}
	b.WriteString(strings.Join([]string{
		count(s.Activities, "activity", "activities"),
		count(s.Events, "event", "events"),
		count(s.Jobs, "job", "jobs"),
		count(s.Errors, "error", "errors"),
		crashes,
		count(s.TagExtras, "tag extra", "tag extras"),
		count(s.Extras, "global extra", "global extras"),
		count(s.AppInfo, "app_info key", "app_info keys"),
	}, ", "))
	return b.String()
}

// Tag is one tag a plan declares: its section as marks name it (activity,
// event, job, error or crash) and its name.
type Tag struct {
	Section string
	Name    string
}

// Tags lists the declared tags, sorted by section then name, and whether
// every crash name is allowed (crashes: any). For the coverage report.
func (p *Plan) Tags() (tags []Tag, anyCrash bool) {
	if p == nil {
		return nil, false
	}
	for sec := section(0); sec < numSections; sec++ {
		start := len(tags)
		for name := range p.tags[sec] {
			tags = append(tags, Tag{Section: sectionMarks[sec], Name: name})
		}
		slices.SortFunc(tags[start:], func(a, b Tag) int { return strings.Compare(a.Name, b.Name) })
	}
	return tags, p.anyCrash
}
