//go:build race

package tagplan

// raceEnabled: under the race detector allocation counts differ (its
// instrumentation changes what escapes to the heap).
const raceEnabled = true
