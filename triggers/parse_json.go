package triggers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// A campaign as JSON is the same document as the YAML file (same keys,
// same values). It is read into the YAML parser's node tree, each node
// with its line and column, so that one walk reads both and reports
// mistakes at their place in either. (yaml.v3 cannot read every JSON
// document itself: it refuses the escape \/ for one.)

// looksLikeJSON reports whether data is a JSON object: { followed by " or
// }. A YAML flow mapping ({app: news}) has unquoted keys.
func looksLikeJSON(data []byte) bool {
	data = bytes.TrimLeft(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")), " \t\r\n")
	if len(data) == 0 || data[0] != '{' {
		return false
	}
	rest := bytes.TrimLeft(data[1:], " \t\r\n")
	return len(rest) > 0 && (rest[0] == '"' || rest[0] == '}')
}

// maxJSONDepth bounds the nesting of a JSON campaign (a campaign nests
// five levels deep).
const maxJSONDepth = 32

// jsonNodes turns a JSON document into nodes.
type jsonNodes struct {
	file       string
	data       []byte
	dec        *json.Decoder
	lineStarts []int // byte offset of each line's start
}

// decodeJSON reads the JSON document data into a node tree.
func decodeJSON(filename string, data []byte) (*yaml.Node, error) {
	j := &jsonNodes{file: filename, data: data, dec: json.NewDecoder(bytes.NewReader(data)), lineStarts: []int{0}}
	j.dec.UseNumber()
	for i, c := range data {
		if c == '\n' {
			j.lineStarts = append(j.lineStarts, i+1)
		}
	}
	n, e := j.value(0)
	if e != nil {
		return nil, Errors{e}
	}
	off := j.next()
	if _, err := j.dec.Token(); !errors.Is(err, io.EOF) {
		return nil, Errors{j.errorAt(off, "syntax error: more after the campaign's closing }: a file holds one campaign")}
	}
	return n, nil
}

// next returns the offset where the next token starts.
func (j *jsonNodes) next() int {
	off := int(j.dec.InputOffset())
	for off < len(j.data) && strings.IndexByte(" \t\r\n,:", j.data[off]) >= 0 {
		off++
	}
	return off
}

// position returns the 1-based line and column (in characters) of a byte
// offset.
func (j *jsonNodes) position(off int) (line, col int) {
	off = min(max(off, 0), len(j.data))
	l := sort.Search(len(j.lineStarts), func(i int) bool { return j.lineStarts[i] > off }) - 1
	return l + 1, utf8.RuneCount(j.data[j.lineStarts[l]:off]) + 1
}

func (j *jsonNodes) errorAt(off int, format string, args ...any) *Error {
	line, col := j.position(off)
	return &Error{File: j.file, Line: line, Col: col, Msg: fmt.Sprintf(format, args...)}
}

var jsonBadChar = regexp.MustCompile(`invalid character ('(?:[^'\\]|\\.)+')`)

// syntax turns a decoder error into an Error at its place.
func (j *jsonNodes) syntax(err error) *Error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		// The decoder's offset is that of the bad character or just
		// after it, depending on which of its parts found it.
		off := int(se.Offset)
		if m := jsonBadChar.FindStringSubmatch(se.Error()); m != nil && off > 0 && off <= len(j.data) {
			if c, err := strconv.Unquote(m[1]); err == nil && strings.HasPrefix(string(j.data[off-1:]), c) {
				off--
			}
		}
		return j.errorAt(off, "syntax error: %s", strings.TrimPrefix(se.Error(), "json: "))
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return j.errorAt(len(j.data), "syntax error: the JSON document ends early: a } or ] is missing")
	}
	return j.errorAt(int(j.dec.InputOffset()), "syntax error: %s", strings.TrimPrefix(err.Error(), "json: "))
}

// value reads one value and what it holds.
func (j *jsonNodes) value(depth int) (*yaml.Node, *Error) {
	off := j.next()
	if depth > maxJSONDepth {
		return nil, j.errorAt(off, "the JSON document nests deeper than %d levels: it cannot be a campaign", maxJSONDepth)
	}
	tok, err := j.dec.Token()
	if err != nil {
		return nil, j.syntax(err)
	}
	line, col := j.position(off)
	n := &yaml.Node{Kind: yaml.ScalarNode, Line: line, Column: col}
	switch t := tok.(type) {
	case json.Delim:
		if t == '{' {
			n.Kind, n.Tag = yaml.MappingNode, "!!map"
		} else {
			n.Kind, n.Tag = yaml.SequenceNode, "!!seq"
		}
		for j.dec.More() {
			if t == '{' {
				koff := j.next()
				ktok, err := j.dec.Token()
				if err != nil {
					return nil, j.syntax(err)
				}
				key, _ := ktok.(string)
				kl, kc := j.position(koff)
				n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key, Style: yaml.DoubleQuotedStyle, Line: kl, Column: kc})
			}
			v, e := j.value(depth + 1)
			if e != nil {
				return nil, e
			}
			n.Content = append(n.Content, v)
		}
		if _, err := j.dec.Token(); err != nil { // the closing } or ]
			return nil, j.syntax(err)
		}
	case string:
		n.Tag, n.Value, n.Style = "!!str", t, yaml.DoubleQuotedStyle
	case json.Number:
		n.Tag, n.Value = "!!int", t.String()
		if strings.ContainsAny(n.Value, ".eE") {
			n.Tag = "!!float"
		}
	case bool:
		n.Tag, n.Value = "!!bool", "false"
		if t {
			n.Value = "true"
		}
	case nil:
		n.Tag, n.Value = "!!null", "null"
	}
	return n, nil
}
