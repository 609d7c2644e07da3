package segmentapi

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/openengage/engage/pipeline/tag"
)

// member is a member of a JSON object.
type member struct {
	key string
	raw rawJSON
}

// object reads the members of properties or traits: absent or null is
// empty. A key repeated in the object appears twice.
func object(raw rawJSON, field string) ([]member, *MessageError) {
	raw = bytes.TrimSpace(raw)
	if raw.absent() {
		return nil, nil
	}
	ms := make([]member, 0, 8)
	if !members(raw, func(key, val []byte) {
		k, _ := unquote(key)
		ms = append(ms, member{k, val})
	}) {
		return nil, &MessageError{Field: field, Reason: "expected an object, got JSON " + jsonKind(raw)}
	}
	return ms, nil
}

// get returns the value of key in ms (the last one, as a decoder would).
func get(ms []member, key string) (rawJSON, bool) {
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].key == key {
			return ms[i].raw, true
		}
	}
	return nil, false
}

// Ranks of candidate extras: for one key, the lowest rank wins.
const (
	rankFixed     = iota // set by the mapping (group_id, category)
	rankExact            // a first-level key kept as it is
	rankRenamed          // a first-level key with characters replaced
	rankFlattened        // parent_child from a nested object
)

type candidate struct {
	key   string // the extras key
	src   string // where it came from, e.g. "city"; for rankFlattened the parent, "address"…
	child string // …and the child's key, "city": source() joins them only when needed
	rank  int
	val   tag.Value
}

// source names where c came from in a warning or an error, e.g.
// "address.city". A flattened key's is built here, only for the few
// candidates that are named, rather than for every nested property.
func (c *candidate) source() string {
	if c.rank == rankFlattened {
		return srcKey(c.src) + "." + srcKey(c.child)
	}
	return c.src
}

// extrasBuilder turns a Segment object into typed extras.
type extrasBuilder struct {
	path   string // "properties" or "traits"
	prefix string // prepended to every key ("group_")
	cands  []candidate
	// The warnings, written one after the other ("path.src: why"), ending
	// at dropEnds: one string for all of them at the end (dropped), not
	// one allocation each.
	drops    []byte
	dropEnds []int
}

func (b *extrasBuilder) drop(src, why string) {
	b.drops = append(b.drops, b.path...)
	b.drops = append(b.drops, '.')
	b.drops = append(b.drops, src...)
	b.endDrop(why)
}

func (b *extrasBuilder) endDrop(why string) {
	b.drops = append(b.drops, ": "...)
	b.drops = append(b.drops, why...)
	b.dropEnds = append(b.dropEnds, len(b.drops))
}

// dropped returns the warnings.
func (b *extrasBuilder) dropped() []string {
	if len(b.dropEnds) == 0 {
		return nil
	}
	all := string(b.drops)
	out := make([]string, len(b.dropEnds))
	start := 0
	for i, end := range b.dropEnds {
		out[i] = all[start:end]
		start = end
	}
	return out
}

// buildExtras maps the first-level keys of obj to extras, flattening one
// level of nested objects into parent_child keys, sanitizing keys, and
// keeping at most tag.MaxExtras of them (fixed ones first, then by key).
// What it leaves out is returned in dropped; a string over tag.MaxValueLen
// is an error.
func buildExtras(obj []member, path, prefix string, fixed []tag.Extra) ([]tag.Extra, []string, *MessageError) {
	if len(obj) == 0 && len(fixed) == 0 {
		return nil, nil, nil
	}
	b := extrasBuilder{path: path, prefix: prefix, cands: make([]candidate, 0, len(obj)+len(fixed))}
	for _, x := range fixed {
		b.cands = append(b.cands, candidate{key: x.Key, src: x.Key, rank: rankFixed, val: x.Value})
	}
	for _, m := range obj {
		b.add(m.key, m.raw)
	}
	return b.finish(len(fixed))
}

func (b *extrasBuilder) add(k string, raw rawJSON) {
	src := srcKey(k)
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '{' {
		if !members(raw, func(ck, cv []byte) {
			b.addChild(k, ck, cv)
		}) {
			b.drop(src, "unreadable object")
		}
		return
	}
	v, why := scalar(raw)
	if why != "" {
		b.drop(src, why)
		return
	}
	key, renamed, ok := sanitize(b.prefix + k)
	if !ok {
		b.drop(src, "invalid key, even with invalid characters replaced by _")
		return
	}
	rank := rankExact
	if renamed {
		rank = rankRenamed
	}
	b.cands = append(b.cands, candidate{key: key, src: src, rank: rank, val: v})
}

// addChild adds the member of the object parent whose raw (quoted) key is
// rawKey: the key is only made a string when it is kept or needs quoting.
func (b *extrasBuilder) addChild(parent string, rawKey []byte, raw rawJSON) {
	v, why := scalar(bytes.TrimSpace(raw))
	if why == "object" {
		why = "object nested in an object: only one level is flattened"
	}
	if why != "" {
		if inner, ok := plainQuoted(rawKey); ok {
			b.drops = append(b.drops, b.path...)
			b.drops = append(b.drops, '.')
			b.drops = appendSrcKey(b.drops, parent)
			b.drops = append(b.drops, '.')
			b.drops = append(b.drops, inner...)
			b.endDrop(why)
			return
		}
		k, _ := unquote(rawKey)
		b.dropChild(parent, k, why)
		return
	}
	if inner, ok := plainQuoted(rawKey); ok {
		// The usual case: the key made straight from the raw one, and
		// the child's key a part of it.
		if key := b.prefix + parent + "_" + string(inner); tag.ValidKey(key) {
			b.cands = append(b.cands, candidate{key: key, src: parent, child: key[len(key)-len(inner):], rank: rankFlattened, val: v})
			return
		}
	}
	k, _ := unquote(rawKey)
	key, _, ok := sanitize(b.prefix + parent + "_" + k)
	if !ok {
		b.dropChild(parent, k, "flattened key "+quoteShort(b.prefix+parent+"_"+k)+" is invalid")
		return
	}
	b.cands = append(b.cands, candidate{key: key, src: parent, child: k, rank: rankFlattened, val: v})
}

// dropChild is drop for the child k of the object parent, in one string.
func (b *extrasBuilder) dropChild(parent, k, why string) {
	b.drops = append(b.drops, b.path...)
	b.drops = append(b.drops, '.')
	b.drops = appendSrcKey(b.drops, parent)
	b.drops = append(b.drops, '.')
	b.drops = appendSrcKey(b.drops, k)
	b.endDrop(why)
}

// finish sorts the candidates, resolves clashes and the limit.
func (b *extrasBuilder) finish(nfixed int) ([]tag.Extra, []string, *MessageError) {
	slices.SortFunc(b.cands, func(x, y candidate) int {
		if c := strings.Compare(x.key, y.key); c != 0 {
			return c
		}
		if x.rank != y.rank {
			return x.rank - y.rank
		}
		return strings.Compare(x.source(), y.source())
	})
	n := min(len(b.cands), tag.MaxExtras)
	out := make([]tag.Extra, 0, n)
	room := tag.MaxExtras - nfixed
	for i := range b.cands {
		c := &b.cands[i]
		switch {
		case i > 0 && c.key == b.cands[i-1].key:
			b.drop(c.source(), "same key "+c.key+" as "+b.path+"."+b.cands[i-1].source())
			continue
		case c.rank != rankFixed && room == 0:
			b.drop(c.source(), fmt.Sprintf("more than %d keys (kept the first in key order)", tag.MaxExtras))
			continue
		case c.val.Type == tag.TypeString && len(c.val.Str) > tag.MaxValueLen:
			return nil, nil, &MessageError{Field: b.path + "." + c.source(), Reason: fmt.Sprintf("string of %d bytes, more than the limit of %d", len(c.val.Str), tag.MaxValueLen)}
		}
		if c.rank != rankFixed {
			room--
		}
		out = append(out, tag.Extra{Key: c.key, Value: c.val})
	}
	if len(out) == 0 {
		out = nil
	}
	return out, b.dropped(), nil
}

// scalar converts a JSON string, number or bool to a value. For anything
// else it says why not.
func scalar(raw []byte) (tag.Value, string) {
	if len(raw) == 0 {
		return tag.Value{}, "empty"
	}
	switch raw[0] {
	case '"':
		if s, ok := unquote(raw); ok {
			return tag.String(s), ""
		}
		return tag.Value{}, "unreadable string"
	case 't':
		return tag.Bool(true), ""
	case 'f':
		return tag.Bool(false), ""
	case 'n':
		return tag.Value{}, "null"
	case '[':
		return tag.Value{}, "array: arrays are not kept"
	case '{':
		return tag.Value{}, "object"
	}
	if len(raw) <= 15 && (raw[0] != '0' || len(raw) == 1) {
		// A small non-negative integer (the usual number): exact in a
		// float64, as strconv.ParseFloat would give it.
		v, digits := int64(0), true
		for _, c := range raw {
			if c < '0' || c > '9' {
				digits = false
				break
			}
			v = v*10 + int64(c-'0')
		}
		if digits {
			return tag.Number(float64(v)), ""
		}
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return tag.Value{}, "unreadable number"
	}
	if math.IsInf(f, 0) || err != nil {
		return tag.Value{}, "number out of range"
	}
	return tag.Number(f), ""
}

// sanitize makes k a valid key: characters other than ASCII letters, digits
// and _ become _, and x_ is prepended if it does not start with a letter.
// It reports whether k was changed and whether the result is valid.
func sanitize(k string) (key string, renamed, ok bool) {
	if tag.ValidKey(k) {
		return k, false, true
	}
	if k == "" {
		return "", false, false
	}
	var sb strings.Builder
	if !isLetter(k[0]) {
		sb.WriteString("x_")
	}
	for _, r := range k {
		if sb.Len() > tag.MaxKeyLen {
			return "", true, false
		}
		if r < 0x80 && (isLetter(byte(r)) || r >= '0' && r <= '9' || r == '_') {
			sb.WriteRune(r)
		} else {
			sb.WriteByte('_')
		}
	}
	key = sb.String()
	return key, true, tag.ValidKey(key)
}

// appendSrcKey appends srcKey(k) to b, without allocating for a plain key.
func appendSrcKey(b []byte, k string) []byte {
	if plainKey(k) {
		return append(b, k...)
	}
	return append(b, quoteShort(k)...)
}

// plainQuoted returns what the JSON string raw holds when it has no
// escapes and srcKey renders it as it is (plainKey).
func plainQuoted(raw []byte) ([]byte, bool) {
	if len(raw) < 3 || raw[0] != '"' || raw[len(raw)-1] != '"' || len(raw)-2 > tag.MaxKeyLen {
		return nil, false
	}
	inner := raw[1 : len(raw)-1]
	for _, c := range inner {
		if c <= ' ' || c == '"' || c == '.' || c == '\\' || c >= 0x7f {
			return nil, false
		}
	}
	return inner, true
}

// plainKey reports whether srcKey renders k as it is.
func plainKey(k string) bool {
	if k == "" || len(k) > tag.MaxKeyLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c <= ' ' || c == '"' || c == '.' || c >= 0x7f {
			return false
		}
	}
	return true
}

// srcKey renders a Segment key for a warning or an error: as it is when it
// is plain, quoted and cut to 64 bytes otherwise.
func srcKey(k string) string {
	if plainKey(k) {
		return k
	}
	return quoteShort(k)
}
