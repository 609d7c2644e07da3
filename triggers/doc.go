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
// Work in progress (issue 9): the campaign model is here; parsing and
// checking campaign files, templates, timing, assignment and the decision
// engine are being built.
package triggers
