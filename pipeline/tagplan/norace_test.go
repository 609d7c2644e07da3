//go:build !race

package tagplan

const raceEnabled = false
