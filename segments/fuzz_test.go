package segments

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/openengage/engage/pipeline/tagplan"
)

// seedInputs returns the inputs of the script tests, of the given section.
func seedInputs(f *testing.F, section string) []string {
	files, err := filepath.Glob("testdata/lang/*.txt")
	if err != nil {
		f.Fatal(err)
	}
	var inputs []string
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		for _, c := range parseScript(string(data)).cases {
			if s := c.get(section); s != nil {
				inputs = append(inputs, s.body)
			}
		}
	}
	return inputs
}

// FuzzParse holds Parse to its promises on any text: no panic, an *Error
// with a position on failure, and on success a tree that Format writes
// back as text that parses to an Equal tree, that survives the JSON form,
// and that Check can hold to a plan without panicking.
func FuzzParse(f *testing.F) {
	for _, s := range seedInputs(f, "input") {
		f.Add(s)
	}
	for _, s := range []string{"", "(", ")", "not", `"`, `"\`, "2026-", "1e", "1e+", "3 d", "now--1d", "#", "\x00", "é", "9999-12-31T23:59:59.999+00:00"} {
		f.Add(s)
	}
	plan, err := tagplan.ParseFile("testdata/plans/news.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, text string) {
		n, err := Parse(text)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Pos.Line < 1 || e.Pos.Col < 1 || e.Msg == "" {
				t.Fatalf("Parse(%q): error %#v, want an *Error with a position", text, err)
			}
			return
		}
		formatted := Format(n)
		back, err := Parse(formatted)
		if err != nil {
			t.Fatalf("Parse(%q) then Format wrote %q, which does not parse: %v", text, formatted, err)
		}
		if !Equal(back, n) {
			t.Fatalf("Parse(%q) then Format wrote %q, which parses to another tree", text, formatted)
		}
		if again := Format(back); again != formatted {
			t.Fatalf("Format is not stable: %q then %q", formatted, again)
		}
		data, err := MarshalNode(n)
		if err != nil {
			t.Fatalf("MarshalNode of %q: %v", formatted, err)
		}
		if back, err := UnmarshalNode(data); err != nil || !Equal(back, n) {
			t.Fatalf("JSON round trip of %q through %s: %v", formatted, data, err)
		}
		seg := &Segment{App: "news", Name: "s", Expr: n}
		_ = Check(seg, plan, func(string) bool { return true })
		_ = Check(seg, nil, nil)
		_ = CheckRefs(map[string]Node{"s": n, "engaged": n})
	})
}

// FuzzUnmarshalNode holds UnmarshalNode to the same promises on any bytes.
func FuzzUnmarshalNode(f *testing.F) {
	for _, s := range seedInputs(f, "json-input") {
		f.Add([]byte(s))
	}
	for _, s := range seedInputs(f, "input") {
		if n, err := Parse(s); err == nil {
			if data, err := MarshalNode(n); err == nil {
				f.Add(data)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := UnmarshalNode(data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Msg == "" {
				t.Fatalf("UnmarshalNode(%q): error %#v, want an *Error", data, err)
			}
			return
		}
		out, err := MarshalNode(n)
		if err != nil {
			t.Fatalf("UnmarshalNode(%q) then MarshalNode: %v", data, err)
		}
		if back, err := UnmarshalNode(out); err != nil || !Equal(back, n) {
			t.Fatalf("UnmarshalNode(%q) then MarshalNode wrote %s, which reads back as another tree (%v)", data, out, err)
		}
		formatted := Format(n)
		if back, err := Parse(formatted); err != nil || !Equal(back, n) {
			t.Fatalf("UnmarshalNode(%q) then Format wrote %q, which does not parse back: %v", data, formatted, err)
		}
		_ = Check(&Segment{Name: "s", Expr: n}, nil, nil)
	})
}
