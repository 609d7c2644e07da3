package engine

import (
	"fmt"
	"strings"
	"time"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/segments"
)

// Explanation says why a device is in or out of a segment: the value of
// each clause and the data behind it.
type Explanation struct {
	App      string
	Segment  string
	DeviceID string
	Time     time.Time
	Known    bool // the engine holds a state for the device
	Member   bool // the membership the engine holds
	// Value is the expression's value at Time. It differs from Member only
	// when Time is past a timer that has not fired yet.
	Value bool
	Root  *Clause
	// History says what history the segment's conditions cover: all of
	// it (tracked from the partition's first record, or filled from the
	// history store below an input offset), being filled, or counted from
	// an instant, and why.
	History string
}

// Clause is one node of a segment's expression, evaluated.
type Clause struct {
	Text   string // the condition as the segment language writes it
	Value  bool
	Detail string    // the data behind the value
	Next   time.Time // when the value can next change with time alone; zero if it cannot
	Args   []*Clause
}

// Explain evaluates a segment for a device at now, clause by clause. It
// changes nothing.
func (e *Engine) Explain(app, segment, deviceID string, now time.Time) (*Explanation, error) {
	cs := e.seg(app, segment)
	if cs == nil {
		return nil, fmt.Errorf("explain: %w: %s/%s", ErrNoSegment, app, segment)
	}
	ns := now.Unix()
	x := &Explanation{App: app, Segment: segment, DeviceID: deviceID, Time: time.Unix(ns, 0).UTC()}
	d := e.device(app, deviceID)
	if d != nil && d.attached {
		x.Known = true
		x.Member = d.member(cs.slot)
	} else {
		// An unknown device (or one not yet re-evaluated after a restore)
		// is explained from an empty state.
		d = &device{app: e.apps[app]}
		d.setKey([]byte(app+"/"+deviceID), len(app))
	}
	x.Root = e.explain(cs.root, d, ns)
	x.Value = x.Root.Value
	x.History = historyText(e.status(e.apps[app], cs))
	return x, nil
}

func (e *Engine) explain(n *cnode, d *device, now int64) *Clause {
	v, next := e.eval(n, d, now)
	c := &Clause{Text: segments.Format(n.src), Value: v}
	if next != never {
		c.Next = time.Unix(next, 0).UTC()
	}
	switch n.op {
	case opAnd, opOr, opNot:
		c.Text = map[opcode]string{opAnd: "all of", opOr: "any of", opNot: "not"}[n.op]
		for _, a := range n.args {
			c.Args = append(c.Args, e.explain(a, d, now))
		}
		if n.op == opNot {
			if _, ok := n.src.(*segments.Not); ok {
				if _, did := n.src.(*segments.Not).X.(*segments.Did); did {
					// "did not ..." reads as one clause; its child says the count.
					c.Text = segments.Format(n.src)
					c.Detail = c.Args[0].Detail
					c.Args = nil
				}
			}
		}
	case opDid:
		c.Detail = countDetail(n, d.timesOf(n.feat.id), now)
	case opFirst:
		c.Detail = momentDetail("first session", d.first, now)
	case opLastSeen:
		c.Detail = momentDetail("last seen", d.last, now)
	case opLastTag:
		c.Detail = momentDetail("last", newest(d.timesOf(n.feat.id)), now)
	case opAttr, opUnchanged:
		a := d.attr(n.feat.id)
		if a == nil || a.typ == tag.TypeInvalid {
			c.Detail = "not set"
			break
		}
		c.Detail = fmt.Sprintf("value %s set %s", quoteValue(a.value()), ago(a.at, now))
		if n.op == opUnchanged {
			c.Detail = fmt.Sprintf("value %s unchanged since %s", quoteValue(a.value()), ago(a.since, now))
		}
	case opRef:
		if v {
			c.Detail = "member"
		} else {
			c.Detail = "not a member"
		}
	case opSample:
		h := e.sampleHash(n.salt, d)
		c.Detail = fmt.Sprintf("hash %#08x, kept below %#08x", h, n.limit)
	}
	return c
}

func countDetail(n *cnode, ts []uint32, now int64) string {
	var in []string
	for i := len(ts) - 1; i >= 0; i-- {
		if n.win > 0 && unix(ts[i]) <= now-n.win {
			break
		}
		in = append(in, time.Unix(unix(ts[i]), 0).UTC().Format(time.RFC3339))
	}
	for i, j := 0, len(in)-1; i < j; i, j = i+1, j-1 {
		in[i], in[j] = in[j], in[i]
	}
	where := "kept"
	if n.win > 0 {
		where = "in window"
	}
	more := ""
	if len(in) == n.feat.k && n.feat.k > 0 {
		more = " or more (the engine keeps the newest it needs)"
	}
	if len(in) == 0 {
		return "0 " + where
	}
	return fmt.Sprintf("%d%s %s: %s", len(in), more, where, strings.Join(in, ", "))
}

func momentDetail(what string, m uint32, now int64) string {
	if m == 0 {
		return "no " + what + " known"
	}
	return what + " " + ago(m, now)
}

func ago(m uint32, now int64) string {
	t := unix(m)
	return fmt.Sprintf("%s (%s ago)", time.Unix(t, 0).UTC().Format(time.RFC3339), human(now-t))
}

// human writes a number of seconds as days, hours, minutes and seconds:
// "19d1h", "2h30m", "0s".
func human(s int64) string {
	if s <= 0 {
		return "0s"
	}
	var b strings.Builder
	for _, u := range [...]struct {
		n    int64
		name string
	}{{86400, "d"}, {3600, "h"}, {60, "m"}, {1, "s"}} {
		if s >= u.n {
			fmt.Fprintf(&b, "%d%s", s/u.n, u.name)
			s %= u.n
		}
	}
	return b.String()
}

func quoteValue(v tag.Value) string {
	if v.Type == tag.TypeString {
		return segments.Quote(v.Str)
	}
	return v.Text()
}

// String renders the explanation as an indented tree.
func (x *Explanation) String() string {
	var b strings.Builder
	state := "out of"
	if x.Member {
		state = "in"
	}
	fmt.Fprintf(&b, "device %q is %s segment %q of app %q at %s", x.DeviceID, state, x.Segment, x.App, x.Time.Format(time.RFC3339))
	if !x.Known {
		b.WriteString(" (no state for this device)")
	}
	if x.Value != x.Member {
		fmt.Fprintf(&b, " (evaluates to %t now: a timer has not fired yet)", x.Value)
	}
	b.WriteByte('\n')
	writeClause(&b, x.Root, 1)
	if x.History != "" {
		b.WriteString("  history: " + x.History + "\n")
	}
	return b.String()
}

// historyText says in a sentence what history a segment's status covers.
func historyText(st Status) string {
	switch {
	case st.Filling:
		f := st.Fill
		since := "all event times"
		if !f.Since.IsZero() {
			since = "event times since " + f.Since.Format(time.RFC3339)
		}
		total := ""
		if f.Total >= 0 {
			total = fmt.Sprintf(" of %d", f.Total)
		}
		return fmt.Sprintf("being filled from the history store (input offsets below %d, %s): %d devices, %d%s records so far; until then the membership is the one from before the segment changed",
			f.Before, since, f.Devices, f.Records, total)
	case st.Complete && st.Fill.Before >= 0:
		return fmt.Sprintf("complete: the records before input offset %d were filled from the history store, the later ones counted live", st.Fill.Before)
	case st.Complete:
		return "complete: every record of the partition counted"
	}
	return "incomplete: " + st.Why
}

func writeClause(b *strings.Builder, c *Clause, depth int) {
	b.WriteString(strings.Repeat("  ", depth))
	fmt.Fprintf(b, "%t: %s", c.Value, c.Text)
	if c.Detail != "" {
		b.WriteString(" — ")
		b.WriteString(c.Detail)
	}
	if !c.Next.IsZero() {
		fmt.Fprintf(b, " [can change at %s]", c.Next.Format(time.RFC3339))
	}
	b.WriteByte('\n')
	for _, a := range c.Args {
		writeClause(b, a, depth+1)
	}
}
