// Package triggers is the pure core of campaign timing: what a campaign is
// (what is sent, to whom, when, within which limits), how a device is
// assigned to its sample, control group and variant, when a send is due
// in the device's own time zone (delays, alignment to a local time of day,
// quiet hours, one-off and recurring sends), and the decisions that the
// scheduler (`engage schedule`) makes from segment changes and time.
//
// Like segments and the tag model, it imports no adapter: no Kafka,
// ClickHouse, HTTP or Prometheus (arch_test.go checks it). It never reads
// the wall clock: every function takes its now.
//
// What is here (issue 9 is in progress): the campaign model
// (campaign.go); campaign files in YAML or JSON with every mistake at its
// line:column, and their checks against the app's segments and tag plan
// (parse*.go, check*.go; docs/campaigns.md); message templates over
// app-info, device fields and the trigger's extras (template*.go);
// deterministic assignment to sample, control group and variants
// (assign.go); send times in each device's time zone with delays,
// alignment to a local time of day, quiet hours, start, end and expiry,
// DST-correct (timing.go); and the decision core (decide.go): a Scheduler
// that follows segment entries and exits, keeps per device its
// memberships, waiting sends and recent sends, fires due sends as its
// clock advances, and decides each send (sent, deferred, control, capped,
// outranked, repeat, quiet hours, expired, ended, left) with its reason and
// a deterministic id; one-off sends (in UTC or each device's local time)
// and recurring ones go to the members of the moment, and a campaign's
// send rate spreads its sends over the seconds that follow. Its per-device
// state is a versioned changelog record (state.go). Each send's message is
// rendered when it is decided, from the app-info values and device fields
// the templates read (ApplyRecord) and the extras of the record that
// caused the segment change (SegmentChange.Extras); a campaign whose
// missing policy is skip skips a device with a field without value. Not
// yet: `engage schedule`, the service around the Scheduler (and the
// processor's change messages carrying the causing record's extras).
package triggers
