package tagplan

import (
	"slices"
	"testing"

	"github.com/openengage/engage/pipeline/tag"
)

func TestLookups(t *testing.T) {
	p := mustParseFile(t, "testdata/news.yaml")
	for _, c := range []struct {
		kind tag.Kind
		name string
		want bool
	}{
		{tag.KindActivityStart, "login", true},
		{tag.KindActivityEnd, "login", true},
		{tag.KindJob, "login", true},
		{tag.KindJobStart, "login", true},
		{tag.KindEvent, "login", false}, // an activity and a job, not an event
		{tag.KindEvent, "article_read", true},
		{tag.KindError, "connection_failure", true},
		{tag.KindCrash, "anything", true}, // crashes: any
		{tag.KindSessionStart, "", false},
		{tag.KindAppInfo, "level", false},
	} {
		if got := p.HasTag(c.kind, c.name); got != c.want {
			t.Errorf("HasTag(%v, %q) = %v, want %v", c.kind, c.name, got, c.want)
		}
	}
	if got, want := p.TagNames(tag.KindEvent), []string{"article_read", "logged_in", "shared"}; !slices.Equal(got, want) {
		t.Errorf("TagNames(event) = %q, want %q", got, want)
	}
	if got := p.TagNames(tag.KindSessionStart); got != nil {
		t.Errorf("TagNames(session_start) = %q, want nil", got)
	}
	if !p.AnyCrash() {
		t.Error("AnyCrash() = false, want true")
	}

	for _, c := range []struct {
		kind      tag.Kind
		name, key string
		want      tag.Type
		ok        bool
	}{
		{tag.KindEvent, "article_read", "category", tag.TypeString, true},
		{tag.KindEvent, "article_read", "premium", tag.TypeBool, true},
		{tag.KindEvent, "article_read", "ab_group", tag.TypeString, true}, // global
		{tag.KindEvent, "shared", "category", tag.TypeInvalid, false},
		{tag.KindEvent, "undeclared", "ab_group", tag.TypeString, true},
		{tag.KindCrash, "oom", "code", tag.TypeInvalid, false},
	} {
		got, ok := p.ExtraType(c.kind, c.name, c.key)
		if got != c.want || ok != c.ok {
			t.Errorf("ExtraType(%v, %q, %q) = %v, %v, want %v, %v", c.kind, c.name, c.key, got, ok, c.want, c.ok)
		}
	}
	if got, want := p.ExtraKeys(tag.KindActivityStart, "article"), []string{"ab_group", "category", "words"}; !slices.Equal(got, want) {
		t.Errorf("ExtraKeys(activity, article) = %q, want %q", got, want)
	}
	if typ, ok := p.AppInfoType("subscription_expiry"); typ != tag.TypeDate || !ok {
		t.Errorf("AppInfoType(subscription_expiry) = %v, %v, want date, true", typ, ok)
	}
	if _, ok := p.AppInfoType("nope"); ok {
		t.Error("AppInfoType(nope) declared, want not")
	}
	if got, want := p.AppInfoKeys(), []string{"level", "logged_in", "subscription_expiry", "topics"}; !slices.Equal(got, want) {
		t.Errorf("AppInfoKeys() = %q, want %q", got, want)
	}
}

func TestLookupsOnNilPlan(t *testing.T) {
	var p *Plan
	if p.HasTag(tag.KindEvent, "x") || p.AnyCrash() || p.TagNames(tag.KindEvent) != nil || p.ExtraKeys(tag.KindEvent, "x") != nil || p.AppInfoKeys() != nil {
		t.Error("a nil plan declares something")
	}
	if _, ok := p.ExtraType(tag.KindEvent, "x", "k"); ok {
		t.Error("a nil plan declares an extra")
	}
	if _, ok := p.AppInfoType("k"); ok {
		t.Error("a nil plan declares an app_info key")
	}
}

func TestSectionName(t *testing.T) {
	for k, want := range map[tag.Kind]string{tag.KindActivityStart: "activity", tag.KindEvent: "event", tag.KindJob: "job", tag.KindError: "error", tag.KindCrash: "crash"} {
		if got, ok := SectionName(k); got != want || !ok {
			t.Errorf("SectionName(%v) = %q, %v, want %q", k, got, ok, want)
		}
	}
	if _, ok := SectionName(tag.KindSessionStart); ok {
		t.Error("SectionName(session_start) ok, want not")
	}
}

func TestSuggestExported(t *testing.T) {
	options := []string{"logged_in", "login", "article_read"}
	for _, c := range []struct {
		in, want string
		ok       bool
	}{
		{"loged_in", "logged_in", true},
		{"logn", "login", true},
		{"article-read", "article_read", true},
		{"purchase", "", false},
		{"lo", "", false}, // too short to be a typo of anything
	} {
		got, ok := Suggest(c.in, options)
		if got != c.want || ok != c.ok {
			t.Errorf("Suggest(%q) = %q, %v, want %q, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}
