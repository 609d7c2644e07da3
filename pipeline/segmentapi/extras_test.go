package segmentapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/openengage/engage/pipeline/tag"
)

// A message lists at most maxListed warnings about its properties; the
// others are counted in a last one, so that a batch of thousands of
// dropped fields costs no more than their count.
func TestDroppedListed(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"event":"e","anonymousId":"a","properties":{"kept":1`)
	for i := range 30 {
		fmt.Fprintf(&b, `,"n%02d":null`, i)
	}
	b.WriteString(`}}`)
	res := single(t, CallTrack, b.String(), nil)
	if res.Err != nil || len(res.Records) != 1 || len(res.Records[0].Extras) != 1 {
		t.Fatalf("%+v", res)
	}
	var want []string
	for i := range maxListed {
		want = append(want, fmt.Sprintf("properties.n%02d: null", i))
	}
	want = append(want, "properties: 20 more dropped fields not listed (at most 10 a message)")
	if !slices.Equal(res.Dropped, want) {
		t.Fatalf("dropped\n got %q\nwant %q", res.Dropped, want)
	}
	// The next message of the batch starts a list of its own.
	results, err := DecodeBatch([]byte(`{"batch":[`+strings.Replace(b.String(), `{"event"`, `{"type":"track","event"`, 1)+
		`,{"type":"track","event":"e","anonymousId":"a","properties":{"x":null}}]}`), env, nil)
	if err != nil || len(results) != 2 {
		t.Fatal(err)
	}
	if d := results[1].Dropped; !slices.Equal(d, []string{"properties.x: null"}) {
		t.Fatalf("second message: dropped %q", d)
	}
}

// When a key is repeated in properties, the first one is kept, however
// many keys the object has.
func TestRepeatedKeyFirstKept(t *testing.T) {
	for _, n := range []int{2, 12, 13, 40, 200} {
		var b strings.Builder
		b.WriteString(`{"event":"e","anonymousId":"a","properties":{`)
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"k":%d,"x%d":{"k":%d}`, i, i%3, i)
		}
		b.WriteString(`}}`)
		res := single(t, CallTrack, b.String(), nil)
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		got := map[string]float64{}
		for _, x := range res.Records[0].Extras {
			got[x.Key] = x.Value.Num
		}
		want := map[string]float64{"k": 0, "x0_k": 0, "x1_k": 1}
		if n > 2 {
			want["x2_k"] = 2
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%d keys: extras %v, want %v", n, got, want)
		}
	}
}

// sc.sortCands, then sc.orderRun on each run of one key and rank, order
// candidates as slices.SortFunc does with sc.cmp: sizes
// around its thresholds, random keys, keys sharing their first 8 bytes,
// ties broken by rank, source and order found, and the inputs that hurt
// quicksorts (sorted, reversed, organ pipe, all one key).
func TestSortCandidates(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	keyOf := func(pattern string, i, n int) string {
		switch pattern {
		case "sorted":
			return fmt.Sprintf("key_%05d", i)
		case "reversed":
			return fmt.Sprintf("key_%05d", n-i)
		case "organ":
			return fmt.Sprintf("k%05d", min(i, n-i))
		case "same":
			return "k"
		case "prefix":
			return "longprefix_" + string(rune('a'+rng.IntN(3)))
		}
		return strings.Repeat("ab", rng.IntN(6)) + string(rune('a'+rng.IntN(26)))
	}
	for _, pattern := range []string{"random", "sorted", "reversed", "organ", "same", "prefix"} {
		for _, n := range []int{0, 1, 2, 12, 13, 50, 200, 1000} {
			var sc scratch
			sc.raw = []byte(`{"a.b":{"c":1,"d":2},"a":{"b.c":1},"x-y":1}`)
			sc.object(sc.raw, "properties")
			sc.obj = sc.members
			for i := range n {
				k := keyOf(pattern, i, n)
				off := len(sc.keys)
				sc.keys = append(sc.keys, k...)
				m, kid, rank := int32(-1), int32(-1), rankFixed
				switch r := rng.IntN(4); r {
				case 1:
					m, rank = 2, rankExact
				case 2:
					m, rank = 2, rankRenamed
				case 3:
					m, kid, rank = int32(rng.IntN(2)), int32(rng.IntN(3)), rankFlattened
					if m == 1 {
						kid = 2
					}
				}
				sc.cand(span{int32(off), int32(len(k))}, rank, m, kid, candValue{})
			}
			want := slices.Clone(sc.cands)
			slices.SortFunc(want, func(x, y candidate) int { return sc.cmp(&x, &y) })
			sc.sortCands(sc.cands)
			c := sc.cands
			for i := 0; i < len(c); {
				j := i + 1
				for j < len(c) && sameRun(&c[j], &c[i], &sc) {
					j++
				}
				if c[i].rank > rankExact {
					// The first of a run by source, then the run;
					// both give the order of a full sort.
					need := 1 + rng.IntN(j-i)
					sc.orderRun(c[i:j], need)
					first := mapSlice(c[i:i+need], func(c candidate) int32 { return c.idx })
					sc.orderRun(c[i:j], j-i)
					if !slices.Equal(first, mapSlice(c[i:i+need], func(c candidate) int32 { return c.idx })) {
						t.Fatalf("%s, %d candidates: the first %d of a run differ", pattern, n, need)
					}
				}
				i = j
			}
			idx := func(c candidate) int32 { return c.idx }
			if !slices.Equal(mapSlice(sc.cands, idx), mapSlice(want, idx)) {
				t.Fatalf("%s, %d candidates: order differs", pattern, n)
			}
		}
	}
	// Past its depth the sort goes on by heapsort.
	var sc scratch
	for i := range 500 {
		k := fmt.Sprintf("%03d", (i*7919)%500)
		off := len(sc.keys)
		sc.keys = append(sc.keys, k...)
		sc.cand(span{int32(off), int32(len(k))}, rankFixed, -1, -1, candValue{})
	}
	sc.sort(sc.cands, 0)
	if !slices.IsSortedFunc(sc.cands, func(x, y candidate) int { return sc.cmp(&x, &y) }) {
		t.Fatal("heapsort: not sorted")
	}
}

// cmp is the order of candidates that sortCands gives, the one the decoder
// always had: key, rank, source (which only renamed and flattened
// candidates of one key may differ in), order found.
func (sc *scratch) cmp(x, y *candidate) int {
	if c := bytes.Compare(sc.at(x.key), sc.at(y.key)); c != 0 {
		return c
	}
	if x.rank != y.rank {
		return int(x.rank - y.rank)
	}
	if c := bytes.Compare(sc.appendSrc(nil, x), sc.appendSrc(nil, y)); c != 0 {
		return c
	}
	return int(x.idx - y.idx)
}

func mapSlice[T, U any](s []T, f func(T) U) []U {
	out := make([]U, len(s))
	for i, x := range s {
		out[i] = f(x)
	}
	return out
}

// The key-prefix comparison agrees with comparing keys.
func TestCandidatePrefix(t *testing.T) {
	for _, p := range [][2]string{{"a", "ab"}, {"abcdefgh", "abcdefghi"}, {"Z", "a"}, {"x_", "x0"}, {"abcdefgh1", "abcdefgh0"}, {"abcdefg", "abcdefgh"}, {"b", "abcdefghij"}} {
		x, y := prefix8([]byte(p[0])), prefix8([]byte(p[1]))
		if c := strings.Compare(p[0], p[1]); x == y && (len(p[0]) < 8 || len(p[1]) < 8) || x != y && (x < y) != (c < 0) {
			t.Fatalf("%q %q: prefixes %x %x", p[0], p[1], x, y)
		}
	}
}

// unquote decodes JSON strings as encoding/json does, escapes, surrogate
// pairs and invalid UTF-8 included.
func TestUnquoteAsEncodingJSON(t *testing.T) {
	for _, s := range []string{`""`, `"plain"`, `"\u00e9\u4e2d"`, `"\ud83d\ude00"`, `"\ud800"`, `"\ud800x"`, `"\udc00\ud800"`,
		`"\ud800\u0041"`, `"\"\\\/\b\f\n\r\t"`, "\"\xff\xfe\"", "\"caf\xc3\xa9\"", `"\u0000"`, `"a\u2028b"`} {
		checkUnquote(t, []byte(s))
	}
	for _, s := range []string{`"a`, `"\x"`, `"\u12"`, `"\u12g4"`, "\"a\nb\"", `"a"b"`, `"\"`} {
		if got, ok := unquote([]byte(s)); ok {
			t.Errorf("%s: got %q, want failure", s, got)
		}
	}
}

func checkUnquote(t *testing.T, raw []byte) {
	t.Helper()
	var want string
	wantErr := json.Unmarshal(raw, &want)
	got, ok := unquote(raw)
	if ok != (wantErr == nil) || got != want {
		t.Fatalf("%s: got %q %v, want %q (%v)", raw, got, ok, want, wantErr)
	}
}

func FuzzUnquote(f *testing.F) {
	for _, s := range []string{`"a\u00e9\ud83d\ude00"`, `"\ud800\udc00\ud800"`, "\"\xff\"", `"\n\/"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		raw := bytes.TrimSpace(data)
		if len(raw) == 0 || raw[0] != '"' || !json.Valid(raw) {
			// Any bytes between quotes: fails exactly when
			// encoding/json does.
			raw = append(append([]byte{'"'}, data...), '"')
		}
		checkUnquote(t, raw)
	})
}

// The flattening reads a nested object's keys with escapes and names
// them in warnings as it reads them.
func TestFlattenEscapedKeys(t *testing.T) {
	res := single(t, CallTrack, `{"event":"e","anonymousId":"a","properties":{"p\u0061":{"\u0063ity":"Paris","x\u002ey":null,"t":"\u00e9"}}}`, nil)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	want := []tag.Extra{{Key: "pa_city", Value: tag.String("Paris")}, {Key: "pa_t", Value: tag.String("é")}}
	if !slices.Equal(res.Records[0].Extras, want) || !slices.Equal(res.Dropped, []string{`properties.pa."x.y": null`}) {
		t.Fatalf("extras %+v, dropped %q", res.Records[0].Extras, res.Dropped)
	}
}

// With many more keys than are kept, only the first ones are put in
// order; the extras, the warnings listed and the count of the others are
// those of a full sort. group_id (fixed, always kept) sorts after the
// kept traits here, and the keys come in no order, some renamed or
// repeated.
func TestManyKeysPartialOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	keys := rng.Perm(300)
	var b strings.Builder
	b.WriteString(`{"type":"group","userId":"u","groupId":"g1","traits":{"zz":1`)
	for _, k := range keys {
		fmt.Fprintf(&b, `,"a%03d":%d`, k, k)
		if k%50 == 7 {
			fmt.Fprintf(&b, `,"a%03d":-1,"a-%03d":-2`, k, k) // repeated, and renamed to a_…
		}
	}
	b.WriteString(`}}`)
	res := single(t, CallGroup, b.String(), nil)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	info := res.Records[0].AppInfo
	if len(info) != tag.MaxExtras || info[0].Key != "group_a000" || info[62].Key != "group_a062" || info[63].Key != "group_id" {
		t.Fatalf("kept %d: %s … %s, %s", len(info), info[0].Key, info[62].Key, info[63].Key)
	}
	for i, x := range info[:63] {
		if x.Value.Num != float64(i) {
			t.Fatalf("%s = %v: not the first of its key", x.Key, x.Value)
		}
	}
	// 300 + 6 repeated + 6 renamed + zz traits, 63 kept.
	d := res.Dropped
	if len(d) != maxListed+1 || d[len(d)-1] != "traits: 240 more dropped fields not listed (at most 10 a message)" {
		t.Fatalf("dropped %q", d)
	}
	// In key order: the repeated a007 and a057 among those kept, then
	// the first past the limit.
	want := []string{"traits.a007: same key group_a007 as traits.a007", "traits.a057: same key group_a057 as traits.a057"}
	for i := 63; len(want) < maxListed; i++ {
		want = append(want, fmt.Sprintf("traits.a%03d: more than 64 keys (kept the first in key order)", i))
	}
	if !slices.Equal(d[:maxListed], want) {
		t.Fatalf("dropped\n got %q\nwant %q", d[:maxListed], want)
	}
}

// Keys renamed to the same key: the first by source wins, each of the
// others is named after the one before it.
func TestRenamedClash(t *testing.T) {
	res := single(t, CallTrack, `{"event":"e","anonymousId":"a","properties":{"a-b":1,"a.b":2,"a b":3,"a/b":4,"p":{"x":5,"x":6}}}`, nil)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	want := []tag.Extra{{Key: "a_b", Value: tag.Number(3)}, {Key: "p_x", Value: tag.Number(5)}}
	wantDropped := []string{
		`properties."a.b": same key a_b as properties."a b"`,
		`properties.a-b: same key a_b as properties."a.b"`,
		`properties.a/b: same key a_b as properties.a-b`,
		`properties.p.x: same key p_x as properties.p.x`,
	}
	if !slices.Equal(res.Records[0].Extras, want) || !slices.Equal(res.Dropped, wantDropped) {
		t.Fatalf("extras %+v\ndropped %q", res.Records[0].Extras, res.Dropped)
	}
}

// The same with more keys than an insertion sort takes and more warnings
// than are listed: those listed are the first after the kept one.
func TestRenamedClashMany(t *testing.T) {
	seps := "-./ :;,!#$%&*+=@?^|~'()[]<>`éü€中"
	var b strings.Builder
	var srcs []string
	b.WriteString(`{"event":"e","anonymousId":"a","properties":{`)
	for i, sep := range []rune(seps) {
		if i > 0 {
			b.WriteByte(',')
		}
		k := "a" + string(sep) + "b"
		fmt.Fprintf(&b, `%q:%d`, k, i)
		if sep == '.' || sep == ' ' || sep >= 0x7f {
			k = strconv.Quote(k)
		}
		srcs = append(srcs, k)
	}
	b.WriteString(`}}`)
	res := single(t, CallTrack, b.String(), nil)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	byKey := slices.Clone(srcs)
	slices.Sort(byKey)
	if x := res.Records[0].Extras; len(x) != 1 || x[0].Value.Num != float64(slices.Index(srcs, byKey[0])) {
		t.Fatalf("extras %+v, want the value of %s", x, byKey[0])
	}
	var want []string
	for i := 1; i <= maxListed; i++ {
		want = append(want, fmt.Sprintf("properties.%s: same key a_b as properties.%s", byKey[i], byKey[i-1]))
	}
	slices.Sort(want)
	want = append(want, fmt.Sprintf("properties: %d more dropped fields not listed (at most 10 a message)", len(srcs)-1-maxListed))
	if !slices.Equal(res.Dropped, want) {
		t.Fatalf("dropped\n got %q\nwant %q", res.Dropped, want)
	}
}

// Nested keys flattened to the same key: the source of the shortest parent
// comes first ("a.b_c" before "a_b.c").
func TestFlattenedClash(t *testing.T) {
	const n = 20
	var b strings.Builder
	var srcs []string
	b.WriteString(`{"event":"e","anonymousId":"a","properties":{`)
	for k := n - 1; k >= 0; k-- {
		parent := "x" + strings.Repeat("_x", k)
		child := "x" + strings.Repeat("_x", n-k)
		if k < n-1 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `%q:{%q:%d}`, parent, child, k)
		srcs = append(srcs, parent+"."+child)
	}
	b.WriteString(`}}`)
	res := single(t, CallTrack, b.String(), nil)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	slices.Sort(srcs)
	if x := res.Records[0].Extras; len(x) != 1 || x[0].Value.Num != 0 {
		t.Fatalf("extras %+v, want the value of %s", x, srcs[0])
	}
	key := "x" + strings.Repeat("_x", n+1)
	var want []string
	for i := 1; i <= maxListed; i++ {
		want = append(want, fmt.Sprintf("properties.%s: same key %s as properties.%s", srcs[i], key, srcs[i-1]))
	}
	slices.Sort(want)
	want = append(want, fmt.Sprintf("properties: %d more dropped fields not listed (at most 10 a message)", n-1-maxListed))
	if !slices.Equal(res.Dropped, want) {
		t.Fatalf("dropped\n got %q\nwant %q", res.Dropped, want)
	}
}

// appendQuoted quotes as strconv.Quote does.
func TestAppendQuoted(t *testing.T) {
	cases := []string{"", "a b", "a.b", `q"`, `b\s`, "é", "\x7f", "\xff", "tab\t"}
	for c := range 256 {
		cases = append(cases, "k"+string([]byte{byte(c)}))
	}
	for _, k := range cases {
		if got, want := string(appendQuoted([]byte("x"), []byte(k))), "x"+strconv.Quote(k); got != want {
			t.Errorf("%q: got %s, want %s", k, got, want)
		}
	}
}

// Candidates already in order are not shuffled by the selection and then
// sorted again: 200 keys all renamed to one, from one source, need no
// partition at all (the selection made a dozen), and the first is kept.
func TestInOrderNotSelected(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"event":"e","anonymousId":"a","properties":{`)
	for i := range 200 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"k-":%d`, i)
	}
	b.WriteString(`}}`)
	dec, err := newDecoder(env, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	res := dec.message(0, []byte(b.String()), CallTrack)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if x := res.Records[0].Extras; len(x) != 1 || x[0] != (tag.Extra{Key: "k_", Value: tag.Number(0)}) {
		t.Fatalf("extras %+v, want k_ = 0", x)
	}
	d := res.Dropped
	if len(d) != maxListed+1 || d[0] != "properties.k-: same key k_ as properties.k-" || d[maxListed] != "properties: 189 more dropped fields not listed (at most 10 a message)" {
		t.Fatalf("dropped %q", d)
	}
	if dec.sc.parts != 0 {
		t.Fatalf("%d partitions for candidates in order, want 0", dec.sc.parts)
	}
}

// A short key followed by other bytes (as keys are in scratch.keys) has
// the prefix of the key alone: the bytes past it read, then cleared.
func TestCandidatePrefixInBuffer(t *testing.T) {
	buf := []byte("abcdefghijklmnop\xff\xff\xff\xff\xff\xff\xff\xff")
	for n := range 9 {
		for off := 0; off+n <= 16; off++ {
			k := buf[off : off+n]
			alone := append([]byte(nil), k...)[:n:n]
			if got, want := prefix8(k), prefix8(alone); got != want {
				t.Fatalf("%q followed by %q: prefix %x, want %x", k, buf[off+n:], got, want)
			}
		}
	}
	if p := prefix8([]byte("ab")[:2:2]); p != 0x6162<<48 {
		t.Fatalf("prefix of ab alone %x", p)
	}
}

// The extras of a batch's messages are cut from one block, each its own
// slice: appending to one message's extras leaves the next one's as they
// were.
func TestExtrasOwnSlices(t *testing.T) {
	body := `{"batch":[{"type":"track","event":"e","userId":"u","properties":{"a":1,"b":2}},{"type":"track","event":"e","userId":"u","properties":{"c":3}}]}`
	res, err := DecodeBatch([]byte(body), env, nil)
	if err != nil || len(res) != 2 || res[0].Err != nil || res[1].Err != nil {
		t.Fatalf("%v %+v", err, res)
	}
	first := &res[0].Records[0]
	first.Extras = append(first.Extras, tag.Extra{Key: "z", Value: tag.Number(9)})
	want := []tag.Extra{{Key: "c", Value: tag.Number(3)}}
	if got := res[1].Records[0].Extras; !slices.Equal(got, want) {
		t.Fatalf("the second message's extras %+v after an append to the first's, want %+v", got, want)
	}
}
