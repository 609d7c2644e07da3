package segmentapi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/openengage/engage/pipeline/tag"
)

// The extras of properties and traits are built in one pass over the
// object and in buffers that the messages of a request share (scratch):
// a field costs no allocation of its own, only what the records keep does
// (one string per message for all its extras' keys and string values), and
// the warnings of a message are written out for the first maxListed only,
// the others counted.

// member is a member of properties or traits: its key, unescaped, in
// scratch.keys, and its raw value in scratch.raw. When the value is an
// object, its members are scratch.kids[lo:hi], read in the same pass.
// Members, kids and candidates hold offsets, not slices: no pointers for
// the garbage collector to follow or for write barriers to record.
type member struct {
	key, val span
	lo, hi   int32
}

// kid is a member of an object nested in properties or traits: its raw
// key (quoted, escapes as sent) and value, in scratch.raw.
type kid struct{ key, val span }

// span is a part of one of scratch's buffers.
type span struct{ off, n int32 }

func (s span) of(b []byte) []byte { return b[s.off : s.off+s.n] }

// Ranks of candidate extras: for one key, the lowest rank wins.
const (
	rankFixed     = iota // set by the mapping (group_id, category)
	rankExact            // a first-level key kept as it is
	rankRenamed          // a first-level key with characters replaced
	rankFlattened        // parent_child from a nested object
)

// candidate is a possible extra, small so that sorting moves little. Where
// it came from (its source, as a warning names it: city, address.city,
// "a b") is written out only when needed (appendSrc): for a warning, an
// error, or to order two candidates of the same key.
type candidate struct {
	pre  uint64 // the key's first 8 bytes, big-endian: most comparisons end here
	key  span
	rank int32 // rankFixed…
	idx  int32 // its value in scratch.vals, in the order found: the last tie-break
}

// candValue is the value of a candidate: a number or bool, a fixed value
// (fixed[i]), or a string still raw (quoted, in scratch.raw) until the
// candidate is kept.
type candValue struct {
	kind  uint8 // valNumber…
	b     bool
	num   float64
	str   span
	fixed int32
	m, k  int32  // the candidate's member in scratch.obj (-1 for a fixed one) and kid (-1 for none)
	split int32  // for a flattened one made of plain keys as sent, the parent's length; else -1
	src   span   // its source in scratch.srcs once written (srcOf), n -1 until then
	spre  uint64 // the source's first 8 bytes (or split), once needed
}

const (
	valNumber = iota
	valBool
	valString
	valFixed
)

// kept is a candidate that becomes an extra: its key and string value in
// scratch.out.
type kept struct {
	key, str span
	idx      int32
}

// scratch holds the buffers that the extras of a request's messages are
// built in, reused from one message to the next: what the records keep is
// copied out of them.
type scratch struct {
	raw     rawJSON // the object being read
	obj     []member
	keys    []byte // the members' keys, then the keys of candidates made from them
	members []member
	kids    []kid
	fixed   []tag.Extra
	cands   []candidate
	vals    []candValue
	kept    []kept
	tmp     []byte // a key being made
	srcs    []byte // sources of candidates, written once each (srcOf)
	bySrc   bool   // sort orders candidates of one key and rank by source
	bySplit bool   // …given by their parents' lengths (candValue.split)
	child   []byte // a child's key, for appendSrc
	out     []byte // the kept keys and string values, one string at the end
	path    string // "properties" or "traits"
	prefix  string // prepended to every key ("group_")
	drops   dropList
	slab    []tag.Record // see one
	xslab   []tag.Extra  // see extras
	parts   int          // partitions made, for the tests of what is sorted
}

// one returns a zero record in a slice of its own, cut from a block that
// the records of a request's messages share: one allocation for many
// messages.
func (sc *scratch) one() []tag.Record {
	if len(sc.slab) == 0 {
		sc.slab = make([]tag.Record, 32)
	}
	s := sc.slab[:1:1]
	sc.slab = sc.slab[1:]
	return s
}

// extras returns a slice of n extras of its own (appending to it
// reallocates), cut from a block that the messages of a request share: a
// message of 64 extras made a 5 KB allocation of its own.
func (sc *scratch) extras(n int) []tag.Extra {
	if len(sc.xslab) < n {
		sc.xslab = make([]tag.Extra, max(n, 512))
	}
	s := sc.xslab[:n:n]
	sc.xslab = sc.xslab[n:]
	return s
}

// maxListed bounds the warnings written out for one message: the others
// are counted in a last one. (The collector answers at most 100 a request.)
const maxListed = 10

// dropList holds the warnings of the message being mapped: the first
// maxListed written one after the other in buf, ending at ends, and how
// many more there were.
type dropList struct {
	buf  []byte
	ends []int32
	more int
	path string // of the warnings counted in more
}

func (dl *dropList) reset() {
	dl.buf, dl.ends, dl.more, dl.path = dl.buf[:0], dl.ends[:0], 0, ""
}

// full reports whether the next warning is only counted.
func (dl *dropList) full() bool { return len(dl.ends) >= maxListed }

// open starts a warning, which the caller writes in buf and ends with
// close; it reports false, counting the warning, when the list is full.
func (dl *dropList) open(path string) bool {
	if dl.full() {
		dl.more++
		dl.path = path
		return false
	}
	return true
}

func (dl *dropList) close(why string) {
	dl.buf = append(dl.buf, ": "...)
	dl.buf = append(dl.buf, why...)
	dl.ends = append(dl.ends, int32(len(dl.buf)))
}

// merge returns the warnings of the message, with others (from the
// context), sorted; nil when there are none. Those past maxListed are
// counted in a last entry.
func (dl *dropList) merge(others []string) []string {
	if len(others) == 0 && len(dl.ends) == 0 {
		return nil
	}
	out := make([]string, 0, len(others)+len(dl.ends)+1)
	out = append(out, others...)
	if len(dl.ends) > 0 {
		all, start := string(dl.buf), int32(0)
		for _, end := range dl.ends {
			out = append(out, all[start:end])
			start = end
		}
	}
	slices.Sort(out)
	if dl.more > 0 {
		out = append(out, dl.path+": "+strconv.Itoa(dl.more)+" more dropped fields not listed (at most "+strconv.Itoa(maxListed)+" a message)")
	}
	return out
}

// at returns the bytes of s in keys.
func (sc *scratch) at(s span) []byte { return sc.keys[s.off : s.off+s.n] }

// key and val return the key and the raw value of m.
func (sc *scratch) key(m *member) []byte  { return m.key.of(sc.keys) }
func (sc *scratch) val(m *member) rawJSON { return m.val.of(sc.raw) }

// object reads the members of properties or traits, and those of the
// objects nested in them, in one pass: absent or null is empty. A key
// repeated in the object appears twice. The members are valid until the
// next call.
func (sc *scratch) object(raw rawJSON, field string) ([]member, *MessageError) {
	raw = bytes.TrimSpace(raw)
	if raw.absent() {
		return nil, nil
	}
	sc.raw, sc.keys, sc.members, sc.kids = raw, sc.keys[:0], sc.members[:0], sc.kids[:0]
	end := scanObject(raw, 0, func(key []byte, i int) int {
		var m member
		off := len(sc.keys)
		sc.keys = appendKey(sc.keys, key)
		m.key = span{int32(off), int32(len(sc.keys) - off)}
		var end int
		if raw[i] == '{' {
			m.lo = int32(len(sc.kids))
			end = scanObject(raw, i, func(ck []byte, j int) int {
				e := skipValue(raw, j)
				if e >= 0 {
					sc.kids = append(sc.kids, kid{span{int32(j - len(ck) - 1), int32(len(ck))}, span{int32(j), int32(e - j)}})
				}
				return e
			})
			m.hi = int32(len(sc.kids))
		} else {
			end = skipValue(raw, i)
		}
		if end >= 0 {
			m.val = span{int32(i), int32(end - i)}
			sc.members = append(sc.members, m)
		}
		return end
	})
	if end < 0 {
		return nil, &MessageError{Field: field, Reason: "expected an object, got JSON " + jsonKind(raw)}
	}
	return sc.members, nil
}

// appendKey appends the key that a raw JSON key holds: the inside of the
// quotes when it is plain ASCII without escapes, else decoded.
func appendKey(b, raw []byte) []byte {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return b
	}
	inner := raw[1 : len(raw)-1]
	for _, c := range inner {
		if c == '\\' || c == '"' || c < 0x20 || c >= 0x80 {
			start := len(b)
			b, ok := appendUnquoted(b, inner)
			if !ok {
				return b[:start]
			}
			return b
		}
	}
	return append(b, inner...)
}

// get returns the value of key in ms (the last one, as a decoder would).
func (sc *scratch) get(ms []member, key string) (rawJSON, bool) {
	for i := len(ms) - 1; i >= 0; i-- {
		if string(sc.key(&ms[i])) == key {
			return sc.val(&ms[i]), true
		}
	}
	return nil, false
}

// lookup returns the value of key in the object raw (the last one), with
// no more than a scan: for the few fields read before the object is.
func lookup(raw rawJSON, key string) rawJSON {
	var v rawJSON
	var k []byte
	members(raw, func(rk, val []byte) {
		if k = appendKey(k[:0], rk); string(k) == key {
			v = val
		}
	})
	return v
}

// buildExtras maps the first-level keys of obj to extras, flattening one
// level of nested objects into parent_child keys, sanitizing keys, and
// keeping at most tag.MaxExtras of them (fixed ones first, then by key).
// What it leaves out goes to sc.drops; a string over tag.MaxValueLen is an
// error.
func (sc *scratch) buildExtras(obj []member, path, prefix string, fixed []tag.Extra) ([]tag.Extra, *MessageError) {
	if len(obj) == 0 && len(fixed) == 0 {
		return nil, nil
	}
	sc.path, sc.prefix, sc.fixed, sc.obj = path, prefix, fixed, obj
	sc.cands, sc.vals, sc.srcs = sc.cands[:0], sc.vals[:0], sc.srcs[:0]
	if len(obj) == 0 {
		sc.keys = sc.keys[:0] // else it holds obj's keys, which keys of candidates point to
	}
	for i, x := range fixed {
		off := len(sc.keys)
		sc.keys = append(sc.keys, x.Key...)
		sc.cand(span{int32(off), int32(len(x.Key))}, rankFixed, -1, -1, candValue{kind: valFixed, fixed: int32(i)})
	}
	for i := range obj {
		sc.add(int32(i))
	}
	return sc.finish(len(fixed))
}

func (sc *scratch) cand(key span, rank int, m, k int32, v candValue) {
	sc.cands = append(sc.cands, candidate{pre: prefix8(sc.at(key)), key: key, rank: int32(rank), idx: int32(len(sc.vals))})
	v.m, v.k, v.split, v.src = m, k, -1, span{n: -1}
	sc.vals = append(sc.vals, v)
}

// srcOf returns the source of c, written in srcs the first time: the sort
// may compare a candidate many times.
func (sc *scratch) srcOf(c *candidate) []byte {
	v := &sc.vals[c.idx]
	if v.src.n < 0 {
		off := len(sc.srcs)
		sc.srcs = sc.appendSrc(sc.srcs, c)
		v.src = span{int32(off), int32(len(sc.srcs) - off)}
	}
	return v.src.of(sc.srcs)
}

// prefix8 is the first 8 bytes of k, big-endian, zeros past its end: as a
// key has no zero byte, prefixes order as keys do, unless equal.
func prefix8(k []byte) uint64 {
	if len(k) >= 8 {
		return binary.BigEndian.Uint64(k)
	}
	if cap(k) >= 8 {
		// Read 8 bytes and clear those past k (a key in keys is
		// followed by others): no copy.
		return binary.BigEndian.Uint64(k[:8]) &^ (1<<(64-8*len(k)) - 1)
	}
	var b [8]byte
	copy(b[:], k)
	return binary.BigEndian.Uint64(b[:])
}

// appendSrc appends the source of c: its key as sent, as a warning names
// it (appendSrcKey), parent.child for a flattened one.
func (sc *scratch) appendSrc(b []byte, c *candidate) []byte {
	v := &sc.vals[c.idx]
	if v.m < 0 {
		return append(b, sc.at(c.key)...)
	}
	b = appendSrcKey(b, sc.key(&sc.obj[v.m]))
	if v.k < 0 {
		return b
	}
	sc.child = appendKey(sc.child[:0], sc.kids[v.k].key.of(sc.raw))
	return appendSrcKey(append(b, '.'), sc.child)
}

// readValue reads the raw value at v in sc.raw into a new last entry of
// vals, where the candidate made of it (candLast) finds it: a string is
// kept raw (checked valid by json.Valid with the body), a number or bool
// read. For anything else it says why not, and adds no entry. (Written in
// place: a candValue returned, then passed on, was copied three times.)
func (sc *scratch) readValue(v span) string {
	sc.vals = append(sc.vals, candValue{})
	p := &sc.vals[len(sc.vals)-1]
	raw := v.of(sc.raw)
	if len(raw) == 0 {
		sc.vals = sc.vals[:len(sc.vals)-1]
		return "empty"
	}
	switch c := raw[0]; {
	case c == '"':
		p.kind, p.str = valString, v
		return ""
	case c == 't', c == 'f':
		p.kind, p.b = valBool, c == 't'
		return ""
	case c >= '1' && c <= '9' && len(raw) <= 15:
		// A small positive integer (the usual number), as scalar
		// reads it.
		n := int64(0)
		for _, d := range raw {
			if d < '0' || d > '9' {
				goto other
			}
			n = n*10 + int64(d-'0')
		}
		p.kind, p.num = valNumber, float64(n)
		return ""
	}
other:
	x, why := scalar(raw)
	if why != "" {
		sc.vals = sc.vals[:len(sc.vals)-1]
		return why
	}
	p.kind, p.num = valNumber, x.Num
	return ""
}

// unread removes the value readValue added last, of a candidate not made.
func (sc *scratch) unread() { sc.vals = sc.vals[:len(sc.vals)-1] }

// candLast adds the candidate of the value readValue added last.
func (sc *scratch) candLast(key span, rank int, m, k int32) {
	idx := len(sc.vals) - 1
	v := &sc.vals[idx]
	v.m, v.k, v.split, v.src = m, k, -1, span{n: -1}
	sc.cands = append(sc.cands, candidate{pre: prefix8(sc.at(key)), key: key, rank: int32(rank), idx: int32(idx)})
}

// add adds the candidates of the first-level member sc.obj[i].
func (sc *scratch) add(i int32) {
	m := &sc.obj[i]
	k := sc.key(m)
	if m.val.n > 0 && sc.raw[m.val.off] == '{' {
		for j := m.lo; j < m.hi; j++ {
			sc.addChild(k, i, j)
		}
		return
	}
	if why := sc.readValue(m.val); why != "" {
		sc.drop(k, nil, why)
		return
	}
	var key span
	var renamed, ok bool
	if sc.prefix == "" {
		if validKey(k) {
			sc.candLast(m.key, rankExact, i, -1) // the key as sent, as it is in keys
			return
		}
		key, ok = sc.rename(k)
		renamed = true
	} else {
		sc.tmp = sc.tmp[:0]
		sc.tmp = append(sc.tmp, sc.prefix...)
		sc.tmp = append(sc.tmp, k...)
		key, renamed, ok = sc.newKey()
	}
	if !ok {
		sc.unread()
		sc.drop(k, nil, "invalid key, even with invalid characters replaced by _")
		return
	}
	rank := rankExact
	if renamed {
		rank = rankRenamed
	}
	sc.candLast(key, rank, i, -1)
}

// addChild adds the member sc.kids[j] of the object parent, sc.obj[i].
func (sc *scratch) addChild(parent []byte, i, j int32) {
	c := &sc.kids[j]
	why := sc.readValue(c.val)
	if why == "object" {
		why = "object nested in an object: only one level is flattened"
	}
	sc.tmp = sc.tmp[:0]
	sc.tmp = append(sc.tmp, sc.prefix...)
	sc.tmp = append(sc.tmp, parent...)
	sc.tmp = append(sc.tmp, '_')
	n := len(sc.tmp)
	if t := appendKey(sc.tmp, c.key.of(sc.raw)); cap(t) != cap(sc.tmp) {
		sc.tmp = t
	} else {
		sc.tmp = sc.tmp[:len(t)]
	}
	child := sc.tmp[n:]
	if why != "" {
		sc.drop(parent, child, why)
		return
	}
	key, renamed, ok := sc.newKey()
	if !ok {
		sc.unread()
		if !sc.drops.full() {
			why = "flattened key " + quoteShort(string(sc.tmp)) + " is invalid"
		}
		sc.drop(parent, child, why)
		return
	}
	sc.candLast(key, rankFlattened, i, j)
	if !renamed && len(parent) > 0 && len(child) > 0 {
		// parent_child as sent, both plain: its source is
		// parent.child, and of two such of one key the one of the
		// shorter parent comes first ('.' sorts before '_').
		sc.vals[len(sc.vals)-1].split = int32(len(parent))
	}
}

// drop is a warning about the key k (child nil) or the child of the object
// k: "path.k: why" or "path.k.child: why".
func (sc *scratch) drop(k, child []byte, why string) {
	dl := &sc.drops
	if !dl.open(sc.path) {
		return
	}
	dl.buf = append(append(dl.buf, sc.path...), '.')
	dl.buf = appendSrcKey(dl.buf, k)
	if child != nil {
		dl.buf = appendSrcKey(append(dl.buf, '.'), child)
	}
	dl.close(why)
}

// newKey appends to keys the extras key made of sc.tmp (the key as sent,
// with the prefix): as it is when valid, else with each character other
// than an ASCII letter, digit or _ replaced by _, and x_ prepended if it
// does not start with a letter. It reports whether the key was changed and
// whether the result is valid.
func (sc *scratch) newKey() (key span, renamed, ok bool) {
	k, off := sc.tmp, len(sc.keys)
	if validKey(k) {
		sc.keys = append(sc.keys, k...)
		return span{int32(off), int32(len(k))}, false, true
	}
	key, ok = sc.rename(k)
	return key, true, ok
}

// rename appends to keys k, an invalid key, with each character other
// than an ASCII letter, digit or _ replaced by _, and x_ prepended if it
// does not start with a letter. It reports whether the result is valid:
// made of those characters and starting with a letter, it is unless k is
// empty or the result too long. k may be in keys.
func (sc *scratch) rename(k []byte) (key span, ok bool) {
	if len(k) == 0 {
		return span{}, false
	}
	off := len(sc.keys)
	sc.keys = slices.Grow(sc.keys, len(k)+2)
	if !isLetter(k[0]) {
		sc.keys = append(sc.keys, "x_"...)
	}
	for i := 0; i < len(k); {
		if len(sc.keys)-off > tag.MaxKeyLen {
			sc.keys = sc.keys[:off]
			return span{}, false
		}
		c := k[i]
		if c >= utf8.RuneSelf {
			// One _ for a character of several bytes (or an invalid
			// byte, as ranging over a string reads it).
			_, size := utf8.DecodeRune(k[i:])
			i += size
			c = '_'
		} else {
			i++
		}
		if !(isLetter(c) || c >= '0' && c <= '9' || c == '_') {
			c = '_'
		}
		sc.keys = append(sc.keys, c)
	}
	if len(sc.keys)-off > tag.MaxKeyLen {
		sc.keys = sc.keys[:off]
		return span{}, false
	}
	return span{int32(off), int32(len(sc.keys) - off)}, true
}

// validKey is tag.ValidKey on bytes.
func validKey(k []byte) bool {
	if len(k) == 0 || len(k) > tag.MaxKeyLen {
		return false
	}
	for i, c := range k {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '_'):
		default:
			return false
		}
	}
	return true
}

var tooManyKeys = fmt.Sprintf("more than %d keys (kept the first in key order)", tag.MaxExtras)

// finish sorts the candidates, resolves clashes and the limit, and makes
// the extras: their keys and string values share one string.
func (sc *scratch) finish(nfixed int) ([]tag.Extra, *MessageError) {
	bound := sc.order(nfixed)
	room := tag.MaxExtras - nfixed
	sc.kept, sc.out = sc.kept[:0], sc.out[:0]
	dl := &sc.drops
	for i := 0; i < len(sc.cands); i++ {
		if i == bound {
			if room == 0 && dl.full() {
				// Past the candidates in order: the others are
				// dropped and counted, in any order, but for the
				// fixed ones, kept (sorted after those in order).
				for ; i < len(sc.cands); i++ {
					if c := &sc.cands[i]; c.rank == rankFixed {
						if err := sc.keep(c); err != nil {
							return nil, err
						}
					} else {
						dl.open(sc.path)
					}
				}
				break
			}
			sc.sortCands(sc.cands[i:])
			bound = len(sc.cands)
		}
		c := &sc.cands[i]
		key := sc.at(c.key)
		if c.rank > rankExact && (i == 0 || !sameRun(c, &sc.cands[i-1], sc)) {
			// The start of a run of one key and rank that may
			// differ in source: ordered by source as far as the
			// kept one and the warnings still listed need.
			j := i + 1
			for j < len(sc.cands) && j < bound && sameRun(&sc.cands[j], c, sc) {
				j++
			}
			if j-i > 1 {
				sc.orderRun(sc.cands[i:j], 1+maxListed-len(dl.ends))
			}
		}
		switch {
		case i > 0 && bytes.Equal(key, sc.at(sc.cands[i-1].key)):
			if dl.open(sc.path) {
				dl.buf = append(append(dl.buf, sc.path...), '.')
				dl.buf = append(sc.appendSrc(dl.buf, c), ": same key "...)
				dl.buf = append(append(dl.buf, key...), " as "...)
				dl.buf = append(append(dl.buf, sc.path...), '.')
				dl.buf = sc.appendSrc(dl.buf, &sc.cands[i-1])
				dl.ends = append(dl.ends, int32(len(dl.buf)))
			}
			continue
		case c.rank != rankFixed && room == 0:
			if dl.open(sc.path) {
				dl.buf = append(append(dl.buf, sc.path...), '.')
				dl.buf = sc.appendSrc(dl.buf, c)
				dl.close(tooManyKeys)
			}
			continue
		}
		if err := sc.keep(c); err != nil {
			return nil, err
		}
		if c.rank != rankFixed {
			room--
		}
	}
	if len(sc.kept) == 0 {
		return nil, nil
	}
	all := string(sc.out)
	out := sc.extras(len(sc.kept))
	for i, k := range sc.kept {
		x := &out[i]
		x.Key = all[k.key.off : k.key.off+k.key.n]
		switch v := &sc.vals[k.idx]; v.kind {
		case valString:
			x.Value = tag.String(all[k.str.off : k.str.off+k.str.n])
		case valNumber:
			x.Value = tag.Number(v.num)
		case valBool:
			x.Value = tag.Bool(v.b)
		case valFixed:
			x.Value = sc.fixed[v.fixed].Value
		}
	}
	return out, nil
}

// sameRun reports whether x and y have the same key and rank.
func sameRun(x, y *candidate, sc *scratch) bool {
	return x.rank == y.rank && x.pre == y.pre && bytes.Equal(sc.at(x.key), sc.at(y.key))
}

// keep makes c an extra: its key and string value are written in out.
func (sc *scratch) keep(c *candidate) *MessageError {
	key := sc.at(c.key)
	k := kept{key: span{int32(len(sc.out)), int32(len(key))}, idx: c.idx}
	sc.out = append(sc.out, key...)
	v := &sc.vals[c.idx]
	n := -1
	switch v.kind {
	case valString:
		// Valid, as the body is: appendUnquoted cannot fail.
		start := len(sc.out)
		raw := v.str.of(sc.raw)
		sc.out, _ = appendUnquoted(sc.out, raw[1:len(raw)-1])
		k.str = span{int32(start), int32(len(sc.out) - start)}
		n = int(k.str.n)
	case valFixed:
		if x := sc.fixed[v.fixed].Value; x.Type == tag.TypeString {
			n = len(x.Str)
		}
	}
	if n > tag.MaxValueLen {
		return &MessageError{Field: sc.path + "." + string(sc.appendSrc(nil, c)), Reason: fmt.Sprintf("string of %d bytes, more than the limit of %d", n, tag.MaxValueLen)}
	}
	sc.kept = append(sc.kept, k)
	return nil
}

// less orders candidates by key, then rank (the lowest wins a clash), then
// the order found; with bySrc, candidates of the same key and rank by
// source, then the order found.
func (sc *scratch) less(x, y *candidate) bool {
	if sc.bySrc {
		vx, vy := &sc.vals[x.idx], &sc.vals[y.idx]
		if vx.spre != vy.spre {
			return vx.spre < vy.spre
		}
		if !sc.bySplit && vx.src.n >= 8 {
			if c := bytes.Compare(vx.src.of(sc.srcs), vy.src.of(sc.srcs)); c != 0 {
				return c < 0
			}
		}
		return x.idx < y.idx
	}
	if x.pre != y.pre {
		return x.pre < y.pre
	}
	// The same first 8 bytes: as keys have no zero byte, either both
	// are that long or both are the same key.
	if x.key.n >= 8 {
		if c := bytes.Compare(sc.at(x.key), sc.at(y.key)); c != 0 {
			return c < 0
		}
	}
	if x.rank != y.rank {
		return x.rank < y.rank
	}
	return x.idx < y.idx
}

// sortCands sorts c by key, rank and order found. Runs of one key and
// rank that may differ in source (renamed or flattened candidates) are
// ordered by source later, by orderRun, as far as finish needs.
func (sc *scratch) sortCands(c []candidate) {
	for i := 1; i < len(c); i++ {
		// Often in order already (one key repeated; keys sent sorted).
		if sc.less(&c[i], &c[i-1]) {
			sc.sort(c, 2*bits.Len(uint(len(c))))
			return
		}
	}
}

// inOrder reports whether c is sorted already: keys sent in order, or a
// run of one key (200 keys renamed to one), which the selection would
// shuffle and then sort again.
func (sc *scratch) inOrder(c []candidate) bool {
	for i := 1; i < len(c); i++ {
		if sc.less(&c[i], &c[i-1]) {
			return false
		}
	}
	return true
}

// orderRun orders by source, then order found, the first need candidates
// of run, all of one key and rank (renamed or flattened): their sources
// are written once each. The others follow in no order.
func (sc *scratch) orderRun(run []candidate, need int) {
	sc.bySplit = true
	for k := range run {
		if sc.vals[run[k].idx].split < 0 {
			sc.bySplit = false
			break
		}
	}
	for k := range run {
		if v := &sc.vals[run[k].idx]; sc.bySplit {
			v.spre = uint64(v.split) // no source to write
		} else {
			v.spre = prefix8(sc.srcOf(&run[k]))
		}
	}
	sc.bySrc = true
	defer func() { sc.bySrc = false }()
	for k := 1; k < len(run); k++ {
		if sc.less(&run[k], &run[k-1]) {
			if need < len(run) {
				sc.selectFirst(run, need)
				run = run[:need]
			}
			sc.sort(run, 2*bits.Len(uint(len(run))))
			return
		}
	}
}

// sort sorts c by less: quicksort on a median of three, insertion sort for
// short runs, heapsort past depth levels (no input makes it quadratic). It
// is slices.SortFunc with the comparison of keys' first bytes inlined: most
// comparisons end there, and a call each cost as much as the rest of the
// sort.
func (sc *scratch) sort(c []candidate, depth int) {
	for len(c) > 12 {
		if depth == 0 {
			sc.heapSort(c)
			return
		}
		depth--
		j := sc.partition(c)
		if j < len(c)-j {
			sc.sort(c[:j], depth)
			c = c[j+1:]
		} else {
			sc.sort(c[j+1:], depth)
			c = c[:j]
		}
	}
	for i := 1; i < len(c); i++ {
		for j := i; j > 0 && sc.less(&c[j], &c[j-1]); j-- {
			c[j], c[j-1] = c[j-1], c[j]
		}
	}
}

// partition puts a median of three of c at c[j], the candidates less than
// it before, the others after, and returns j. len(c) > 2.
func (sc *scratch) partition(c []candidate) int {
	sc.parts++
	h, m := len(c)-1, len(c)/2
	if sc.less(&c[m], &c[0]) {
		c[0], c[m] = c[m], c[0]
	}
	if sc.less(&c[h], &c[m]) {
		c[h], c[m] = c[m], c[h]
		if sc.less(&c[m], &c[0]) {
			c[0], c[m] = c[m], c[0]
		}
	}
	c[0], c[m] = c[m], c[0]
	p := &c[0]
	i, j := 1, h
	for {
		for i <= j && sc.less(&c[i], p) {
			i++
		}
		for i <= j && sc.less(p, &c[j]) {
			j--
		}
		if i >= j {
			break
		}
		c[i], c[j] = c[j], c[i]
		i++
		j--
	}
	c[0], c[j] = c[j], c[0]
	return j
}

// selectFirst moves the k smallest candidates of c (by less) to c[:k], in
// no order: quickselect, heapsort past depth levels.
func (sc *scratch) selectFirst(c []candidate, k int) {
	lo, hi := 0, len(c)
	for depth := 2 * bits.Len(uint(len(c))); hi-lo > 12; depth-- {
		if depth == 0 {
			sc.heapSort(c[lo:hi])
			return
		}
		switch j := lo + sc.partition(c[lo:hi]); {
		case j == k || j == k-1:
			return
		case j < k:
			lo = j + 1
		default:
			hi = j
		}
	}
	sc.sort(c[lo:hi], 0)
}

// order sorts the candidates, or as many as finish needs: with many
// more than can be kept, only the first ones (all of the run of one key
// and rank the last of them is in, and the fixed ones before it); finish
// counts the others as dropped unless it needs them in order too. It
// returns how many of the candidates are in order, all before the others.
func (sc *scratch) order(nfixed int) int {
	c := sc.cands
	want := tag.MaxExtras + maxListed + 1
	nf := c[nfixed:] // buildExtras adds the fixed ones first
	if len(nf) <= 2*want || sc.inOrder(c) {
		sc.sortCands(c)
		return len(c)
	}
	sc.selectFirst(nf, want)
	last := 0
	for i := 1; i < want; i++ {
		if sc.less(&nf[last], &nf[i]) {
			last = i
		}
	}
	head := want
	for i := want; i < len(nf); i++ {
		if sameRun(&nf[i], &nf[last], sc) {
			nf[head], nf[i] = nf[i], nf[head]
			head++
		}
	}
	bound := nfixed + head
	for i := range nfixed {
		if sc.less(&nf[last], &c[i]) {
			bound-- // a fixed one past the last selected: sorted to the end
		}
	}
	sc.sortCands(c[:nfixed+head])
	return bound
}

func (sc *scratch) heapSort(c []candidate) {
	for i := len(c)/2 - 1; i >= 0; i-- {
		sc.siftDown(c, i, len(c))
	}
	for i := len(c) - 1; i > 0; i-- {
		c[0], c[i] = c[i], c[0]
		sc.siftDown(c, 0, i)
	}
}

func (sc *scratch) siftDown(c []candidate, root, n int) {
	for {
		child := 2*root + 1
		if child >= n {
			return
		}
		if child+1 < n && sc.less(&c[child], &c[child+1]) {
			child++
		}
		if !sc.less(&c[root], &c[child]) {
			return
		}
		c[root], c[child] = c[child], c[root]
		root = child
	}
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

// appendSrcKey appends k as a warning or an error names it: as it is when
// it is plain, else quoted and cut to 64 bytes (as quoteShort does).
func appendSrcKey(b []byte, k []byte) []byte {
	if plainKey(k) {
		return append(b, k...)
	}
	if len(k) > 64 {
		return append(appendQuoted(b, k[:64]), "…"...)
	}
	return appendQuoted(b, k)
}

// appendQuoted appends k quoted as strconv.Quote does, without its rune
// by rune reading when k is printable ASCII without " or \\.
func appendQuoted(b, k []byte) []byte {
	for _, c := range k {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return strconv.AppendQuote(b, string(k))
		}
	}
	b = append(b, '"')
	b = append(b, k...)
	return append(b, '"')
}

// plainKey reports whether appendSrcKey writes k as it is.
func plainKey(k []byte) bool {
	if len(k) == 0 || len(k) > tag.MaxKeyLen {
		return false
	}
	for _, c := range k {
		if c <= ' ' || c == '"' || c == '.' || c >= 0x7f {
			return false
		}
	}
	return true
}
