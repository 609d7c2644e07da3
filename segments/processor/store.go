package processor

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/segments"
)

// Segment definitions live in the compacted configuration topic, one
// message per segment: key "segment/<app>/<name>", value a Definition as
// JSON, or no value (a tombstone) once deleted. A definition's version is
// the offset of its message, so that every instance that reads the topic
// agrees on it.

// KeyPrefix starts the configuration keys of segments.
const KeyPrefix = "segment/"

// InstanceKeyPrefix starts the configuration keys of running processor
// instances: key "instance/<id>", value an Instance as JSON, a tombstone
// when the instance stops. They tell each instance's API where the
// partitions it does not own are answered.
const InstanceKeyPrefix = "instance/"

// Instance is a running `engage process` instance as it announces itself:
// where its API answers, and the partitions it owns.
type Instance struct {
	ID         string    `json:"id"`
	Group      string    `json:"group"` // its consumer group: instances of other groups own other copies of the partitions
	Addr       string    `json:"addr"`  // base URL of its API, e.g. http://10.0.0.5:8082
	Partitions []int     `json:"partitions"`
	At         time.Time `json:"at"`
	offset     int64
}

// Definition is a segment as stored: its text is the source of truth (the
// JSON form converts to it).
type Definition struct {
	App       string    `json:"app"`
	Name      string    `json:"name"`
	Text      string    `json:"text"`
	UpdatedAt time.Time `json:"updated_at"`
	Version   int64     `json:"version,omitempty"` // the message's offset, set when read
}

// ConfigKey is the configuration key of a segment.
func ConfigKey(app, name string) []byte { return []byte(KeyPrefix + app + "/" + name) }

// Set is one version of the segment set: every live segment, parsed.
type Set struct {
	Version int64 // offset of the newest configuration message applied
	Defs    []Definition
	Segs    []*segments.Segment
	Errors  map[string]error // app/name → why a stored definition does not parse
}

// Store follows the configuration topic and keeps the current segment
// set. Safe for concurrent use.
type Store struct {
	mu      sync.Mutex
	defs    map[string]Definition // app/name → definition
	version int64
	cur     *Set
	changed chan struct{} // closed and replaced at each change
	insts   map[string]Instance
}

// NewStore returns an empty store.
func NewStore() *Store {
	s := &Store{defs: map[string]Definition{}, changed: make(chan struct{}), insts: map[string]Instance{}}
	s.cur = s.build()
	return s
}

// Apply applies one configuration message (messages of other kinds of
// configuration are ignored). It reports whether the segment set changed.
func (s *Store) Apply(m bus.Message) (bool, error) {
	key := string(m.Key)
	if strings.HasPrefix(key, InstanceKeyPrefix) {
		return false, s.applyInstance(m)
	}
	if !strings.HasPrefix(key, KeyPrefix) {
		return false, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if m.Offset < s.version {
		return false, nil
	}
	s.version = m.Offset
	id := strings.TrimPrefix(key, KeyPrefix)
	if len(m.Value) == 0 {
		if _, ok := s.defs[id]; !ok {
			return false, nil
		}
		delete(s.defs, id)
	} else {
		var d Definition
		if err := json.Unmarshal(m.Value, &d); err != nil {
			return false, fmt.Errorf("configuration %q at offset %d: %w", key, m.Offset, err)
		}
		if d.App+"/"+d.Name != id {
			return false, fmt.Errorf("configuration %q at offset %d names segment %q of app %q", key, m.Offset, d.Name, d.App)
		}
		d.Version = m.Offset
		s.defs[id] = d
	}
	s.cur = s.build()
	close(s.changed)
	s.changed = make(chan struct{})
	return true, nil
}

func (s *Store) build() *Set {
	set := &Set{Version: s.version, Errors: map[string]error{}}
	ids := make([]string, 0, len(s.defs))
	for id := range s.defs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		d := s.defs[id]
		set.Defs = append(set.Defs, d)
		expr, err := segments.Parse(d.Text)
		if err != nil {
			set.Errors[id] = err
			continue
		}
		set.Segs = append(set.Segs, &segments.Segment{App: d.App, Name: d.Name, Text: d.Text, Expr: expr, Version: d.Version})
	}
	return set
}

// Current returns the current set and a channel closed when it changes.
func (s *Store) Current() (*Set, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur, s.changed
}

// Definition returns one stored definition.
func (s *Store) Definition(app, name string) (Definition, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.defs[app+"/"+name]
	return d, ok
}

// Follow applies the configuration topic's messages to the store as read
// by follow (kafkabus.FollowPartition in production) until ctx ends. ready
// is closed once the messages present at the start are applied.
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

func (s *Store) applyInstance(m bus.Message) error {
	id := strings.TrimPrefix(string(m.Key), InstanceKeyPrefix)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(m.Value) == 0 {
		delete(s.insts, id)
		return nil
	}
	var in Instance
	if err := json.Unmarshal(m.Value, &in); err != nil {
		return fmt.Errorf("configuration %q at offset %d: %w", m.Key, m.Offset, err)
	}
	if in.ID != id {
		return fmt.Errorf("configuration %q at offset %d announces instance %q", m.Key, m.Offset, in.ID)
	}
	// An address other instances would call that is not a plain http(s)
	// base URL is ignored (and the instance's older record with it: this
	// one is newer).
	if err := CheckAddr(in.Addr); err != nil {
		if old, ok := s.insts[id]; ok && old.offset < m.Offset {
			delete(s.insts, id)
		}
		return fmt.Errorf("configuration %q at offset %d: instance ignored: %w", m.Key, m.Offset, err)
	}
	for _, p := range in.Partitions {
		if p < 0 || p >= 1<<20 {
			return fmt.Errorf("configuration %q at offset %d: instance ignored: partition %d", m.Key, m.Offset, p)
		}
	}
	if old, ok := s.insts[id]; ok && old.offset > m.Offset {
		return nil
	}
	in.offset = m.Offset
	s.insts[id] = in
	return nil
}

// Owners returns, for each partition some instance of the consumer group
// announced, the instance that announced it last (an instance announces a partition once
// it has restored it, and announces again without it once it lost it; a
// killed instance's stale claims are overridden by the next owner's).
func (s *Store) Owners(group string) map[int]Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[int]Instance{}
	for _, in := range s.insts {
		if in.Group != group {
			continue
		}
		for _, p := range in.Partitions {
			if cur, ok := out[p]; !ok || in.offset > cur.offset {
				out[p] = in
			}
		}
	}
	return out
}
