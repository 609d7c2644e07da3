package analytics_test

import (
	"cmp"
	"slices"
	"time"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/sinks/analytics"
)

// section is the plan section of a record kind, "" for kinds a plan does
// not name.
func section(k tag.Kind) string {
	switch k {
	case tag.KindActivityStart, tag.KindActivityEnd:
		return "activity"
	case tag.KindEvent:
		return "event"
	case tag.KindJob, tag.KindJobStart, tag.KindJobEnd:
		return "job"
	case tag.KindError:
		return "error"
	case tag.KindCrash:
		return "crash"
	}
	return ""
}

func (tr *truth) coverage(app string, from, to time.Time, plan analytics.PlannedTags) analytics.Coverage {
	type version struct {
		records int
		tags    map[analytics.PlannedTag]*analytics.TagCoverage
		marks   map[string]*analytics.MarkCoverage
	}
	vs := map[string]*version{}
	for _, r := range tr.of(app) {
		if !within(dayOf(r.Time), from, to) {
			continue
		}
		label := r.AppVersion
		if label == "" {
			label = analytics.UnknownVersion
		}
		v := vs[label]
		if v == nil {
			v = &version{tags: map[analytics.PlannedTag]*analytics.TagCoverage{}, marks: map[string]*analytics.MarkCoverage{}}
			vs[label] = v
		}
		v.records++
		at := r.Time.UTC()
		if sec := section(r.Kind); sec != "" {
			k := analytics.PlannedTag{Kind: sec, Name: r.Name}
			t := v.tags[k]
			if t == nil {
				first, last := at, at
				t = &analytics.TagCoverage{Kind: sec, Name: r.Name, Seen: true, FirstSeen: &first, LastSeen: &last}
				v.tags[k] = t
			}
			t.Records++
			*t.FirstSeen, *t.LastSeen = minT(*t.FirstSeen, at), maxT(*t.LastSeen, at)
		}
		seen := map[string]bool{}
		for _, m := range r.Unplanned {
			if seen[m] {
				continue
			}
			seen[m] = true
			mc := v.marks[m]
			if mc == nil {
				mc = &analytics.MarkCoverage{Mark: m, FirstSeen: at, LastSeen: at}
				v.marks[m] = mc
			}
			mc.Records++
			mc.FirstSeen, mc.LastSeen = minT(mc.FirstSeen, at), maxT(mc.LastSeen, at)
		}
	}
	res := analytics.Coverage{Range: rng(app, from, to), AnyCrash: plan.AnyCrash, Versions: []analytics.VersionCoverage{}}
	planned := map[analytics.PlannedTag]bool{}
	for _, p := range plan.Tags {
		planned[p] = true
	}
	for label, v := range vs {
		out := analytics.VersionCoverage{AppVersion: label, Records: uint64(v.records),
			Planned: []analytics.TagCoverage{}, Unplanned: []analytics.TagCoverage{}, Marks: []analytics.MarkCoverage{}}
		for p := range planned {
			if t := v.tags[p]; t != nil {
				out.Planned = append(out.Planned, *t)
			} else {
				out.Planned = append(out.Planned, analytics.TagCoverage{Kind: p.Kind, Name: p.Name})
			}
		}
		for k, t := range v.tags {
			switch {
			case planned[k]:
			case k.Kind == "crash" && plan.AnyCrash:
				out.Planned = append(out.Planned, *t)
			default:
				out.Unplanned = append(out.Unplanned, *t)
			}
		}
		for _, m := range v.marks {
			out.Marks = append(out.Marks, *m)
		}
		byName := func(a, b analytics.TagCoverage) int {
			return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Name, b.Name))
		}
		slices.SortFunc(out.Planned, byName)
		slices.SortFunc(out.Unplanned, func(a, b analytics.TagCoverage) int { return cmp.Or(cmp.Compare(b.Records, a.Records), byName(a, b)) })
		slices.SortFunc(out.Marks, func(a, b analytics.MarkCoverage) int {
			return cmp.Or(cmp.Compare(b.Records, a.Records), cmp.Compare(a.Mark, b.Mark))
		})
		res.Versions = append(res.Versions, out)
	}
	slices.SortFunc(res.Versions, func(a, b analytics.VersionCoverage) int { return cmp.Compare(a.AppVersion, b.AppVersion) })
	return res
}
