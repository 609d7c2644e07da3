package triggers

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/segments"
)

// templates checks the texts of a message: their syntax (for campaigns
// that were not parsed from a file) and each field against the tag plan,
// the trigger and the missing policy.
func (k *checker) templates(m *Message, path string) {
	messageTexts(m, func(rel, text string) {
		if text == "" {
			return
		}
		at := path + "." + rel
		t, err := ParseTemplate(text)
		if err != nil {
			for _, e := range err.(Errors) {
				k.errs = append(k.errs, k.pos.placeError(at, text, e.Line, e.Col, e.Msg))
			}
			return
		}
		for _, f := range t.fields {
			if msg := k.fieldProblem(&f); msg != "" {
				k.errs = append(k.errs, k.pos.placeError(at, text, f.Line, f.Col, msg))
			}
		}
	})
}

// fieldProblem says what is wrong with a template field, or "".
func (k *checker) fieldProblem(f *Field) string {
	plan := k.env.Plan
	switch f.Source {
	case FromAppInfo:
		if plan != nil {
			if _, ok := plan.AppInfoType(f.Key); !ok {
				return fmt.Sprintf("app_info key %q is not %s%s", f.Key, k.inPlan(), didYouMean(f.Key, plan.AppInfoKeys()))
			}
		}
	case FromTrigger:
		if msg := k.triggerProblem(f.Key); msg != "" {
			return msg
		}
	}
	if k.c.What.Missing == MissingDefault && !f.HasDefault {
		return fmt.Sprintf("with missing: default every field needs a default: write {{%s | default \"…\"}}, or set missing: skip to skip the devices without a value", f.name)
	}
	return ""
}

// triggerKeys is what {{trigger.<key>}} can read in a campaign.
type triggerKeys struct {
	none  string   // why no record can start a send ("" when some can)
	keys  []string // the extras keys the triggering records can carry, sorted
	known bool     // keys is known (a plan, and the segments' expressions or the whole plan)
	whose string   // which records keys are those of, for messages
}

// triggerProblem says what is wrong with {{trigger.key}}, or "".
func (k *checker) triggerProblem(key string) string {
	if k.trigger == nil {
		k.trigger = k.triggerKeys()
	}
	tk := k.trigger
	switch {
	case tk.none != "":
		return fmt.Sprintf("trigger.%s never has a value: %s", key, tk.none)
	case !tk.known || slices.Contains(tk.keys, key):
		return ""
	case len(tk.keys) == 0:
		return fmt.Sprintf("trigger.%s never has a value: %s carry no extras", key, tk.whose)
	}
	return fmt.Sprintf("trigger.%s never has a value: %s carry no extra %q (they carry %s)%s",
		key, tk.whose, key, strings.Join(tk.keys, ", "), didYouMean(key, tk.keys))
}

// tagRef names a tag a segment condition reads.
type tagRef struct {
	kind tag.Kind
	name string
}

// triggerKeys finds the extras of the records that can start a send: the
// records that make a device enter the campaign's segments (entryTags).
// Without the segments' expressions, every tag of the plan.
func (k *checker) triggerKeys() *triggerKeys {
	c, plan := k.c, k.env.Plan
	if c.When.Kind != OnEntry {
		return &triggerKeys{none: fmt.Sprintf("only on_entry campaigns have a triggering record, and this one sends %s", strings.ReplaceAll(string(c.When.Kind), "_", " "))}
	}
	if plan == nil {
		return &triggerKeys{}
	}
	tk := &triggerKeys{known: true}
	keys := map[string]bool{}
	if tags, known := k.entryTags(); known {
		if len(tags) == 0 {
			tk.none = fmt.Sprintf("the campaign's segments (%s) are entered as time passes or app-info changes, never on a record with extras", strings.Join(c.Who.Segments, ", "))
			return tk
		}
		var names []string
		for _, t := range tags {
			for _, key := range plan.ExtraKeys(t.kind, t.name) {
				keys[key] = true
			}
			word, _ := segments.KindWord(t.kind)
			if t.name != "" {
				word += " " + segments.Quote(t.name)
			}
			names = append(names, word)
		}
		slices.Sort(names)
		tk.whose = "the records that enter the campaign's segments (" + strings.Join(slices.Compact(names), ", ") + ")"
	} else {
		for _, kind := range []tag.Kind{tag.KindActivityStart, tag.KindEvent, tag.KindJob, tag.KindError, tag.KindCrash} {
			for _, name := range append(plan.TagNames(kind), "") {
				for _, key := range plan.ExtraKeys(kind, name) {
					keys[key] = true
				}
			}
		}
		tk.whose = "the records " + k.inPlan()
	}
	tk.keys = slices.Sorted(maps.Keys(keys))
	return tk
}

// entryTags returns the tags whose records can make a device enter the
// campaign's segments: those the segments' conditions name, outside a
// not, and through references to other segments; a session start for
// "first_session within …". known is false when a segment's expression
// is not known, or when any record can (last_seen within …). It may say
// more than can happen, never less: a key it lets through may still have
// no value at times, never the reverse.
func (k *checker) entryTags() (tags []tagRef, known bool) {
	known = k.env.Segments != nil
	seen := map[string]bool{}
	var visit func(name string)
	visit = func(name string) {
		if seen[name] || !known {
			return
		}
		seen[name] = true
		s := k.env.Segments[name]
		if s == nil || s.Expr == nil {
			known = false
			return
		}
		segments.Walk(s.Expr, func(n segments.Node) bool {
			switch n := n.(type) {
			case *segments.Not:
				return false // a record never enters a segment by matching a negated condition
			case *segments.Did:
				tags = append(tags, tagRef{n.Kind, n.Name})
			case *segments.Since:
				entersOnRecord := n.Range.Absolute || n.Range.Min == 0 // else only as time passes
				switch {
				case n.Moment == segments.MomentLastTag:
					tags = append(tags, tagRef{n.Kind, n.Name})
				case n.Moment == segments.MomentFirstSession && entersOnRecord:
					tags = append(tags, tagRef{tag.KindSessionStart, ""})
				case n.Moment == segments.MomentLastSeen && entersOnRecord:
					known = false // any record may be the one: every tag of the plan
				}
			case *segments.Ref:
				visit(n.Name)
			}
			return true
		})
	}
	for _, name := range k.c.Who.Segments {
		visit(name)
	}
	return tags, known
}
