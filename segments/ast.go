package segments

import (
	"time"

	"github.com/openengage/engage/pipeline/tag"
)

// Pos is a position in a segment's text, 1-based. The zero Pos means the
// node did not come from text (e.g. it was built from JSON or in Go).
type Pos struct{ Line, Col int }

// Node is a segment expression: And, Or, Not, or one of the conditions.
type Node interface {
	Position() Pos
	node()
}

// And is true when every argument is (at least two).
type And struct {
	At   Pos
	Args []Node
}

// Or is true when any argument is (at least two).
type Or struct {
	At   Pos
	Args []Node
}

// Not negates its argument.
type Not struct {
	At Pos
	X  Node
}

// Forever is the Max of an Ago range with no upper bound.
const Forever time.Duration = 1<<63 - 1

// Ago is a range of ages relative to now: a time t is in it when
// now-Max <= t <= now-Min. "within 3d" is {0, 3d}; "more than 7d ago" is
// {7d, Forever}; "between 3d and 4d ago" is {3d, 4d}. When Absolute is set
// the range is instead the absolute [From, To) (either may be zero: open).
type Ago struct {
	Min, Max time.Duration
	Absolute bool
	From, To time.Time
}

// Moment names a time in a device's history.
type Moment uint8

const (
	MomentFirstSession Moment = iota + 1 // first session start ("first_session")
	MomentLastSeen                       // newest record of any kind ("last_seen")
	MomentLastTag                        // newest record of Kind/Name ("last event \"x\"")
)

// Since is true when the moment exists and lies in the range.
// "first_session between 3d and 4d ago", "last_seen more than 14d ago",
// `last activity "checkout" within 1h`.
type Since struct {
	At     Pos
	Moment Moment
	Kind   tag.Kind // MomentLastTag: activity (KindActivityStart), event, job (KindJob), error, crash, session (KindSessionStart)
	Name   string   // MomentLastTag: the tag name; "" for sessions
	Range  Ago
}

// CmpOp compares numbers, strings, dates and versions.
type CmpOp uint8

const (
	OpEq CmpOp = iota + 1
	OpNe
	OpLt
	OpLe
	OpGt
	OpGe
	OpIn      // value in Values
	OpNotIn   // value not in Values
	OpBetween // Values[0] <= value <= Values[1]
	OpSet     // the attribute has a value
	OpNotSet  // the attribute has no value
	OpPrefix  // string starts with Values[0] ("starts with")
)

// Operand is one value a condition compares against: a literal, or for
// dates a time relative to now ("now - 18y"), when Relative is set.
type Operand struct {
	Value    tag.Value
	Relative bool          // a date: now + Offset
	Offset   time.Duration // may be negative
	At       Pos           // where the value is written; zero if not from text
}

// Filter compares one extra of a record ("where category = \"sport\"").
type Filter struct {
	At     Pos
	Key    string
	Op     CmpOp
	Values []Operand
}

// Did counts a device's records of one kind and name, restricted by
// filters on their extras and (jobs, activities, sessions) by duration,
// within a rolling window, and compares the count: `did event "share"
// where network = "facebook" at least 3 times in last 7d`. Plain "did" is
// Count {OpGe, 1}; "did not ..." is Not{Did}. Window 0 means all the
// history the engine holds for the device.
type Did struct {
	At       Pos
	Kind     tag.Kind // KindSessionStart, KindActivityStart, KindEvent, KindJob, KindError, KindCrash
	Name     string   // "" for sessions
	Where    []Filter // all must hold
	Duration *Filter  // Key "duration", Values are numbers in milliseconds
	Count    CountCmp
	Window   time.Duration
}

// CountCmp compares a count: at least / at most / exactly / more than /
// fewer than N.
type CountCmp struct {
	Op CmpOp // OpGe, OpLe, OpEq, OpGt, OpLt
	N  int
}

// Source is where an attribute comes from.
type Source uint8

const (
	SourceAppInfo Source = iota + 1 // app_info "key"
	SourceDevice                    // device fields: platform, app_version, os_version, model, manufacturer, locale, country, timezone
)

// Attr compares an attribute's current value: `app_info "level" >= 5`,
// `platform = "ios"`, `app_version between "2.0" and "2.9"` (version
// order), `app_info "birthday" < now - 18y`, `country in ["FR", "BE"]`.
type Attr struct {
	At     Pos
	Source Source
	Key    string
	Op     CmpOp
	Values []Operand
}

// Unchanged is true when an app-info value is set and has not changed for
// at least Min: `app_info "level" unchanged for 3d`.
type Unchanged struct {
	At  Pos
	Key string
	Min time.Duration
}

// Ref is true when the device is in another segment: `segment "engaged"`.
type Ref struct {
	At   Pos
	Name string
}

// Sample keeps a deterministic share of devices: `sample 1%` keeps those
// whose murmur3 hash of salt+device id falls in the first 1% of the space.
type Sample struct {
	At      Pos
	Percent float64 // (0, 100]
	Salt    string  // defaults to the segment's name
}

func (n *And) Position() Pos       { return n.At }
func (n *Or) Position() Pos        { return n.At }
func (n *Not) Position() Pos       { return n.At }
func (n *Since) Position() Pos     { return n.At }
func (n *Did) Position() Pos       { return n.At }
func (n *Attr) Position() Pos      { return n.At }
func (n *Unchanged) Position() Pos { return n.At }
func (n *Ref) Position() Pos       { return n.At }
func (n *Sample) Position() Pos    { return n.At }

func (*And) node()       {}
func (*Or) node()        {}
func (*Not) node()       {}
func (*Since) node()     {}
func (*Did) node()       {}
func (*Attr) node()      {}
func (*Unchanged) node() {}
func (*Ref) node()       {}
func (*Sample) node()    {}

// Segment is a named, parsed segment of one app.
type Segment struct {
	App     string
	Name    string
	Text    string // the source text, as written
	Expr    Node
	Version int64 // configuration version that last changed it
}
