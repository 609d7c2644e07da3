package collector

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/pipeline/tagplan"
)

// App is one app that may send data, with its write keys, tag plan and
// rate limit.
type App struct {
	ID        string
	WriteKeys []string
	Plan      *tagplan.Plan // nil: no plan, everything accepted
	RateLimit float64       // records per second; 0: unlimited
	Burst     float64       // records; default: one second of RateLimit
	// Origins are the web origins ("https://www.example.com") whose pages
	// may call the collector from a browser with this app's keys, or "*"
	// for any. Empty: any origin on the tracking endpoints, none on
	// /v1/inapp (cors.go).
	Origins []string

	bucket  *bucket
	origins [numClasses]originSet
}

// Apps finds apps by write key. Read-only after construction: safe for
// concurrent use.
type Apps struct {
	byKey map[[32]byte]*App
	list  []*App
	// What some app allows, for the answers given before the app is known
	// (preflights, 401s): the union of the apps' origins per class of
	// endpoint.
	origins [numClasses]originSet
}

// NewApps indexes the apps by their write keys.
func NewApps(apps ...*App) (*Apps, error) {
	a := &Apps{byKey: map[[32]byte]*App{}}
	ids := map[string]bool{}
	for _, app := range apps {
		if app.ID == "" || len(app.ID) > tag.MaxIDLen {
			return nil, fmt.Errorf("apps: app id %q must have 1 to %d bytes", app.ID, tag.MaxIDLen)
		}
		if ids[app.ID] {
			return nil, fmt.Errorf("apps: app %q listed twice", app.ID)
		}
		ids[app.ID] = true
		if len(app.WriteKeys) == 0 {
			return nil, fmt.Errorf("apps: app %q has no write key", app.ID)
		}
		if app.Plan != nil && app.Plan.App != app.ID {
			return nil, fmt.Errorf("apps: app %q has the tag plan of app %q", app.ID, app.Plan.App)
		}
		if app.RateLimit < 0 {
			return nil, fmt.Errorf("apps: app %q: negative rate limit", app.ID)
		}
		app.bucket = newBucket(app.RateLimit, app.Burst)
		origins, err := parseOrigins(app.Origins)
		if err != nil {
			return nil, fmt.Errorf("apps: app %q: %w", app.ID, err)
		}
		app.origins = origins
		for c := range a.origins {
			a.origins[c].add(app.origins[c])
		}
		for _, k := range app.WriteKeys {
			if len(k) < 8 {
				return nil, fmt.Errorf("apps: app %q: write keys have at least 8 characters", app.ID)
			}
			h := sha256.Sum256([]byte(k))
			if _, dup := a.byKey[h]; dup {
				return nil, fmt.Errorf("apps: app %q: write key used twice", app.ID)
			}
			a.byKey[h] = app
		}
		a.list = append(a.list, app)
	}
	return a, nil
}

// ByKey returns the app of a write key. Keys are compared by their SHA-256,
// so lookups take the same time whatever the key.
func (a *Apps) ByKey(key string) (*App, bool) {
	app, ok := a.byKey[sha256.Sum256([]byte(key))]
	return app, ok
}

// ByID returns the app with the given id.
func (a *Apps) ByID(id string) (*App, bool) {
	for _, app := range a.list {
		if app.ID == id {
			return app, true
		}
	}
	return nil, false
}

// List returns the apps.
func (a *Apps) List() []*App { return a.list }

type appsFile struct {
	Apps []struct {
		ID        string   `yaml:"id"`
		WriteKeys []string `yaml:"write_keys"`
		TagPlan   string   `yaml:"tag_plan"`
		RateLimit float64  `yaml:"rate_limit"`
		Burst     float64  `yaml:"burst"`
		Origins   []string `yaml:"origins"`
	} `yaml:"apps"`
}

// LoadApps reads an apps file: a YAML list of apps with their write keys,
// tag plan file (relative to the apps file), rate limit and the web origins
// allowed to call from browsers.
func LoadApps(path string) (*Apps, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read apps file: %w", err)
	}
	return ParseApps(path, data, func(p string) ([]byte, error) {
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(path), p)
		}
		return os.ReadFile(p)
	})
}

// ParseApps parses an apps file; readPlan reads a tag plan by its path.
func ParseApps(name string, data []byte, readPlan func(string) ([]byte, error)) (*Apps, error) {
	var f appsFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(f.Apps) == 0 {
		return nil, fmt.Errorf("%s: no apps", name)
	}
	var apps []*App
	var errs []error
	for _, a := range f.Apps {
		app := &App{ID: a.ID, WriteKeys: a.WriteKeys, RateLimit: a.RateLimit, Burst: a.Burst, Origins: a.Origins}
		if a.TagPlan != "" {
			raw, err := readPlan(a.TagPlan)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: app %q: read tag plan: %w", name, a.ID, err))
				continue
			}
			if app.Plan, err = tagplan.Parse(a.TagPlan, raw); err != nil {
				errs = append(errs, fmt.Errorf("%s: app %q: %w", name, a.ID, err))
				continue
			}
		}
		apps = append(apps, app)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return NewApps(apps...)
}
