package segments

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/openengage/engage/pipeline/tagplan"
)

var update = flag.Bool("update", false, "rewrite the expected outputs of testdata/lang/*.txt")

// The script tests live in testdata/lang/*.txt. A file is a list of cases;
// a case starts with a line "=== title" and holds sections, each starting
// with a line "-- name [args] --" and running to the next section or case.
// Lines of a case before its first section, and of the file before its
// first case, are comments.
//
// Input sections (one per case):
//
//	-- input --        the text form; Parse it
//	-- json-input --   the JSON form; UnmarshalNode it
//	-- segments --     lines "name: expression", for CheckRefs
//
// Output sections, which -update rewrites:
//
//	-- error --        the Parse or UnmarshalNode error
//	-- format --       Format of the tree (written for every good input)
//	-- json --         MarshalNode of the tree, indented
//	-- check PLAN [name=N] [segments=a,b] --
//	                   Check of the tree against testdata/plans/PLAN ("none": a nil plan),
//	                   as segment N, with only segments a and b existing; "ok" if no problem
//	-- cycles --       CheckRefs of the segments; "ok" if none
//
// Whatever the sections, every good tree must survive the round trips
// text → tree → text and tree → JSON → tree unchanged.
func TestScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/lang/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no script files in testdata/lang (%v)", err)
	}
	plans := map[string]*tagplan.Plan{}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			sf := parseScript(string(data))
			for _, c := range sf.cases {
				runCase(t, file, c, plans)
			}
			if *update {
				if out := sf.String(); out != string(data) {
					if err := os.WriteFile(file, []byte(out), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
		})
	}
}

type scriptFile struct {
	header []string
	cases  []*scriptCase
}

type scriptCase struct {
	title    string
	line     int // of the === line
	comments []string
	sections []*section
}

type section struct {
	name string
	args []string
	body string
}

func parseScript(data string) *scriptFile {
	sf := &scriptFile{}
	var c *scriptCase
	var s *section
	lines := strings.Split(strings.TrimSuffix(data, "\n"), "\n")
	for i, line := range lines {
		switch {
		case strings.HasPrefix(line, "=== "):
			c = &scriptCase{title: strings.TrimPrefix(line, "=== "), line: i + 1}
			sf.cases = append(sf.cases, c)
			s = nil
		case c == nil:
			sf.header = append(sf.header, line)
		case strings.HasPrefix(line, "-- ") && strings.HasSuffix(line, " --"):
			f := strings.Fields(strings.TrimSuffix(strings.TrimPrefix(line, "-- "), " --"))
			s = &section{name: f[0], args: f[1:]}
			c.sections = append(c.sections, s)
		case s == nil:
			c.comments = append(c.comments, line)
		default:
			s.body += line + "\n"
		}
	}
	for _, c := range sf.cases {
		for _, s := range c.sections {
			s.body = strings.Trim(s.body, "\n")
		}
		for len(c.comments) > 0 && c.comments[len(c.comments)-1] == "" {
			c.comments = c.comments[:len(c.comments)-1]
		}
	}
	return sf
}

// String writes the file back, one blank line after each case.
func (sf *scriptFile) String() string {
	var b strings.Builder
	for _, l := range sf.header {
		b.WriteString(l + "\n")
	}
	for _, c := range sf.cases {
		fmt.Fprintf(&b, "=== %s\n", c.title)
		for _, l := range c.comments {
			b.WriteString(l + "\n")
		}
		for _, s := range c.sections {
			fmt.Fprintf(&b, "-- %s --\n", strings.Join(append([]string{s.name}, s.args...), " "))
			if s.body != "" {
				b.WriteString(s.body + "\n")
			}
		}
		b.WriteString("\n")
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func (c *scriptCase) get(name string) *section {
	for _, s := range c.sections {
		if s.name == name {
			return s
		}
	}
	return nil
}

// expect compares an output section with what the code produced; with
// -update it rewrites the section, or adds it after the input section.
func (c *scriptCase) expect(t *testing.T, where string, s *section, name, got string) {
	t.Helper()
	if s == nil {
		s = c.get(name)
	}
	if *update {
		if s == nil {
			c.sections = slices.Insert(c.sections, min(1, len(c.sections)), &section{name: name, body: got})
		} else {
			s.body = got
		}
		return
	}
	switch {
	case s == nil:
		t.Errorf("%s: no -- %s -- section; got:\n%s", where, name, got)
	case s.body != got:
		t.Errorf("%s: -- %s --\n got:\n%s\nwant:\n%s", where, strings.Join(append([]string{s.name}, s.args...), " "), got, s.body)
	}
}

// drop removes output sections that do not apply (with -update), or
// complains about them.
func (c *scriptCase) drop(t *testing.T, where string, names ...string) {
	t.Helper()
	c.sections = slices.DeleteFunc(c.sections, func(s *section) bool {
		if !slices.Contains(names, s.name) {
			return false
		}
		if !*update {
			t.Errorf("%s: unexpected -- %s -- section (the input has %s)", where, s.name, map[bool]string{true: "an error", false: "no error"}[s.name != "error"])
		}
		return true
	})
}

func runCase(t *testing.T, file string, c *scriptCase, plans map[string]*tagplan.Plan) {
	where := fmt.Sprintf("%s:%d (%s)", file, c.line, c.title)
	var n Node
	var err error
	switch {
	case c.get("input") != nil:
		n, err = Parse(c.get("input").body)
	case c.get("json-input") != nil:
		n, err = UnmarshalNode([]byte(c.get("json-input").body))
	case c.get("segments") != nil:
		runRefs(t, where, c)
		return
	default:
		t.Errorf("%s: no input, json-input or segments section", where)
		return
	}
	if err != nil {
		if _, ok := err.(*Error); !ok {
			t.Errorf("%s: error of type %T, want *Error", where, err)
		}
		c.expect(t, where, nil, "error", err.Error())
		c.drop(t, where, "format", "json", "check")
		return
	}
	c.drop(t, where, "error")
	text := Format(n)
	c.expect(t, where, nil, "format", text)
	checkRoundTrips(t, where, n)
	if s := c.get("json"); s != nil {
		data, err := MarshalNode(n)
		if err != nil {
			t.Fatalf("%s: MarshalNode: %v", where, err)
		}
		pretty, err := prettyJSON(data)
		if err != nil {
			t.Fatalf("%s: MarshalNode wrote invalid JSON %s: %v", where, data, err)
		}
		c.expect(t, where, s, "json", pretty)
	}
	for _, s := range c.sections {
		if s.name == "check" {
			c.expect(t, where, s, "check", runCheck(t, where, s.args, n, plans))
		}
	}
}

// checkRoundTrips holds a good tree to the round trips through the text
// and the JSON forms.
func checkRoundTrips(t *testing.T, where string, n Node) {
	t.Helper()
	text := Format(n)
	back, err := Parse(text)
	if err != nil {
		t.Errorf("%s: Format wrote %q, which does not parse: %v", where, text, err)
	} else if !Equal(back, n) {
		t.Errorf("%s: Format wrote %q, which parses to another tree", where, text)
	}
	data, err := MarshalNode(n)
	if err != nil {
		t.Errorf("%s: MarshalNode: %v", where, err)
		return
	}
	back, err = UnmarshalNode(data)
	switch {
	case err != nil:
		t.Errorf("%s: MarshalNode wrote %s, which does not unmarshal: %v", where, data, err)
	case !Equal(back, n):
		t.Errorf("%s: MarshalNode wrote %s, which unmarshals to another tree (%s)", where, data, Format(back))
	case Format(back) != text:
		t.Errorf("%s: text → JSON → text gives %q, want %q", where, Format(back), text)
	}
}

func runCheck(t *testing.T, where string, args []string, n Node, plans map[string]*tagplan.Plan) string {
	t.Helper()
	if len(args) == 0 {
		t.Fatalf("%s: -- check -- needs a plan file name or none", where)
	}
	seg := &Segment{Name: "this", Expr: n}
	var plan *tagplan.Plan
	if args[0] != "none" {
		plan = plans[args[0]]
		if plan == nil {
			var err error
			if plan, err = tagplan.ParseFile(filepath.Join("testdata/plans", args[0])); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			plans[args[0]] = plan
		}
		seg.App = plan.App
	}
	var exists func(string) bool
	for _, a := range args[1:] {
		k, v, _ := strings.Cut(a, "=")
		switch k {
		case "name":
			seg.Name = v
		case "segments":
			names := strings.Split(v, ",")
			exists = func(name string) bool { return slices.Contains(names, name) }
		default:
			t.Fatalf("%s: unknown check argument %q", where, a)
		}
	}
	if err := Check(seg, plan, exists); err != nil {
		return err.Error()
	}
	return "ok"
}

func runRefs(t *testing.T, where string, c *scriptCase) {
	segs := map[string]Node{}
	for _, line := range strings.Split(c.get("segments").body, "\n") {
		name, text, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("%s: segments line %q is not name: expression", where, line)
		}
		n, err := Parse(text)
		if err != nil {
			t.Fatalf("%s: segment %s: %v", where, name, err)
		}
		segs[strings.TrimSpace(name)] = n
	}
	got := "ok"
	if err := CheckRefs(segs); err != nil {
		got = err.Error()
	}
	c.expect(t, where, nil, "cycles", got)
}

// prettyJSON indents data, but writes each object or list that fits in
// 72 characters on one line.
func prettyJSON(data []byte) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := readOrdered(dec)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	writePretty(&b, v, "")
	return b.String(), nil
}

// jsonValue is a decoded JSON value that keeps the order of object keys:
// a scalar's compact text, or a list or object of jsonValues.
type jsonValue struct {
	scalar string
	list   []jsonValue
	keys   []string // an object's keys, in order; nil for lists and scalars
	isObj  bool
}

func readOrdered(dec *json.Decoder) (jsonValue, error) {
	tok, err := dec.Token()
	if err != nil {
		return jsonValue{}, err
	}
	switch tok {
	case json.Delim('['), json.Delim('{'):
		obj := tok == json.Delim('{')
		v := jsonValue{isObj: obj, list: []jsonValue{}}
		for dec.More() {
			if obj {
				k, err := dec.Token()
				if err != nil {
					return v, err
				}
				v.keys = append(v.keys, k.(string))
			}
			x, err := readOrdered(dec)
			if err != nil {
				return v, err
			}
			v.list = append(v.list, x)
		}
		_, err := dec.Token()
		return v, err
	case json.Delim(']'), json.Delim('}'):
		return jsonValue{}, errors.New("unexpected end of list or object")
	}
	return jsonValue{scalar: jsonText(tok)}, nil
}

// jsonText writes a scalar as JSON, leaving <, > and & alone as MarshalNode does.
func jsonText(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func (v jsonValue) compact() string {
	if v.list == nil {
		return v.scalar
	}
	parts := make([]string, len(v.list))
	for i, x := range v.list {
		parts[i] = x.compact()
		if v.isObj {
			parts[i] = jsonText(v.keys[i]) + ": " + parts[i]
		}
	}
	if v.isObj {
		return "{" + strings.Join(parts, ", ") + "}"
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func writePretty(b *strings.Builder, v jsonValue, indent string) {
	if c := v.compact(); len(indent)+len(c) <= 72 || len(v.list) == 0 {
		b.WriteString(c)
		return
	}
	open, close := "[", "]"
	if v.isObj {
		open, close = "{", "}"
	}
	b.WriteString(open + "\n")
	for i, x := range v.list {
		b.WriteString(indent + "  ")
		if v.isObj {
			b.WriteString(jsonText(v.keys[i]) + ": ")
		}
		writePretty(b, x, indent+"  ")
		if i < len(v.list)-1 {
			b.WriteString(",")
		}
		b.WriteString("\n")
	}
	b.WriteString(indent + close)
}
