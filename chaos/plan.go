package chaos

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"time"
)

// Target is what a fault hits.
type Target string

// The targets of the run.
const (
	Collector Target = "collector"
	Sink      Target = "sink"
	Processor Target = "processor"
	Broker    Target = "broker"
)

// Targets lists every target, in the order a report names them.
var Targets = []Target{Collector, Sink, Processor, Broker}

// Kind is how a target is brought down.
type Kind string

const (
	// Kill is SIGKILL: a crash, nothing flushed, nothing handed over.
	Kill Kind = "SIGKILL"
	// Term is SIGTERM: a controlled shutdown (a broker hands its
	// leaderships over first, a service drains what it holds).
	Term Kind = "SIGTERM"
)

// Fault is one planned fault: at At after the start of the load, Target
// (broker Broker, 0-based, when Target is Broker) is brought down by Kind
// and started again Down later.
type Fault struct {
	At     time.Duration
	Target Target
	Broker int
	Kind   Kind
	Down   time.Duration
}

func (f Fault) String() string {
	who := string(f.Target)
	if f.Target == Broker {
		who = fmt.Sprintf("broker %d", f.Broker+1)
	}
	return fmt.Sprintf("%7s %s %s, down %s", f.At.Round(100*time.Millisecond), f.Kind, who, f.Down.Round(100*time.Millisecond))
}

// PlanConfig says how many faults to plan and how long each lasts.
type PlanConfig struct {
	Duration  time.Duration // of the load; faults fall within it
	PerTarget int           // faults of each target (at least 2: one SIGKILL and one SIGTERM)
	Brokers   int           // brokers in the cluster; one at a time is down
	// Down is the range of a service's time down; BrokerDown a broker's.
	Down, BrokerDown [2]time.Duration
	// Restart is the time a service is given to come back after its
	// start (healthy again), BrokerRestart a broker's: a target's next
	// fault comes no sooner, and they count as down for MaxDown.
	Restart, BrokerRestart time.Duration
	// MaxDown is the most targets down (or restarting) at once.
	MaxDown int
}

// DefaultPlanConfig is the run's plan for a load of d: a fault of each
// target every 40 s or so of the window (3 of each in 3 minutes), at least
// 2 and at most 6.
func DefaultPlanConfig(d time.Duration) PlanConfig {
	per := min(6, max(2, int(float64(d)*(windowEnd-windowStart)/float64(40*time.Second))))
	return PlanConfig{
		Duration: d, PerTarget: per, Brokers: 3,
		Down: [2]time.Duration{time.Second, 8 * time.Second}, BrokerDown: [2]time.Duration{3 * time.Second, 12 * time.Second},
		Restart: 6 * time.Second, BrokerRestart: 20 * time.Second,
		MaxDown: 2,
	}
}

// The faults fall between these fractions of the load's duration: the
// load runs undisturbed at its start and has time to settle at its end.
const (
	windowStart = 0.08
	windowEnd   = 0.85
)

// Plan draws the faults of a run from seed: PerTarget faults of each
// target, each target's spread over the window (one in each of PerTarget
// equal slots, so that they never overlap), the first of each a SIGKILL and
// the second a SIGTERM (the others either), brokers drawn at random, never
// more than MaxDown targets down at once. The same seed and configuration
// give the same plan. The faults are sorted by time.
func Plan(seed uint64, cfg PlanConfig) ([]Fault, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	from := time.Duration(float64(cfg.Duration) * windowStart)
	slot := time.Duration(float64(cfg.Duration)*(windowEnd-windowStart)) / time.Duration(cfg.PerTarget)
	for try := 0; try < 10000; try++ {
		var faults []Fault
		for _, target := range Targets {
			down, restart := cfg.Down, cfg.Restart
			if target == Broker {
				down, restart = cfg.BrokerDown, cfg.BrokerRestart
			}
			for i := range cfg.PerTarget {
				f := Fault{Target: target, Kind: Kill, Down: between(rng, down[0], down[1])}
				if i == 1 || (i > 1 && rng.IntN(3) == 0) {
					f.Kind = Term
				}
				if target == Broker {
					f.Broker = rng.IntN(cfg.Brokers)
				}
				room := slot - f.Down - restart
				f.At = from + time.Duration(i)*slot + between(rng, 0, room)
				faults = append(faults, f)
			}
		}
		if maxConcurrent(faults, cfg) <= cfg.MaxDown {
			sort.SliceStable(faults, func(i, j int) bool { return faults[i].At < faults[j].At })
			return faults, nil
		}
	}
	return nil, fmt.Errorf("chaos plan: no plan of %d faults per target within %s keeps at most %d targets down at once: lengthen the run or plan fewer faults", cfg.PerTarget, cfg.Duration, cfg.MaxDown)
}

func (cfg PlanConfig) check() error {
	var bad []string
	if cfg.PerTarget < 2 {
		bad = append(bad, fmt.Sprintf("faults per target %d: at least 2 (a SIGKILL and a SIGTERM)", cfg.PerTarget))
	}
	if cfg.Brokers < 2 {
		bad = append(bad, fmt.Sprintf("brokers %d: at least 2, one of which stays up", cfg.Brokers))
	}
	if cfg.MaxDown < 1 {
		bad = append(bad, fmt.Sprintf("most targets down at once %d: at least 1", cfg.MaxDown))
	}
	for _, r := range []struct {
		name string
		v    [2]time.Duration
	}{{"down", cfg.Down}, {"broker down", cfg.BrokerDown}} {
		if r.v[0] <= 0 || r.v[1] < r.v[0] {
			bad = append(bad, fmt.Sprintf("%s range %s–%s: give 0 < min <= max", r.name, r.v[0], r.v[1]))
		}
	}
	if cfg.Restart <= 0 || cfg.BrokerRestart <= 0 {
		bad = append(bad, "restart times must be positive")
	}
	slot := time.Duration(float64(cfg.Duration)*(windowEnd-windowStart)) / time.Duration(max(1, cfg.PerTarget))
	if len(bad) == 0 {
		if need := max(cfg.Down[1]+cfg.Restart, cfg.BrokerDown[1]+cfg.BrokerRestart); slot < need {
			bad = append(bad, fmt.Sprintf("duration %s: %d faults per target leave %s each, and a fault with its restart takes up to %s", cfg.Duration, cfg.PerTarget, slot.Round(time.Second), need))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("chaos plan: %s", strings.Join(bad, "; "))
	}
	return nil
}

// between draws a duration in [lo, hi], to the 100 ms.
func between(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	steps := int64((hi - lo) / (100 * time.Millisecond))
	if steps <= 0 {
		return lo
	}
	return lo + time.Duration(rng.Int64N(steps+1))*100*time.Millisecond
}

// maxConcurrent is the most faults whose time down (with the restart
// allowance) overlap at one instant.
func maxConcurrent(faults []Fault, cfg PlanConfig) int {
	type edge struct {
		at time.Duration
		d  int
	}
	var edges []edge
	for _, f := range faults {
		restart := cfg.Restart
		if f.Target == Broker {
			restart = cfg.BrokerRestart
		}
		edges = append(edges, edge{f.At, 1}, edge{f.At + f.Down + restart, -1})
	}
	sort.Slice(edges, func(i, j int) bool {
		if edges[i].at != edges[j].at {
			return edges[i].at < edges[j].at
		}
		return edges[i].d < edges[j].d // an end before a start at the same instant
	})
	n, most := 0, 0
	for _, e := range edges {
		n += e.d
		most = max(most, n)
	}
	return most
}
