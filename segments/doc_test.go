package segments

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// The examples of docs/segments.md: every ```segment block parses (and
// survives the round trips), every ```segment-json block unmarshals.
func TestDocExamples(t *testing.T) {
	data, err := os.ReadFile("../docs/segments.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := 0
	lines := strings.Split(string(data), "\n")
	for i := 0; i < len(lines); i++ {
		kind := strings.TrimPrefix(lines[i], "```")
		if kind != "segment" && kind != "segment-json" {
			continue
		}
		start := i + 1
		for i++; i < len(lines) && lines[i] != "```"; i++ {
		}
		body := strings.Join(lines[start:i], "\n")
		where := "docs/segments.md:" + itoa(start)
		blocks++
		var n Node
		if kind == "segment" {
			n, err = Parse(body)
		} else {
			n, err = UnmarshalNode([]byte(body))
		}
		if err != nil {
			t.Errorf("%s: %v", where, err)
			continue
		}
		checkRoundTrips(t, where, n)
	}
	if blocks < 15 {
		t.Errorf("found %d example blocks in docs/segments.md, want at least 15", blocks)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
