package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/triggers"
)

// Campaigns live in the configuration topic next to segments: key
// "campaign/<app>/<name>", value a Stored as JSON (the file as written, so
// that its comments and positions survive), a tombstone once deleted. A
// campaign's version is the offset of its message: every instance agrees
// on it. An app's frequency caps: key "caps/<app>", value AppCaps as JSON.
const (
	CampaignKeyPrefix = "campaign/"
	CapsKeyPrefix     = "caps/"
)

// Stored is a campaign as the configuration topic holds it.
type Stored struct {
	App       string    `json:"app"`
	Name      string    `json:"name"`
	File      string    `json:"file"`   // the name it was put from
	Source    string    `json:"source"` // the file's text, YAML or JSON
	UpdatedAt time.Time `json:"updated_at"`
	Version   int64     `json:"-"`
}

// CampaignKey is the configuration key of a campaign.
func CampaignKey(app, name string) []byte { return []byte(CampaignKeyPrefix + app + "/" + name) }

// CapsKey is the configuration key of an app's caps.
func CapsKey(app string) []byte { return []byte(CapsKeyPrefix + app) }

// AppCaps are an app's frequency caps per channel, as stored.
type AppCaps map[triggers.Channel]CapsJSON

// CapsJSON is one channel's caps as stored (0: no cap).
type CapsJSON struct {
	PerDay  int `json:"per_day,omitempty"`
	PerWeek int `json:"per_week,omitempty"`
}

// Set is the campaigns and caps in force.
type Set struct {
	Version   int64 // offset of the newest configuration message applied
	Campaigns []*triggers.Campaign
	Caps      map[string]map[triggers.Channel]triggers.Caps
	Errors    map[string]error // app/name → why a stored campaign does not parse
}

// Store follows the configuration topic and keeps the current campaigns.
// Safe for concurrent use.
type Store struct {
	mu      sync.Mutex
	stored  map[string]Stored // app/name → campaign
	caps    map[string]AppCaps
	version int64
	cur     *Set
	changed chan struct{} // closed and replaced at each change
}

// NewStore returns an empty store.
func NewStore() *Store {
	s := &Store{stored: map[string]Stored{}, caps: map[string]AppCaps{}, changed: make(chan struct{})}
	s.cur = s.build()
	return s
}

// Apply applies one configuration message (other kinds of configuration
// are ignored) and reports whether the set changed.
func (s *Store) Apply(m bus.Message) (bool, error) {
	key := string(m.Key)
	isCamp, isCaps := strings.HasPrefix(key, CampaignKeyPrefix), strings.HasPrefix(key, CapsKeyPrefix)
	if !isCamp && !isCaps {
		return false, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if m.Offset < s.version {
		return false, nil
	}
	s.version = m.Offset
	switch {
	case isCamp:
		id := strings.TrimPrefix(key, CampaignKeyPrefix)
		if len(m.Value) == 0 {
			if _, ok := s.stored[id]; !ok {
				return false, nil
			}
			delete(s.stored, id)
			break
		}
		var c Stored
		if err := json.Unmarshal(m.Value, &c); err != nil {
			return false, fmt.Errorf("configuration %q at offset %d: %w", key, m.Offset, err)
		}
		if c.App+"/"+c.Name != id {
			return false, fmt.Errorf("configuration %q at offset %d names campaign %q of app %q", key, m.Offset, c.Name, c.App)
		}
		c.Version = m.Offset
		s.stored[id] = c
	default:
		app := strings.TrimPrefix(key, CapsKeyPrefix)
		if len(m.Value) == 0 {
			delete(s.caps, app)
			break
		}
		var c AppCaps
		if err := json.Unmarshal(m.Value, &c); err != nil {
			return false, fmt.Errorf("configuration %q at offset %d: %w", key, m.Offset, err)
		}
		s.caps[app] = c
	}
	s.cur = s.build()
	close(s.changed)
	s.changed = make(chan struct{})
	return true, nil
}

func (s *Store) build() *Set {
	set := &Set{Version: s.version, Caps: map[string]map[triggers.Channel]triggers.Caps{}, Errors: map[string]error{}}
	ids := make([]string, 0, len(s.stored))
	for id := range s.stored {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		st := s.stored[id]
		c, err := triggers.Parse(st.File, []byte(st.Source))
		if err != nil {
			set.Errors[id] = err
			continue
		}
		if c.App != st.App || c.Name != st.Name {
			set.Errors[id] = fmt.Errorf("%s: the file names campaign %q of app %q", st.File, c.Name, c.App)
			continue
		}
		c.Version = st.Version
		set.Campaigns = append(set.Campaigns, c)
	}
	for app, caps := range s.caps {
		m := map[triggers.Channel]triggers.Caps{}
		for ch, c := range caps {
			m[ch] = triggers.Caps{PerDay: c.PerDay, PerWeek: c.PerWeek}
		}
		set.Caps[app] = m
	}
	return set
}

// Current returns the current set and a channel closed when it changes.
func (s *Store) Current() (*Set, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur, s.changed
}

// Stored returns the stored campaigns, by app and name.
func (s *Store) Stored() []Stored {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Stored, 0, len(s.stored))
	for _, c := range s.stored {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].App != out[j].App {
			return out[i].App < out[j].App
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Follow applies the configuration topic's messages as read by follow
// (kafkabus.FollowPartition in production) until ctx ends. ready is closed
// once the messages present at the start are applied.
func (s *Store) Follow(ctx context.Context, follow func(ctx context.Context, fn func(m bus.Message, caughtUp bool) error) error, ready chan<- struct{}, warn func(error)) error {
	once := sync.Once{}
	return follow(ctx, func(m bus.Message, caughtUp bool) error {
		if m.Key != nil {
			if _, err := s.Apply(m); err != nil {
				warn(err)
			}
		}
		if caughtUp {
			once.Do(func() { close(ready) })
		}
		return nil
	})
}
