package triggers

import (
	"fmt"
	"math"
	"strconv"
	"testing"

	"github.com/twmb/murmur3"
)

const assignDevices = 100_000

func deviceIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("dev-%08x-%d", uint32(i)*2654435761, i)
	}
	return ids
}

// within fails unless got successes out of n are within 5 binomial
// standard deviations of share p (a bound a correct split misses with
// probability 6e-7).
func within(t *testing.T, what string, got, n int, p float64) {
	t.Helper()
	sigma := math.Sqrt(float64(n) * p * (1 - p))
	want := float64(n) * p
	if d := math.Abs(float64(got) - want); d > 5*sigma+0.5 {
		t.Errorf("%s: %d of %d, want %.0f ± %.0f (5σ), off by %.1fσ", what, got, n, want, 5*sigma, d/math.Max(sigma, 1e-9))
	}
}

func splitCampaign() *Campaign {
	return &Campaign{Name: "spring-promo", Who: Who{Sample: 40, Control: 10, Variants: []Variant{
		{Name: "a", Weight: 50}, {Name: "b", Weight: 30}, {Name: "c", Weight: 20}}}}
}

func TestAssignShares(t *testing.T) {
	c := splitCampaign()
	ids := deviceIDs(assignDevices)
	var sampled, control int
	variants := make([]int, 3)         // over all devices
	inVariant := make([]int, 3)        // sampled devices per variant
	controlInVariant := make([]int, 3) // control devices per variant
	for _, id := range ids {
		a := Assign(c, id)
		if a.Variant < 0 || a.Variant > 2 {
			t.Fatalf("%s: variant %d", id, a.Variant)
		}
		variants[a.Variant]++
		if a.Control && !a.InSample {
			t.Fatalf("%s: control outside the sample", id)
		}
		if !a.InSample {
			continue
		}
		sampled++
		inVariant[a.Variant]++
		if a.Control {
			control++
			controlInVariant[a.Variant]++
		}
	}
	within(t, "sample", sampled, assignDevices, 0.40)
	within(t, "control among sampled", control, sampled, 0.10)
	for i, v := range c.Who.Variants {
		within(t, "variant "+v.Name, variants[i], assignDevices, v.Weight/100)
		within(t, "variant "+v.Name+" among sampled", inVariant[i], sampled, v.Weight/100)
		// Independence: the control share is the same in every variant.
		within(t, "control in variant "+v.Name, controlInVariant[i], inVariant[i], 0.10)
	}
}

// The sample and control hashes are independent of each other too: the
// sample share among the devices that the control hash would hold out is
// the sample's.
func TestAssignSampleControlIndependent(t *testing.T) {
	c := &Campaign{Name: "x", Who: Who{Sample: 30, Control: 50}}
	all := &Campaign{Name: "x", Who: Who{Sample: 100, Control: 50}}
	var ctl, ctlSampled int
	for _, id := range deviceIDs(assignDevices) {
		if !Assign(all, id).Control {
			continue
		}
		ctl++
		if Assign(c, id).InSample {
			ctlSampled++
		}
	}
	within(t, "control with sample 100", ctl, assignDevices, 0.5)
	within(t, "sampled among control", ctlSampled, ctl, 0.3)
}

// The same inputs give the same assignment: in another process, after a
// restart, on another instance. Golden values pin the hash convention.
func TestAssignStable(t *testing.T) {
	c := splitCampaign()
	ids := deviceIDs(1000)
	first := make([]Assignment, len(ids))
	for i, id := range ids {
		first[i] = Assign(c, id)
	}
	// A copy of the campaign, as a restarted instance would parse it.
	d := *c
	d.Who.Variants = append([]Variant(nil), c.Who.Variants...)
	for i, id := range ids {
		if got := Assign(&d, id); got != first[i] {
			t.Fatalf("%s: %+v then %+v", id, first[i], got)
		}
	}
	golden := map[string]Assignment{}
	for _, id := range []string{"dev-1", "dev-2", "dev-3", "dev-4", "dev-5", "dev-6"} {
		golden[id] = Assign(c, id)
	}
	want := map[string]Assignment{
		"dev-1": {InSample: false, Control: false, Variant: 0},
		"dev-2": {InSample: false, Control: false, Variant: 0},
		"dev-3": {InSample: true, Control: false, Variant: 0},
		"dev-4": {InSample: false, Control: false, Variant: 0},
		"dev-5": {InSample: false, Control: false, Variant: 2},
		"dev-6": {InSample: true, Control: false, Variant: 0},
	}
	for id, w := range want {
		if golden[id] != w {
			t.Errorf("%s: %+v, want %+v (the assignment convention changed: every device would move)", id, golden[id], w)
		}
	}
}

// The sample decision is the segment sample's: salt + "/" + device id.
func TestAssignSampleConvention(t *testing.T) {
	c := &Campaign{Name: "n", Salt: "s", Who: Who{Sample: 50}}
	for _, id := range deviceIDs(2000) {
		h := murmur3.StringSum32("s/" + id)
		if want := float64(h) < 0.5*(1<<32); Assign(c, id).InSample != want {
			t.Fatalf("%s: in sample %v, want %v", id, !want, want)
		}
	}
	// Salt defaults to the name.
	named := &Campaign{Name: "s", Who: Who{Sample: 50}}
	for _, id := range deviceIDs(2000) {
		if Assign(named, id) != Assign(c, id) {
			t.Fatalf("%s: salt s and name s differ", id)
		}
	}
}

func TestAssignEdges(t *testing.T) {
	ids := deviceIDs(5000)
	for _, tc := range []struct {
		name string
		who  Who
		want func(Assignment) bool
	}{
		{"no sample given keeps all", Who{}, func(a Assignment) bool { return a.InSample && !a.Control && a.Variant == -1 }},
		{"sample 100 keeps all", Who{Sample: 100}, func(a Assignment) bool { return a.InSample }},
		{"control 0 holds none", Who{Sample: 100, Control: 0}, func(a Assignment) bool { return !a.Control }},
		{"one variant takes all", Who{Variants: []Variant{{Name: "only", Weight: 3}}}, func(a Assignment) bool { return a.Variant == 0 }},
		{"zero weight gets none", Who{Variants: []Variant{{Name: "a", Weight: 0}, {Name: "b", Weight: 1}}}, func(a Assignment) bool { return a.Variant == 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Campaign{Name: "edge", Who: tc.who}
			for _, id := range ids {
				if a := Assign(c, id); !tc.want(a) {
					t.Fatalf("%s: %+v", id, a)
				}
			}
		})
	}
	t.Run("all weights zero share equally", func(t *testing.T) {
		c := &Campaign{Name: "eq", Who: Who{Variants: []Variant{{Name: "a"}, {Name: "b"}, {Name: "c"}, {Name: "d"}}}}
		n := make([]int, 4)
		for _, id := range deviceIDs(assignDevices) {
			n[Assign(c, id).Variant]++
		}
		for i := range n {
			within(t, "variant "+strconv.Itoa(i), n[i], assignDevices, 0.25)
		}
	})
}

// What the documentation of Assign promises when the campaign changes.
func TestAssignStability(t *testing.T) {
	ids := deviceIDs(assignDevices)
	base := splitCampaign()
	before := make([]Assignment, len(ids))
	for i, id := range ids {
		before[i] = Assign(base, id)
	}
	vs := func(ws ...Variant) []Variant { return ws }
	for _, tc := range []struct {
		name string
		edit func(c *Campaign)
		// allowed reports whether a device may go from variant a to b.
		allowed func(from, to string) bool
		inv     func(t *testing.T, old, new Assignment)
		// moves is the share of devices that must change variant: the
		// least that the new weights allow.
		moves float64
	}{
		{"sample and control change", func(c *Campaign) { c.Who.Sample, c.Who.Control = 70, 5 }, nil,
			func(t *testing.T, o, n Assignment) {
				if o.InSample && !n.InSample {
					t.Fatal("raising the sample removed a device")
				}
				if n.Control && !o.Control && o.InSample {
					t.Fatal("lowering control added a device already sampled")
				}
			}, 0},
		{"scaled weights", func(c *Campaign) {
			c.Who.Variants = vs(Variant{Name: "a", Weight: 5}, Variant{Name: "b", Weight: 3}, Variant{Name: "c", Weight: 2})
		}, func(string, string) bool { return false }, nil, 0},
		{"reordered", func(c *Campaign) {
			c.Who.Variants = vs(Variant{Name: "c", Weight: 20}, Variant{Name: "a", Weight: 50}, Variant{Name: "b", Weight: 30})
		}, func(string, string) bool { return false }, nil, 0},
		{"raise c", func(c *Campaign) { c.Who.Variants[2].Weight = 40 }, func(from, to string) bool { return to == "c" }, nil, 40.0/120 - 0.2},
		{"lower a", func(c *Campaign) { c.Who.Variants[0].Weight = 10 }, func(from, to string) bool { return from == "a" }, nil, 0.5 - 10.0/60},
		{"add d", func(c *Campaign) { c.Who.Variants = append(c.Who.Variants, Variant{Name: "d", Weight: 25}) },
			func(from, to string) bool { return to == "d" }, nil, 25.0 / 125},
		{"remove b", func(c *Campaign) { c.Who.Variants = vs(c.Who.Variants[0], c.Who.Variants[2]) },
			func(from, to string) bool { return from == "b" }, nil, 0.3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := splitCampaign()
			tc.edit(c)
			moved := 0
			for i, id := range ids {
				a := Assign(c, id)
				if tc.inv != nil {
					tc.inv(t, before[i], a)
				}
				from := base.Who.Variants[before[i].Variant].Name
				to := c.Who.Variants[a.Variant].Name
				if from == to {
					continue
				}
				moved++
				if tc.allowed == nil || !tc.allowed(from, to) {
					t.Fatalf("%s moved from %s to %s", id, from, to)
				}
			}
			within(t, "devices that changed variant", moved, len(ids), tc.moves)
		})
	}
	// Shares after a change are the new weights'.
	c := splitCampaign()
	c.Who.Variants[2].Weight = 40 // a 50, b 30, c 40: c gets 40/120
	n := 0
	for _, id := range ids {
		if Assign(c, id).Variant == 2 {
			n++
		}
	}
	within(t, "c after raising its weight", n, len(ids), 40.0/120)
}

func BenchmarkAssign(b *testing.B) {
	c := splitCampaign()
	ids := deviceIDs(1024)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		Assign(c, ids[i&1023])
		i++
	}
}
