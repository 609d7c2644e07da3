package triggers

import (
	"maps"
	"slices"
	"strconv"
)

// MessageTemplate is a Message with its texts parsed, to render per
// device: the title, body, image, deep link, custom data values and in-app
// buttons' labels and deep links are templates; the other fields are
// copied as they are. It is immutable, and safe for concurrent use.
type MessageTemplate struct {
	msg                          *Message
	title, body, image, deepLink *Template
	data                         map[string]*Template
	buttons                      [][2]*Template // label, deep link
}

// CompileMessage parses the texts of m. m must not change afterwards.
func CompileMessage(m *Message) (*MessageTemplate, error) {
	mt := &MessageTemplate{msg: m}
	var errs Errors
	parse := func(path, text string) *Template {
		t, err := ParseTemplate(text)
		if err != nil {
			for _, e := range err.(Errors) {
				e.Path = path
				errs = append(errs, e)
			}
		}
		return t
	}
	mt.title, mt.body = parse("title", m.Title), parse("body", m.Body)
	mt.image, mt.deepLink = parse("image", m.Image), parse("deep_link", m.DeepLink)
	if len(m.Data) > 0 {
		mt.data = make(map[string]*Template, len(m.Data))
		for k, v := range m.Data {
			mt.data[k] = parse("data."+k, v)
		}
	}
	for i, b := range m.Buttons {
		at := "buttons[" + strconv.Itoa(i) + "]."
		mt.buttons = append(mt.buttons, [2]*Template{parse(at+"label", b.Label), parse(at+"deep_link", b.DeepLink)})
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return mt, nil
}

// Render returns the message for one device and the fields that had
// neither a value nor a default, once each.
func (mt *MessageTemplate) Render(v Values) (Message, []string) {
	out := *mt.msg
	var missing []string
	render := func(t *Template) string {
		s, miss := t.Render(v)
		for _, name := range miss {
			if !slices.Contains(missing, name) {
				missing = append(missing, name)
			}
		}
		return s
	}
	out.Title, out.Body = render(mt.title), render(mt.body)
	out.Image, out.DeepLink = render(mt.image), render(mt.deepLink)
	if mt.data != nil {
		out.Data = make(map[string]string, len(mt.data))
		for k, t := range mt.data {
			out.Data[k] = render(t)
		}
	}
	if mt.buttons != nil {
		out.Buttons = make([]Button, len(mt.buttons))
		for i, b := range mt.buttons {
			out.Buttons[i] = Button{Label: render(b[0]), DeepLink: render(b[1])}
		}
	}
	return out, missing
}

// messageTexts calls fn with the path (relative to the message) and text
// of each of m's texts that is a template, in a fixed order: the texts
// CompileMessage parses.
func messageTexts(m *Message, fn func(path, text string)) {
	fn("title", m.Title)
	fn("body", m.Body)
	fn("image", m.Image)
	fn("deep_link", m.DeepLink)
	for _, k := range slices.Sorted(maps.Keys(m.Data)) {
		fn("data."+k, m.Data[k])
	}
	for i, b := range m.Buttons {
		at := "buttons[" + strconv.Itoa(i) + "]."
		fn(at+"label", b.Label)
		fn(at+"deep_link", b.DeepLink)
	}
}

// Fields returns the fields the message's templates read.
func (mt *MessageTemplate) Fields() []Field {
	var out []Field
	add := func(t *Template) {
		if t != nil {
			out = append(out, t.fields...)
		}
	}
	for _, t := range []*Template{mt.title, mt.body, mt.image, mt.deepLink} {
		add(t)
	}
	for _, k := range slices.Sorted(maps.Keys(mt.data)) {
		add(mt.data[k])
	}
	for _, b := range mt.buttons {
		add(b[0])
		add(b[1])
	}
	return out
}
