package tag

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var (
	zones     sync.Map // name → bool
	zoneCount atomic.Int64
)

const maxCachedZones = 4096

// ValidTimeZone reports whether name is an IANA time zone known to the
// time zone database (binaries embed it with time/tzdata). Results are cached.
func ValidTimeZone(name string) bool {
	if v, ok := zones.Load(name); ok {
		return v.(bool)
	}
	// LoadLocation accepts "Local" and "" as special cases; a device never
	// means them. Paths are refused too.
	ok := name != "" && name != "Local" && !strings.Contains(name, "..") && !strings.HasPrefix(name, "/")
	if ok {
		_, err := time.LoadLocation(name)
		ok = err == nil
	}
	if zoneCount.Add(1) < maxCachedZones {
		zones.Store(name, ok)
	}
	return ok
}
