package examples_test

// The example folders (README.md): each loads with load.sh -n, offline,
// and holds to the rules that let a test suite compute its recipients
// (one control group of 5% to 20% and a goal per campaign, on_entry
// triggers and one one-off send, segment names unique per app, ...).

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/openengage/engage/pipeline/tagplan"
	"github.com/openengage/engage/segments"
	"github.com/openengage/engage/triggers"
)

// exampleApp is an app of apps.yaml, with its tag plan.
type exampleApp struct {
	WriteKeys []string `yaml:"write_keys"`
	TagPlan   string   `yaml:"tag_plan"`
	Plan      *tagplan.Plan
}

// loadApps reads apps.yaml and the tag plans it names (the collector
// reads the same file: engage segments check -apps apps.yaml).
func loadApps(t *testing.T) map[string]*exampleApp {
	t.Helper()
	data, err := os.ReadFile("apps.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Apps []struct {
			ID         string `yaml:"id"`
			exampleApp `yaml:",inline"`
			RateLimit  float64 `yaml:"rate_limit"`
			Burst      float64 `yaml:"burst"`
		} `yaml:"apps"`
	}
	if err := yaml.Unmarshal(data, &f); err != nil {
		t.Fatalf("apps.yaml: %v", err)
	}
	apps := map[string]*exampleApp{}
	for _, a := range f.Apps {
		if _, dup := apps[a.ID]; dup {
			t.Errorf("apps.yaml: app %s twice", a.ID)
		}
		app := a.exampleApp
		if app.TagPlan != "" {
			if app.Plan, err = tagplan.ParseFile(app.TagPlan); err != nil {
				t.Errorf("apps.yaml: app %s: %v", a.ID, err)
			} else if app.Plan.App != a.ID {
				t.Errorf("apps.yaml: app %s: the plan %s is app %s's", a.ID, app.TagPlan, app.Plan.App)
			}
		}
		apps[a.ID] = &app
	}
	return apps
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// engage builds the engage binary once, outside the tree.
func engage(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "examples-engage-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(buildDir, "engage")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/engage")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/engage: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// loadSh runs sh load.sh ARGS with the built binary, offline.
func loadSh(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin := engage(t)
	cmd := exec.Command("sh", append([]string{"load.sh"}, args...)...)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ENGAGE") && !strings.HasPrefix(kv, "EXAMPLES_") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "ENGAGE="+bin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestLoadCheckAll(t *testing.T) {
	out, err := loadSh(t, "-n", "all")
	if err != nil {
		t.Fatalf("sh load.sh -n all: %v\n%s", err, out)
	}
	for _, f := range indexFolders(t) {
		if !strings.Contains(out, "== "+f.abs+" (app "+f.app+")") {
			t.Errorf("load.sh -n all did not check %s:\n%s", f.name, out)
		}
	}
	if !strings.HasSuffix(strings.TrimSpace(out), "ok") {
		t.Errorf("load.sh -n all does not end with ok:\n%s", out)
	}
}

type folder struct {
	name, abs, app string
}

var indexRow = regexp.MustCompile(`^\|\s*\[([a-z0-9-]+)\]\(([a-z0-9-]+)/?\)\s*\|\s*([a-z]+)\s*\|`)

// indexFolders reads the folders of the table in README.md.
func indexFolders(t *testing.T) []folder {
	t.Helper()
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var fs []folder
	for i, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "| [") {
			continue
		}
		m := indexRow.FindStringSubmatch(line)
		if m == nil || m[1] != m[2] {
			t.Errorf("README.md:%d: a row should start | [folder](folder/) | app |: %s", i+1, line)
			continue
		}
		abs, _ := filepath.Abs(m[1])
		fs = append(fs, folder{name: m[1], abs: abs, app: m[3]})
	}
	if len(fs) == 0 {
		t.Fatal("README.md lists no folder")
	}
	return fs
}

func files(t *testing.T, dir, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(m)
	return m
}

func TestIndex(t *testing.T) {
	listed := map[string]bool{}
	for _, f := range indexFolders(t) {
		if listed[f.name] {
			t.Errorf("README.md lists %s twice", f.name)
		}
		listed[f.name] = true
		for _, need := range []string{"README.md", "app"} {
			if st, err := os.Stat(filepath.Join(f.name, need)); err != nil || !st.Mode().IsRegular() {
				t.Errorf("%s: no %s", f.name, need)
			}
		}
		if app, _ := os.ReadFile(filepath.Join(f.name, "app")); strings.TrimSpace(string(app)) != f.app {
			t.Errorf("%s/app says %q, README.md %q", f.name, strings.TrimSpace(string(app)), f.app)
		}
		if len(files(t, f.name, "segments/*.seg")) == 0 {
			t.Errorf("%s: no segments/*.seg", f.name)
		}
		if len(files(t, f.name, "campaigns/*.yaml")) == 0 {
			t.Errorf("%s: no campaigns/*.yaml", f.name)
		}
	}
	// Every folder with an app file is in the index.
	for _, app := range files(t, ".", "*/app") {
		if dir := filepath.Dir(app); !listed[dir] {
			t.Errorf("folder %s is not in README.md's table", dir)
		}
	}
}

// TestExamples checks what load.sh -n cannot offline: each campaign
// against its folder's segments (names, the records that enter them) and
// the contract of the examples.
func TestExamples(t *testing.T) {
	apps := loadApps(t)
	keys := map[string]string{"news": "news-write-key-prod", "game": "game-write-key-prod", "shop": "shop-write-key-prod", "bank": "bank-write-key-prod"}
	for id, key := range keys {
		a, ok := apps[id]
		switch {
		case !ok:
			t.Errorf("apps.yaml: no app %s", id)
		case a.Plan == nil:
			t.Errorf("apps.yaml: app %s has no tag plan", id)
		case !slices.Contains(a.WriteKeys, key):
			t.Errorf("apps.yaml: app %s lacks the write key %s", id, key)
		}
	}

	type segDef struct{ folder, text, canon string }
	segsByApp := map[string]map[string]segDef{}
	campsByApp := map[string]map[string]string{}
	var once, recurring, capsFolders []string
	var fr bool
	now := time.Now()
	for _, f := range indexFolders(t) {
		a, ok := apps[f.app]
		if !ok || a.Plan == nil {
			t.Errorf("%s: app %q has no plan in apps.yaml", f.name, f.app)
			continue
		}
		if segsByApp[f.app] == nil {
			segsByApp[f.app], campsByApp[f.app] = map[string]segDef{}, map[string]string{}
		}
		local := map[string]*segments.Segment{}
		for _, file := range files(t, f.name, "segments/*.seg") {
			name := strings.TrimSuffix(filepath.Base(file), ".seg")
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			expr, err := segments.Parse(string(data))
			if err != nil {
				t.Errorf("%s: %v", file, err)
				continue
			}
			seg := &segments.Segment{App: f.app, Name: name, Text: string(data), Expr: expr}
			if err := segments.Check(seg, a.Plan, func(string) bool { return false }); err != nil {
				t.Errorf("%s: %v", file, err)
			}
			if len(segments.Refs(expr)) > 0 {
				t.Errorf("%s: refers to other segments: load.sh -n checks each segment alone", file)
			}
			local[name] = seg
			d := segDef{folder: f.name, text: string(data), canon: segments.Format(expr)}
			if prev, ok := segsByApp[f.app][name]; ok && prev.text != d.text {
				t.Errorf("%s: segment %q of app %s is defined differently in %s:\n  %s\n  %s", file, name, f.app, prev.folder, prev.canon, d.canon)
			}
			segsByApp[f.app][name] = d
		}
		if _, err := os.Stat(filepath.Join(f.name, "caps.txt")); err == nil {
			capsFolders = append(capsFolders, f.name)
		}
		for _, file := range files(t, f.name, "campaigns/*.yaml") {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			c, pos, err := triggers.ParseWithPositions(file, data)
			if err != nil {
				t.Errorf("%v", err)
				continue
			}
			if err := triggers.Check(c, pos, triggers.Env{Segments: local, Plan: a.Plan, Now: now}); err != nil {
				t.Errorf("%v", err)
			}
			stem := strings.TrimSuffix(filepath.Base(file), ".yaml")
			switch {
			case c.App != f.app:
				t.Errorf("%s: app %q, the folder's is %q", file, c.App, f.app)
			case c.Name != stem:
				t.Errorf("%s: name %q is not the file's name %q", file, c.Name, stem)
			}
			if prev, ok := campsByApp[f.app][c.Name]; ok {
				t.Errorf("%s: campaign %q of app %s is also in %s", file, c.Name, f.app, prev)
			}
			campsByApp[f.app][c.Name] = file
			if c.Who.Control < 5 || c.Who.Control > 20 {
				t.Errorf("%s: control %g%%, not between 5%% and 20%%", file, c.Who.Control)
			}
			if c.Goal == nil || c.Goal.Event == "" {
				t.Errorf("%s: no goal", file)
			}
			if c.When.DefaultTZ == "" {
				t.Errorf("%s: no default_time_zone", file)
			}
			if c.Who.Sample != 0 && c.Who.Sample != 100 && f.name != "rate-app" {
				t.Errorf("%s: a sample (%g%%) outside rate-app", file, c.Who.Sample)
			}
			if len(c.Who.Variants) > 0 && c.Name != "welcome_d2" {
				t.Errorf("%s: variants outside welcome_d2", file)
			}
			if c.Limit.Priority != 0 {
				t.Errorf("%s: a priority: the examples leave it unset", file)
			}
			if c.What.Content["en"] == nil {
				t.Errorf("%s: no content in en", file)
			}
			if c.What.Content["fr"] != nil {
				fr = true
			}
			if c.What.Channel == triggers.ChannelInApp {
				for loc, m := range c.What.Content {
					if len(m.Activities) == 0 {
						t.Errorf("%s: in-app content %s shows on any screen: name its activities", file, loc)
					}
				}
			}
			switch c.When.Kind {
			case triggers.Once:
				once = append(once, c.Name)
				if !c.When.LocalTime {
					t.Errorf("%s: a once send without local_time: true", file)
				}
				if !bytes.Contains(data, []byte("EXAMPLES_ONCE_AT")) {
					t.Errorf("%s: the once send's at: line should carry the EXAMPLES_ONCE_AT marker that load.sh looks for", file)
				}
			case triggers.Recurring:
				recurring = append(recurring, c.Name)
			}
		}
	}
	if len(once) != 1 || once[0] != "news_alerts" {
		t.Errorf("once campaigns %v: want exactly news_alerts", once)
	}
	if len(recurring) > 1 {
		t.Errorf("recurring campaigns %v: at most one", recurring)
	}
	if len(capsFolders) > 1 {
		t.Errorf("caps.txt in %v: at most one folder sets caps", capsFolders)
	}
	if !fr {
		t.Error("no campaign has content in fr")
	}
	for _, name := range []string{"welcome_d2", "welcome_d5", "welcome_d10", "welcome_d15"} {
		if campsByApp["news"][name] == "" {
			t.Errorf("the welcome series' campaign %s is missing", name)
		}
	}
}

// copyFolder copies an example folder into a temporary directory.
func copyFolder(t *testing.T, name string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), name)
	if err := os.CopyFS(dst, os.DirFS(name)); err != nil {
		t.Fatal(err)
	}
	return dst
}

func replaceIn(t *testing.T, file, old, new string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(old)) {
		t.Fatalf("%s has no %q", file, old)
	}
	if err := os.WriteFile(file, bytes.Replace(data, []byte(old), []byte(new), 1), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A broken example fails load.sh -n, naming the file and the mistake's
// line and column.
func TestLoadCheckBroken(t *testing.T) {
	t.Run("segment", func(t *testing.T) {
		dir := copyFolder(t, "onboarding-gap")
		seg := filepath.Join(dir, "segments", "onboarding_gap.seg")
		replaceIn(t, seg, `did not event "logged_in"`, `did not event "loged_in"`)
		out, err := loadSh(t, "-n", dir)
		if err == nil {
			t.Fatalf("load.sh -n passed a segment with an unknown event:\n%s", out)
		}
		want := regexp.MustCompile(regexp.QuoteMeta(seg) + `:4:7: event "loged_in" is not in the tag plan of app "news"`)
		if !want.MatchString(out) {
			t.Errorf("load.sh -n should say %s:\n%s", want, out)
		}
		if strings.Contains(out, "campaigns check") || strings.Contains(out, "onboarding_gap.yaml: ok") {
			t.Errorf("load.sh -n went on after the failure:\n%s", out)
		}
	})
	t.Run("campaign", func(t *testing.T) {
		dir := copyFolder(t, "promote-content")
		camp := filepath.Join(dir, "campaigns", "promote_sport.yaml")
		replaceIn(t, camp, "goal: {event: article_read", "goal: {event: article_red")
		out, err := loadSh(t, "-n", dir)
		if err == nil {
			t.Fatalf("load.sh -n passed a campaign with an unknown goal event:\n%s", out)
		}
		want := regexp.MustCompile(regexp.QuoteMeta(camp) + `:\d+:\d+: event "article_red" is not in the tag plan`)
		if !want.MatchString(out) {
			t.Errorf("load.sh -n should say %s:\n%s", want, out)
		}
	})
	t.Run("no folder", func(t *testing.T) {
		out, err := loadSh(t, "-n", "welcome-series", "no-such-example")
		if err == nil || !strings.Contains(out, "no-such-example") {
			t.Fatalf("load.sh -n with a missing folder: %v\n%s", err, out)
		}
		if strings.Contains(out, "== ") {
			t.Errorf("load.sh -n checked folders before failing on the missing one:\n%s", out)
		}
	})
}
