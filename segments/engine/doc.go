// Package engine keeps segment memberships current for the devices of one
// partition: it applies tag records one by one, re-evaluates only the
// segments that read what a record changed, fires timers when a condition
// can change with time alone, and emits each enter and exit with a
// deterministic id. It is part of the pure core: it imports the standard
// library, the tag model, the segment syntax tree and murmur3, and never
// reads the wall clock. One goroutine owns an Engine (the one that owns
// the partition); it is not safe for concurrent use.
//
// # Use from a processor
//
//	e := engine.New(engine.Options{})
//	e.SetSegments(current, now)               // the segments of every app the partition serves
//	for each changelog record: e.Restore(key, value)
//	loop:
//	    out = e.ApplyBatch(records, offsets, now, out[:0])  // or Apply, one record
//	    out = e.Advance(now, out)                          // timers due at now
//	    publish out to the segment-changes topic
//	    e.Dirty(func(key, state []byte) { produce to the changelog })
//	    commit the input offsets
//
// now is the processor's clock: the wall clock, or a simulated one (the
// newest event time the partition has seen), which tests, replays and
// dry runs use. The engine keeps the newest now it is given.
//
// # Semantics
//
// Time. The engine counts in whole seconds. A record's time is its event
// time (Record.Time), truncated to the second, and no later than the now of
// the Apply that brings it (a clock running ahead of the processor's does
// not put records in the future); times before 2000-01-01 count as
// 2000-01-01T00:00:01Z. Windows and ages are relative to now.
//
// Did. A record matches a did condition when its kind matches (activity =
// activity_start records; job = job and job_end records; session =
// session_start), its name matches (sessions have none), every where
// filter holds on its extras (a date relative to now in a filter is
// relative to the record's own time) and the taking filter holds on its
// duration. "in the last W" counts matching records with now-W < t <= now;
// without a window, all the history the engine holds. Counts are exact: a
// device keeps, per feature, the K newest matching times that can decide
// the comparison (N for at least N and fewer than N; N+1 for exactly, at
// most and more than N), sorted, so that late records insert in order, and
// drops a time once no segment's window can count it.
//
// Since. first_session is the earliest session_start time seen (a late
// record can lower it); last_seen the newest time of any record (app_info,
// device and push records included); last <kind> "name" the newest
// matching time. "between A and B ago" holds when now-B <= t <= now-A; an
// absolute range is [from, to).
//
// Attributes. An app_info key's value is that of its newest record by
// event time (a later arrival wins a tie); an older record arriving late
// never overwrites it. Device fields (platform, app_version, os_version,
// model, manufacturer, locale, country, timezone) come from device records
// the same way; an empty field unsets the value. app_version and os_version
// compare as versions, part by part ("2.10" > "2.9", as
// segments.CompareVersions does). A comparison with no
// value, or between values of different types, is false ("is not set" is
// the way to match a missing value); "!=" and "not in" are false too
// without a value. Dates may be relative to now ("now - 18y").
//
// Unchanged. True when the value is set and the start of its current run
// is at or before now - Min; a record setting the same value again is not
// a change. The start of the run is exact for records in time order and
// for late records outside the run (a late record with the same value just
// before it moves it back). A late record with another value inside the
// run splits it: the engine does not keep every record, so the run starts
// again at the newest record's time (it errs towards "changed recently").
//
// Ref and sample. A segment may refer to another of its app; segments are
// evaluated in dependency order, and a change of membership re-evaluates
// the segments that refer to it. References must not form a cycle. A
// sample keeps the devices whose murmur3 32-bit hash of salt + "/" + device
// id is below percent/100 × 2^32; the salt defaults to the segment's name.
//
// Duplicates. The processor passes each record's input offset. A record at
// or before the device's last applied offset is a replay and changes
// nothing. A record whose message id is among the last 4 accepted message
// ids of the device is a client retry and changes nothing: deduplication of
// client retries is bounded to that window. Ids are compared by their
// 64-bit murmur3 hash: a record is taken for a retry by mistake with
// probability 4/2^64, so that over 10^12 records the expected number of
// records dropped by mistake is 2×10^-7.
// Before any record, replayed or not, the device's due timers fire.
//
// Timers. After each evaluation the engine knows, per segment, the earliest
// instant after now at which its value can change with time alone: a
// counted time leaving its window, a moment entering or leaving an age
// range, an unchanged value reaching its duration, now crossing a date.
// For and/or it takes a lower bound (an "and" that is false cannot become
// true before each false argument has changed). The device keeps the
// earliest of these; Advance fires the devices whose timer is due, each at
// its due time, and re-evaluates their time-dependent segments there. A
// change from a timer has the due time as its Time, so that it does not
// depend on when Advance ran. Because an Apply only lowers the timer
// (re-evaluating every time-dependent segment on each record would cost
// more), a timer may fire and change nothing; it then sets the next one
// exactly.
//
// Changes. Each enter or exit is a Change with the app, segment, version,
// device, direction, time, cause (a record, with its message id and
// offset; a timer; a segment created, updated or deleted) and an ID: a
// hash of app, segment, version, device, direction and the cause's
// identity (the record's offset, the timer's due time, the segment set's
// fingerprint). Replaying the same input gives the same ids, and a device's
// changes are the same whether the engine ran in one go or was restored
// from its changelog midway.
//
// Segment changes. SetSegments compiles the new set, keeps the features
// that unchanged segments read, drops the data of features no longer
// read, and re-evaluates every device of the app for the new and changed
// segments, now (the one operation that visits every device: a
// configuration change, not time). Members of a deleted segment exit. A
// segment whose conditions need history the state does not hold (a new
// did or last-time condition, an attribute not tracked before, a count
// that must now keep more times, every condition of an app's first
// segments) is filled from history when Options.Fill is set (fill.go): the
// engine picks a seam offset, clears those features, takes the records at
// or after the seam live and those below it from ApplyHistory, and does
// not evaluate the segments that read them until FinishFill. Without
// Fill, such a segment counts from now: its Status says so, and when it
// becomes complete (once its window has passed), or that it never will (a
// count over all history). A partition whose first record is still to
// come needs no fill. first_session and last_seen are tracked for every
// device of an app that has segments.
//
// Eviction. With Options.EvictAfter set, a device not seen for longer
// than its app's horizon (the longest look-back of its segments plus
// Options.EvictMargin, or EvictAfter when a condition has no window) and
// with no pending timer is evicted: its memberships exit (CauseEvicted),
// its state is deleted (a tombstone in Dirty). A device that comes back
// starts afresh. See evict.go.
//
// # State
//
// Per app and device, one state: the last applied offset, first_session,
// last_seen, the 4 recent message-id hashes (64-bit), the next timer, the
// fingerprint of the segment set it was evaluated under, the memberships,
// and the data of only the features its app's segments read. Features are
// identified by a hash of their canonical description, so that a state
// written under one segment set restores under another (unknown features
// are dropped, new ones start empty), and memberships by a hash of the
// segment name. Segments that read the same thing share one feature: two
// "did event "share" where network = "facebook"" conditions with different
// counts and windows keep one list of times, as many as the most demanding
// needs. In memory a device is one struct (its key inline when it is at
// most 48 bytes, its memberships in one word for up to 64 segments) plus
// one []uint32 of feature times and a slice of attribute values, whose
// strings are interned engine-wide (bounded) so that devices share them.
// Devices are found through an open-addressing table keyed by a 64-bit hash
// of the key (the key is checked in the device). The
// changelog form is binary and versioned (see appendState): varints,
// times as deltas from last_seen; about 100 bytes for a typical rule set.
// Dirty hands over the states changed since its last call (nil for a
// deleted state); a state is encoded when it first changes in a batch,
// while it is in the cache. Each app also has a meta record (key "\x00" +
// app) that says since when each feature has been tracked, for Status
// after a restore, and which segments were deleted recently (to emit exits
// for states restored from before a deletion). A state written under
// another segment set than the current one is re-evaluated in full by the
// next Advance or Apply for the device (cause "segment updated").
//
// # Complexity
//
// A record costs one table lookup, the features indexed by its kind and
// name (a record touches only the features that read it; the others are
// never looked at), an O(K) insertion per matching feature, the evaluation
// of only the segments that read a feature that changed (plus those that
// read last_seen, which every record moves), and, the first time the device
// changes in a batch, the encoding of its state. ApplyBatch finds the
// devices of a batch first, so that the cache misses of different devices
// overlap: with a million devices most of the cost of a record is memory
// latency. Timers are a min-heap of value entries with lazy deletion: a
// timer change pushes an entry, stale entries are skipped when they come
// out, and the heap is compacted when most entries are stale. Advance
// costs O(log n) per due timer and never scans devices. SetSegments costs
// O(devices × changed segments) for the apps whose set changed. Memory is
// bounded per device by the features its segments read: at most K times
// per did feature, one value per attribute; and in devices by eviction:
// the devices seen within their app's horizon (BenchmarkChurn).
//
// The benchmarks (bench_test.go) measure Apply and ApplyBatch with a
// million devices and 50 segments, the state size for a typical rule set,
// Restore and Advance; the figures are in the commit history and the
// processor's documentation.
package engine
