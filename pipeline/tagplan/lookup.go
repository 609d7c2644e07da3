package tagplan

import (
	"maps"
	"slices"

	"github.com/openengage/engage/pipeline/tag"
)

// The look-ups below answer what a plan declares, for the segment checker
// and other readers that hold an expression (not a record) to a plan. They
// answer for p as declared: a nil plan declares nothing, so they return
// false and nil on it (a caller that treats a nil plan as "accept
// everything" tests for nil itself).

// HasTag reports whether p declares a tag of kind k named name. Activity
// kinds are looked up under activities, job kinds under jobs, events,
// errors and crashes under their sections; with `crashes: any` every crash
// name is declared. Kinds that a plan does not list by name (sessions,
// app-info, device info, push) are never declared.
func (p *Plan) HasTag(k tag.Kind, name string) bool {
	if p == nil {
		return false
	}
	sec, ok := sectionOf(k)
	if !ok {
		return false
	}
	if _, ok := p.tags[sec][name]; ok {
		return true
	}
	return sec == secCrashes && p.anyCrash
}

// TagNames returns the names p declares for kind k, sorted: those of the
// section that lists k (see HasTag). With `crashes: any` it returns the
// crash names listed anyway, if any.
func (p *Plan) TagNames(k tag.Kind) []string {
	if p == nil {
		return nil
	}
	sec, ok := sectionOf(k)
	if !ok {
		return nil
	}
	return slices.Sorted(maps.Keys(p.tags[sec]))
}

// AnyCrash reports whether p allows every crash name (`crashes: any`, the
// default). The extras of a crash that is allowed this way but not listed
// are not declared one by one: only the global extras are.
func (p *Plan) AnyCrash() bool { return p != nil && p.anyCrash }

// ExtraType returns the declared type of the extras key on the tag of kind
// k named name: the tag's own declaration, else the global extras'. It
// returns false if neither declares key (or the tag is not declared and
// key is not global).
func (p *Plan) ExtraType(k tag.Kind, name, key string) (tag.Type, bool) {
	if p == nil {
		return tag.TypeInvalid, false
	}
	if sec, ok := sectionOf(k); ok {
		if t, ok := p.tags[sec][name][key]; ok {
			return t, true
		}
	}
	t, ok := p.extras[key]
	return t, ok
}

// ExtraKeys returns the extras keys allowed on the tag of kind k named
// name, its own and the global ones, sorted and without repeats.
func (p *Plan) ExtraKeys(k tag.Kind, name string) []string {
	if p == nil {
		return nil
	}
	keys := slices.Collect(maps.Keys(p.extras))
	if sec, ok := sectionOf(k); ok {
		keys = slices.AppendSeq(keys, maps.Keys(p.tags[sec][name]))
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// AppInfoType returns the declared type of the app_info key.
func (p *Plan) AppInfoType(key string) (tag.Type, bool) {
	if p == nil {
		return tag.TypeInvalid, false
	}
	t, ok := p.appInfo[key]
	return t, ok
}

// AppInfoKeys returns the declared app_info keys, sorted.
func (p *Plan) AppInfoKeys() []string {
	if p == nil {
		return nil
	}
	return slices.Sorted(maps.Keys(p.appInfo))
}

// SectionName names the section that lists tags of kind k, the way marks
// and errors name one of its tags: activity, event, job, error or crash.
// It returns false for kinds that a plan does not list by name.
func SectionName(k tag.Kind) (string, bool) {
	sec, ok := sectionOf(k)
	if !ok {
		return "", false
	}
	return sectionMarks[sec], true
}

// Suggest returns the option closest to s when s is likely a typo of it
// (at most two edits away, and s longer than the distance), for "did you
// mean" hints; false when no option is close enough.
func Suggest(s string, options []string) (string, bool) { return closest(s, options) }
