package triggers

import (
	"time"
)

// Eviction: the scheduler's memory bounded under churn.
//
// A device's state (memberships, profile, push token, the values its
// templates read, the last send of each campaign, the recent sends the
// caps count, the waiting sends) is deleted, with a tombstone in the
// changelog, once nothing it holds can change a decision any more:
//
//   - it is in no segment and has no waiting send;
//   - it has had no input (segment change or forwarded record) for the
//     retention (SetEviction's after), or, when its last input was an
//     exit with cause "evicted" (the processor forgot the device: it was
//     not seen for longer than every window of its app), for the margin;
//   - its history no longer matters: the recent sends are older than the
//     caps' week plus the margin; each campaign's last send is older than
//     its reentry_after (a recurring campaign's: a day and its time zones)
//     plus the margin. A campaign with once: true keeps the device for the
//     retention after its last input: at most one send per device holds
//     as long as the device is kept, and a device that comes back after
//     the retention may get that campaign again.
//
// The retention is long (400 days by default) because the scheduler does
// not see every record of a device: a device that only sends events keeps
// its profile and push token for that long after its last device record
// or segment change, and is kept as long as it is in a segment.
//
// Checks are timer-driven (an entry in the timer queue per device, at the
// earliest instant it can go, checked again when it is due), never a scan.
// Eviction makes no decision: it only forgets what no longer decides
// anything. A device that comes back after its eviction is a new device
// to the scheduler: no time zone or push token until its next device
// record (the processor forwards it), no repeat history.

const capsWeek = 7 * 24 * 3600

// SetEviction sets how long devices are kept (see above): after is the
// retention (0: never evict), margin is added to every look-back.
func (s *Scheduler) SetEviction(after, margin time.Duration) {
	s.evictAfter, s.evictMargin = int64(after/time.Second), int64(margin/time.Second)
	if after > 0 {
		for _, d := range s.devs {
			s.armEvict(d)
		}
	}
}

// touch notes an input for a device.
func (s *Scheduler) touch(d *devState) {
	d.seen = max(d.seen, s.now)
	d.gone = false
}

// evictAt returns the earliest instant at which a device can be evicted,
// if it is then in no segment and waits for no send.
func (s *Scheduler) evictAt(d *devState) int64 {
	at := d.seen + s.evictAfter
	if d.gone {
		at = d.seen + s.evictMargin
	}
	if n := len(d.recent); n > 0 {
		at = max(at, d.recent[n-1].t+capsWeek+s.evictMargin)
	}
	if len(d.sent) > 0 {
		a := s.apps[d.app]
		for name, sa := range d.sent {
			var c *Campaign
			if a != nil {
				for _, x := range a.camps {
					if x.Name == name {
						c = x
						break
					}
				}
			}
			switch {
			case c == nil:
				// A campaign that is gone: its history decides nothing.
			case c.Limit.Once:
				at = max(at, max(d.seen, sa.t)+s.evictAfter)
			case c.Limit.ReentryAfter > 0:
				at = max(at, sa.t+int64(c.Limit.ReentryAfter/time.Second)+s.evictMargin)
			case sa.day != 0:
				at = max(at, sa.t+2*24*3600+s.evictMargin)
			}
		}
	}
	return at
}

// armEvict puts a device's eviction check in the timer queue, unless one
// is there at or before the instant the device can go (a later instant is
// checked again when due; an exit of an evicted device brings it nearer).
// A device in a segment or waiting for a send is not armed: it is
// armed again by the change that ends that (Apply, a send, a campaign
// change).
func (s *Scheduler) armEvict(d *devState) {
	if s.evictAfter <= 0 || len(d.members) > 0 || len(d.pending) > 0 {
		return
	}
	at := s.evictAt(d)
	if d.evictDue != 0 {
		if d.evictDue <= at {
			return
		}
		// The entry at d.evictDue is stale from now on: it holds the
		// device until it comes out, unless the queue is compacted.
		s.evictStale++
		if s.evictStale > 1024 && 2*s.evictStale > len(s.timers.h) {
			s.compactEvicts()
		}
	}
	d.evictDue = at
	s.timers.push(timerEntry{due: at, d: d})
}

// compactEvicts drops the stale eviction checks from the timer queue, so
// that it does not hold evicted devices.
func (s *Scheduler) compactEvicts() {
	h := s.timers.h[:0]
	for _, e := range s.timers.h {
		if e.p == nil && (e.d.evictDue != e.due || s.devs[e.d.app+"/"+e.d.id] != e.d) {
			continue
		}
		h = append(h, e)
	}
	clear(s.timers.h[len(h):])
	s.timers.h = h
	for i := len(h)/2 - 1; i >= 0; i-- {
		s.timers.down(i)
	}
	s.evictStale = 0
}

// evictCheck runs a due eviction check.
func (s *Scheduler) evictCheck(e timerEntry) {
	d := e.d
	if d.evictDue != e.due {
		s.evictStale = max(s.evictStale-1, 0)
		return // stale
	}
	d.evictDue = 0
	key := d.app + "/" + d.id
	if s.devs[key] != d || len(d.members) > 0 || len(d.pending) > 0 {
		return // checked again at its next change
	}
	if at := s.evictAt(d); at > e.due {
		d.evictDue = at
		s.timers.push(timerEntry{due: at, d: d})
		return
	}
	delete(s.devs, key)
	delete(s.dirty, d)
	s.tombs = append(s.tombs, key)
	s.stats.Evicted++
}
