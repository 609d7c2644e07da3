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
	key  string // the extras key
	src  string // where it came from, e.g. "address.city"
	rank int
	val  tag.Value
}

// extrasBuilder turns a Segment object into typed extras.
type extrasBuilder struct {
	path    string // "properties" or "traits"
	prefix  string // prepended to every key ("group_")
	cands   []candidate
	dropped []string
}

func (b *extrasBuilder) drop(src, why string) {
	b.dropped = append(b.dropped, b.path+"."+src+": "+why)
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
			ckey, _ := unquote(ck)
			b.addChild(k, ckey, cv)
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

func (b *extrasBuilder) addChild(parent, k string, raw rawJSON) {
	src := srcKey(parent) + "." + srcKey(k)
	v, why := scalar(bytes.TrimSpace(raw))
	if why == "object" {
		why = "object nested in an object: only one level is flattened"
	}
	if why != "" {
		b.drop(src, why)
		return
	}
	key, _, ok := sanitize(b.prefix + parent + "_" + k)
	if !ok {
		b.drop(src, "flattened key "+quoteShort(b.prefix+parent+"_"+k)+" is invalid")
		return
	}
	b.cands = append(b.cands, candidate{key: key, src: src, rank: rankFlattened, val: v})
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
		return strings.Compare(x.src, y.src)
	})
	n := min(len(b.cands), tag.MaxExtras)
	out := make([]tag.Extra, 0, n)
	room := tag.MaxExtras - nfixed
	for i, c := range b.cands {
		switch {
		case i > 0 && c.key == b.cands[i-1].key:
			b.drop(c.src, "same key "+c.key+" as "+b.path+"."+b.cands[i-1].src)
			continue
		case c.rank != rankFixed && room == 0:
			b.drop(c.src, fmt.Sprintf("more than %d keys (kept the first in key order)", tag.MaxExtras))
			continue
		case c.val.Type == tag.TypeString && len(c.val.Str) > tag.MaxValueLen:
			return nil, nil, &MessageError{Field: b.path + "." + c.src, Reason: fmt.Sprintf("string of %d bytes, more than the limit of %d", len(c.val.Str), tag.MaxValueLen)}
		}
		if c.rank != rankFixed {
			room--
		}
		out = append(out, tag.Extra{Key: c.key, Value: c.val})
	}
	if len(out) == 0 {
		out = nil
	}
	return out, b.dropped, nil
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

// srcKey renders a Segment key for a warning or an error: as it is when it
// is plain, quoted and cut to 64 bytes otherwise.
func srcKey(k string) string {
	for i := 0; i < len(k); i++ {
		if c := k[i]; c <= ' ' || c == '"' || c == '.' || c >= 0x7f {
			return quoteShort(k)
		}
	}
	if k == "" || len(k) > tag.MaxKeyLen {
		return quoteShort(k)
	}
	return k
}
