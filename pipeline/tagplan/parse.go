package tagplan

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/openengage/engage/pipeline/tag"
)

// topKeys are the keys a plan file may have, in the order of the docs.
var topKeys = []string{"app", "mode", "activities", "events", "jobs", "errors", "crashes", "extras", "app_info"}

// Parse parses a tag plan. filename is only used in error messages. If the
// plan has mistakes, Parse reports all of them (up to 50) as Errors, each
// at the line and column of its YAML node, and returns no plan.
func Parse(filename string, data []byte) (*Plan, error) {
	root, err := decode(filename, data)
	if err != nil {
		return nil, err
	}
	p := &parser{file: filename, plan: &Plan{Mode: ModeWarn, anyCrash: true}, extrasAt: map[string]*yaml.Node{}, read: map[*yaml.Node]typeMap{}}
	p.top(root)
	p.checkTagExtras()
	if len(p.errs) > 0 {
		return nil, p.errs.sorted()
	}
	p.finish()
	return p.plan, nil
}

// decode reads the single YAML document of data into a node tree.
func decode(filename string, data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Errors{{File: filename, Line: 1, Col: 1, Msg: "empty tag plan: it needs at least app: <app id>"}}
		}
		return nil, Errors{syntaxError(filename, err)}
	}
	var next yaml.Node
	if err := dec.Decode(&next); err == nil {
		return nil, Errors{{File: filename, Line: next.Line, Col: next.Column,
			Msg: "a second YAML document: a tag plan file holds one plan (remove the ---)"}}
	} else if !errors.Is(err, io.EOF) {
		return nil, Errors{syntaxError(filename, err)}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, Errors{{File: filename, Line: 1, Col: 1, Msg: "not a YAML document"}}
	}
	return doc.Content[0], nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError turns a yaml.v3 error ("yaml: line 3: did not find expected
// key") into an Error. yaml.v3 gives no column, and no line for mistakes on
// the first line.
func syntaxError(filename string, err error) *Error {
	msg := err.Error()
	line := 0
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	return &Error{File: filename, Line: line, Msg: "syntax error: " + msg}
}

// parser walks the node tree of a plan, building the plan and collecting
// every mistake.
type parser struct {
	file string
	plan *Plan
	errs Errors

	extrasAt map[string]*yaml.Node  // global extras key → its node
	tagDecls []tagDecl              // extras declared on tags, checked against the global ones
	read     map[*yaml.Node]typeMap // the extras mappings of tags read so far
}

type tagDecl struct {
	node *yaml.Node
	typ  tag.Type
}

func (p *parser) errorf(n *yaml.Node, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: n.Line, Col: n.Column, Msg: fmt.Sprintf(format, args...)})
}

// deref follows an alias (*name) to the node it names.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; i < 8 && n.Kind == yaml.AliasNode && n.Alias != nil; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// describe names a node's kind for error messages.
func describe(n *yaml.Node) string {
	switch {
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case isNull(n):
		return "nothing"
	case n.Kind == yaml.ScalarNode:
		return fmt.Sprintf("%.40q", n.Value)
	}
	return "an alias"
}

// mapping calls fn for each key and (dereferenced) value of the mapping n,
// reporting keys that are not strings and keys given twice.
func (p *parser) mapping(n *yaml.Node, fn func(key string, k, v *yaml.Node)) {
	seen := make(map[string]*yaml.Node, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		switch {
		case k.Kind != yaml.ScalarNode:
			p.errorf(k, "a key must be a string, not %s", describe(k))
			continue
		case isNull(k):
			p.errorf(k, "a key must be a string, not null (quote it if it is a name)")
			continue
		}
		if first, dup := seen[k.Value]; dup {
			p.errorf(k, "duplicate key %q (first at %d:%d)", k.Value, first.Line, first.Column)
			continue
		}
		seen[k.Value] = k
		fn(k.Value, k, v)
	}
}

// scalar returns the text of the scalar n, or reports that n is not one.
func (p *parser) scalar(n *yaml.Node, what string) (string, bool) {
	if n.Kind != yaml.ScalarNode || isNull(n) {
		p.errorf(n, "%s must be a string, not %s", what, describe(n))
		return "", false
	}
	return n.Value, true
}

func (p *parser) top(n *yaml.Node) {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "a tag plan is a mapping with keys %s, not %s", strings.Join(topKeys, ", "), describe(n))
		return
	}
	hasApp := false
	p.mapping(n, func(key string, k, v *yaml.Node) {
		switch key {
		case "app":
			hasApp = true
			p.app(v)
		case "mode":
			if s, ok := p.scalar(v, "mode"); ok {
				if m, ok := ParseMode(s); ok {
					p.plan.Mode = m
				} else {
					p.errorf(v, "unknown mode %q: use off, warn or enforce%s", s, suggest(s, modeNames[:]...))
				}
			}
		case "activities", "events", "jobs", "errors":
			p.section(sectionIndex(key), v)
		case "crashes":
			p.crashes(v)
		case "extras":
			p.plan.extras = p.types(v, "extras", p.extrasAt)
		case "app_info":
			p.plan.appInfo = p.types(v, "app_info", nil)
		default:
			p.errorf(k, "unknown key %q: a tag plan has %s%s", key, strings.Join(topKeys, ", "), suggest(key, topKeys...))
		}
	})
	if !hasApp {
		p.errorf(n, "missing app: the id of the app this plan is for (app: <app id>)")
	}
}

func sectionIndex(key string) section {
	for s, k := range sectionKeys {
		if k == key {
			return section(s)
		}
	}
	panic("tagplan: no section " + key)
}

// app checks the app id with the rules of tag ids.
func (p *parser) app(v *yaml.Node) {
	s, ok := p.scalar(v, "app")
	switch {
	case !ok:
	case s == "":
		p.errorf(v, "app is empty: give the app id")
	case len(s) > tag.MaxIDLen:
		p.errorf(v, "app id of %d bytes, more than the limit of %d", len(s), tag.MaxIDLen)
	case badText(s):
		p.errorf(v, "app id has a control character or invalid UTF-8")
	default:
		p.plan.App = s
	}
}

// badText reports whether s is not UTF-8 or has control characters, which
// no record's name or id may have.
func badText(s string) bool {
	if !utf8.ValidString(s) {
		return true
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// section reads the names of one section (activities, events, …).
func (p *parser) section(sec section, n *yaml.Node) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "%s must be a mapping of names to entries such as `home: {}`, not %s", sectionKeys[sec], describe(n))
		return
	}
	names := make(map[string]typeMap, len(n.Content)/2)
	p.mapping(n, func(name string, k, v *yaml.Node) {
		switch {
		case name == "":
			p.errorf(k, "empty %s name", sectionMarks[sec])
			return
		case len(name) > tag.MaxNameLen:
			p.errorf(k, "%s name of %d bytes, more than the limit of %d", sectionMarks[sec], len(name), tag.MaxNameLen)
			return
		case badText(name):
			p.errorf(k, "%s name %q has a control character or invalid UTF-8", sectionMarks[sec], name)
			return
		}
		names[name] = p.entry(sec, name, v)
	})
	p.plan.tags[sec] = names
}

// entry reads one tag's entry: {} or {extras: {key: type, …}}; nothing
// (`home:`) is the same as {}.
func (p *parser) entry(sec section, name string, n *yaml.Node) typeMap {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "the entry of %s %q must be a mapping such as {} or {extras: {key: type}}, not %s", sectionMarks[sec], name, describe(n))
		return nil
	}
	var extras typeMap
	p.mapping(n, func(key string, k, v *yaml.Node) {
		if key != "extras" {
			p.errorf(k, "unknown key %q in the entry of %s %q: an entry has only extras%s", key, sectionMarks[sec], name, suggest(key, "extras"))
			return
		}
		// An aliased extras mapping is read once: aliases must not make
		// the work grow faster than the file.
		if m, done := p.read[v]; done {
			extras = m
			return
		}
		at := make(map[string]*yaml.Node)
		extras = p.types(v, "extras", at)
		p.read[v] = extras
		for key, node := range at {
			p.tagDecls = append(p.tagDecls, tagDecl{node, extras[key]})
		}
	})
	return extras
}

// types reads a mapping of keys to types. If at is not nil, it records the
// node of each key.
func (p *parser) types(n *yaml.Node, what string, at map[string]*yaml.Node) typeMap {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "%s must be a mapping of keys to types such as {words: number}, not %s", what, describe(n))
		return nil
	}
	m := make(typeMap, len(n.Content)/2)
	p.mapping(n, func(key string, k, v *yaml.Node) {
		if !tag.ValidKey(key) {
			p.errorf(k, "invalid %s key %q: keys match ^[A-Za-z][A-Za-z0-9_]*$ and have at most %d bytes", what, key, tag.MaxKeyLen)
			return
		}
		s, ok := p.scalar(v, "a type")
		if !ok {
			return
		}
		t, ok := tag.ParseType(s)
		if !ok {
			p.errorf(v, "unknown type %q: use string, number, bool or date%s", s, suggest(s, "string", "number", "bool", "date"))
			return
		}
		m[key] = t
		if at != nil {
			at[key] = k
		}
	})
	return m
}

// crashes reads `crashes: any` or a section of crash names.
func (p *parser) crashes(n *yaml.Node) {
	if n.Kind == yaml.ScalarNode && !isNull(n) {
		if n.Value != "any" {
			p.errorf(n, "crashes must be any or a mapping of crash names, not %s%s", describe(n), suggest(n.Value, "any"))
		}
		return
	}
	if isNull(n) {
		p.errorf(n, "crashes must be any or a mapping of crash names, not nothing (write {} to allow no crash name)")
		return
	}
	p.plan.anyCrash = false
	p.section(secCrashes, n)
}

// checkTagExtras reports extras keys that a tag declares with another type
// than the global extras do.
func (p *parser) checkTagExtras() {
	for _, d := range p.tagDecls {
		if g, ok := p.plan.extras[d.node.Value]; ok && g != d.typ {
			first := p.extrasAt[d.node.Value]
			p.errorf(d.node, "extras key %q is %s here but %s in the global extras (at %d:%d)", d.node.Value, d.typ, g, first.Line, first.Column)
		}
	}
}

// finish counts what the plan declares.
func (p *parser) finish() {
	s := &p.plan.summary
	s.AnyCrash = p.plan.anyCrash
	s.Extras, s.AppInfo = len(p.plan.extras), len(p.plan.appInfo)
	counts := [numSections]*int{&s.Activities, &s.Events, &s.Jobs, &s.Errors, &s.Crashes}
	for sec, names := range p.plan.tags {
		*counts[sec] = len(names)
		for _, own := range names {
			s.TagExtras += len(own)
		}
	}
}
