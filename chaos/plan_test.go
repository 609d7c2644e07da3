package chaos

import (
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestPlanKeepsToItsRules(t *testing.T) {
	for _, d := range []time.Duration{2 * time.Minute, 3 * time.Minute, 10 * time.Minute, 15 * time.Minute} {
		cfg := DefaultPlanConfig(d)
		for seed := uint64(1); seed <= 200; seed++ {
			faults, err := Plan(seed, cfg)
			if err != nil {
				t.Fatalf("%s seed %d: %v", d, seed, err)
			}
			again, _ := Plan(seed, cfg)
			if !reflect.DeepEqual(faults, again) {
				t.Fatalf("seed %d: two plans differ", seed)
			}
			if got := maxConcurrent(faults, cfg); got > cfg.MaxDown {
				t.Fatalf("seed %d: %d targets down at once, at most %d", seed, got, cfg.MaxDown)
			}
			byTarget := map[Target][]Fault{}
			for i, f := range faults {
				if i > 0 && f.At < faults[i-1].At {
					t.Fatalf("seed %d: not sorted by time: %v", seed, faults)
				}
				if f.At < time.Duration(float64(d)*windowStart) || f.At+f.Down > time.Duration(float64(d)*windowEnd) {
					t.Fatalf("seed %d: %s outside the window of a %s load", seed, f, d)
				}
				if f.Broker < 0 || f.Broker >= cfg.Brokers || (f.Target != Broker && f.Broker != 0) {
					t.Fatalf("seed %d: %s: broker %d", seed, f, f.Broker)
				}
				byTarget[f.Target] = append(byTarget[f.Target], f)
			}
			for _, target := range Targets {
				fs := byTarget[target]
				if len(fs) != cfg.PerTarget || fs[0].Kind != Kill || fs[1].Kind != Term {
					t.Fatalf("seed %d: %s: %v", seed, target, fs)
				}
				restart := cfg.Restart
				if target == Broker {
					restart = cfg.BrokerRestart
				}
				for i := 1; i < len(fs); i++ {
					if fs[i].At < fs[i-1].At+fs[i-1].Down+restart {
						t.Fatalf("seed %d: %s's faults overlap: %s then %s", seed, target, fs[i-1], fs[i])
					}
				}
			}
		}
	}
	a, _ := Plan(1, DefaultPlanConfig(3*time.Minute))
	b, _ := Plan(2, DefaultPlanConfig(3*time.Minute))
	if reflect.DeepEqual(a, b) {
		t.Error("seeds 1 and 2 give the same plan")
	}
}

func TestPlanRefusesWhatCannotBe(t *testing.T) {
	short := DefaultPlanConfig(30 * time.Second)
	one := DefaultPlanConfig(3 * time.Minute)
	one.PerTarget = 1
	lonely := DefaultPlanConfig(3 * time.Minute)
	lonely.Brokers = 1
	backwards := DefaultPlanConfig(3 * time.Minute)
	backwards.Down = [2]time.Duration{5 * time.Second, time.Second}
	crowded := DefaultPlanConfig(3 * time.Minute)
	crowded.PerTarget, crowded.MaxDown = 4, 1
	for name, c := range map[string]struct {
		cfg  PlanConfig
		want string
	}{
		"too short":        {short, "duration 30s"},
		"one fault":        {one, "faults per target 1"},
		"one broker":       {lonely, "brokers 1"},
		"range backwards":  {backwards, "down range 5s–1s"},
		"one down at most": {crowded, "keeps at most 1 targets down"},
	} {
		if _, err := Plan(7, c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, c.want)
		}
	}
}

func TestRecordsHoldStillInTheirWindows(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	devices := map[string]int{}
	kinds := map[string]int{}
	for i := range 40000 {
		r := RecordAt(i, 4000, t0)
		if r != RecordAt(i, 4000, t0) {
			t.Fatalf("record %d is not the same twice", i)
		}
		if r.index() != i || r.Device != "dev"+strconv.Itoa(i%4000) {
			t.Fatalf("record %d: %+v", i, r)
		}
		// Whole days before t0, less under 30 minutes: no window boundary
		// ("in last Nd" from any instant between t0+1h and t0+23h) has
		// a record within an hour of it.
		back := t0.Sub(r.Time)
		days := back / (24 * time.Hour)
		if back < 0 || back-days*24*time.Hour >= 30*time.Minute || days > 20 {
			t.Fatalf("record %d at %s: %s before t0", i, r.Time, back)
		}
		devices[r.Device]++
		kinds[r.Name]++
	}
	if len(devices) != 4000 || kinds["shared"] < 4000 || kinds["article_read"] < 24000 {
		t.Errorf("devices %d, kinds %v", len(devices), kinds)
	}
}
