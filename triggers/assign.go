package triggers

import (
	"math"
	"strconv"

	"github.com/twmb/murmur3"
)

// Assignment is where a device falls in a campaign: in its sample or not,
// in its control group or not, and its variant.
type Assignment struct {
	// InSample: the device is in the campaign's sample (Who.Sample).
	InSample bool
	// Control: the device is in the sample and held out as control
	// (Who.Control); it is decided but never sent.
	Control bool
	// Variant is the device's index in Who.Variants, -1 when the campaign
	// has none. It is given for every device, in the sample or not, in
	// the control group or not: it depends on the salt, the device and the
	// variants only (so that a control device can be compared with the
	// arm it would have had).
	Variant int
}

// Assign places a device in a campaign: sample, control group and variant.
// It is a pure function of the campaign's salt (Campaign.Salt, else its
// Name), its Who and the device id, so every instance, before and after a
// restart, assigns a device alike.
//
// Three independent murmur3 (32-bit) hashes decide, each over
// salt + suffix + "/" + device id, in the convention of segment samples
// (segments/engine: salt + "/" + device id, kept below percent/100 × 2^32):
//
//   - sample: suffix "" (the segment convention itself): in the sample when
//     the hash is below Sample/100 × 2^32 (Sample 0, not given, keeps all);
//   - control: suffix "/control": in the control group when in the sample
//     and the hash is below Control/100 × 2^32;
//   - variant: suffix "/variant/" + the variant's name (its index in
//     decimal when it has none), one hash per variant: weighted rendezvous
//     hashing, the device takes the variant whose score
//     -ln(u)/weight is lowest, u = (hash + 0.5)/2^32. The lowest of
//     exponential variables of rates w_i is the i-th with probability
//     w_i/Σw, so the shares are the weights'.
//
// What stays stable: the three decisions do not depend on each other, so
// changing Sample or Control moves no device between variants; raising
// Sample (or Control) only adds devices to the sample (control group), and
// lowering it only removes some. A device keeps its variant while the
// variants' names are the same and no weight changes. When weights change,
// a device moves only from a variant whose weight was lowered, relative
// to the others, to one whose weight was raised: precisely, a device in
// variant i stays in i when no other variant's weight grew by a larger
// factor than i's. So scaling all weights changes nothing, raising one
// variant's weight only brings devices into it, lowering one only takes
// devices out of it, adding a variant only moves devices into the new one,
// removing one moves only its own devices (to the others, in proportion
// to their weights), and reordering the variants moves nobody. A variant
// is known by its name: renaming it draws it anew. Weights <= 0 get no
// devices, unless every weight is <= 0: then they share equally.
func Assign(c *Campaign, deviceID string) Assignment {
	salt := c.Salt
	if salt == "" {
		salt = c.Name
	}
	var stack [128]byte
	buf := stack[:0]
	a := Assignment{Variant: -1}

	buf = append(append(append(buf, salt...), '/'), deviceID...)
	a.InSample = c.Who.Sample <= 0 || below(murmur3.Sum32(buf), c.Who.Sample)

	buf = append(append(append(buf[:0], salt...), "/control/"...), deviceID...)
	a.Control = a.InSample && c.Who.Control > 0 && below(murmur3.Sum32(buf), c.Who.Control)

	if len(c.Who.Variants) > 0 {
		a.Variant = pickVariant(buf[:0], salt, deviceID, c.Who.Variants)
	}
	return a
}

// below reports whether a 32-bit hash falls in the first percent of the
// hash space: h < percent/100 × 2^32.
func below(h uint32, percent float64) bool {
	return float64(h) < percent/100*(1<<32)
}

// pickVariant is the weighted rendezvous draw of Assign.
func pickVariant(buf []byte, salt, deviceID string, vs []Variant) int {
	equal := true
	for _, v := range vs {
		if v.Weight > 0 {
			equal = false
			break
		}
	}
	best, bestScore := -1, math.Inf(1)
	for i, v := range vs {
		w := v.Weight
		if equal {
			w = 1
		}
		if w <= 0 {
			continue
		}
		buf = append(append(buf[:0], salt...), "/variant/"...)
		if v.Name != "" {
			buf = append(buf, v.Name...)
		} else {
			buf = strconv.AppendInt(buf, int64(i), 10)
		}
		buf = append(append(buf, '/'), deviceID...)
		u := (float64(murmur3.Sum32(buf)) + 0.5) / (1 << 32)
		if score := -math.Log(u) / w; score < bestScore {
			best, bestScore = i, score
		}
	}
	return best
}
