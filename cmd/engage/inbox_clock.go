package main

import (
	"sync/atomic"
	"time"

	"github.com/openengage/engage/delivery/inbox"
)

// inboxApplier is what followInbox fills: the store, or the store on a
// simulated clock.
type inboxApplier interface {
	Apply(key, value []byte) error
}

// simulatedInbox serves the in-app messages on a simulated clock: now is
// the newest delivery time among the messages the inbox has held (the
// scheduler's and the dispatcher's simulated clocks carried on), so that a
// replay of past weeks shows the messages live then, not expired by today's
// date. For replays and tests only.
type simulatedInbox struct {
	*inbox.Store
	newest atomic.Int64 // unix nanoseconds
}

func (s *simulatedInbox) Apply(key, value []byte) error {
	if msgs, err := inbox.Decode(value); err == nil {
		for _, m := range msgs {
			for t := m.Time.UnixNano(); ; {
				old := s.newest.Load()
				if t <= old || s.newest.CompareAndSwap(old, t) {
					break
				}
			}
		}
	}
	return s.Store.Apply(key, value)
}

// Get ignores the wall clock it is given.
func (s *simulatedInbox) Get(app, device, activity string, _ time.Time) []inbox.Message {
	return s.Store.Get(app, device, activity, time.Unix(0, s.newest.Load()).UTC())
}
