package triggers

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/segments"
)

// tplValues are the values of the template tests: a French Android
// reader, triggered by an article_read event.
var tplValues = Values{
	AppInfo: []tag.Extra{
		{Key: "articles", Value: tag.Number(42)},
		{Key: "balance", Value: tag.Number(12.5)},
		{Key: "big", Value: tag.Number(1e21)},
		{Key: "empty", Value: tag.String("")},
		{Key: "expiry", Value: tag.Date(time.Date(2026, 5, 1, 23, 30, 0, 0, time.FixedZone("x", -3600)))},
		{Key: "first_name", Value: tag.String("Ana")},
		{Key: "million", Value: tag.Number(1e6)},
		{Key: "negative", Value: tag.Number(-3)},
		{Key: "premium", Value: tag.Bool(false)},
	},
	Device: &tag.DeviceInfo{Platform: "android", AppVersion: "3.2.1", OSVersion: "14", Model: "Pixel 8", Manufacturer: "Google",
		Locale: "fr-FR", Country: "FR", TimeZone: "Europe/Paris"},
	Trigger: []tag.Extra{
		{Key: "category", Value: tag.String("sport")},
		{Key: "words", Value: tag.Number(800)},
	},
}

func TestTemplateRender(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		v          Values
		want       string
		missing    []string
	}{
		{"plain text", "Hello!", tplValues, "Hello!", nil},
		{"empty", "", tplValues, "", nil},
		{"app_info string", "Hi {{app_info.first_name}}!", tplValues, "Hi Ana!", nil},
		{"spaces inside", "Hi {{  app_info.first_name\t}}!", tplValues, "Hi Ana!", nil},
		{"newline inside", "Hi {{\napp_info.first_name\n}}!", tplValues, "Hi Ana!", nil},
		{"whole number", "{{app_info.articles}} read", tplValues, "42 read", nil},
		{"fraction", "{{app_info.balance}} €", tplValues, "12.5 €", nil},
		{"million without exponent", "{{app_info.million}}", tplValues, "1000000", nil},
		{"negative", "{{app_info.negative}}", tplValues, "-3", nil},
		{"huge number", "{{app_info.big}}", tplValues, "1e+21", nil},
		{"bool", "premium: {{app_info.premium}}", tplValues, "premium: false", nil},
		{"date is its UTC date", "until {{app_info.expiry}}", tplValues, "until 2026-05-02", nil},
		{"device fields", "{{device.platform}} {{device.app_version}} {{device.os_version}} {{device.model}} {{device.manufacturer}} {{device.locale}} {{device.country}} {{device.timezone}}",
			tplValues, "android 3.2.1 14 Pixel 8 Google fr-FR FR Europe/Paris", nil},
		{"trigger extras", "{{trigger.words}} words on {{trigger.category}}", tplValues, "800 words on sport", nil},
		{"value beats default", `Hi {{app_info.first_name | default "there"}}`, tplValues, "Hi Ana", nil},
		{"default when absent", `Hi {{app_info.nickname | default "there"}}`, tplValues, "Hi there", nil},
		{"default when empty string", `Hi {{app_info.empty | default "there"}}`, tplValues, "Hi there", nil},
		{"single-quoted default", `Hi {{app_info.nickname|default 'there'}}`, tplValues, "Hi there", nil},
		{"escaped quote in default", `{{app_info.nickname | default "say \"hi\" \\o/"}}`, tplValues, `say "hi" \o/`, nil},
		{"braces in default", `{{app_info.nickname | default "}}{{"}}`, tplValues, "}}{{", nil},
		{"empty default", `[{{app_info.nickname | default ""}}]`, tplValues, "[]", nil},
		{"missing without default", "Hi {{app_info.nickname}}!", tplValues, "Hi !", []string{"app_info.nickname"}},
		{"missing once each", "{{trigger.x}} {{trigger.x}} {{device.model}}", Values{}, "  ", []string{"trigger.x", "device.model"}},
		{"no device", "{{device.locale | default \"en\"}}", Values{}, "en", nil},
		{"escape", "{{{{app_info.first_name}} is {{app_info.first_name}}", tplValues, "{{app_info.first_name}} is Ana", nil},
		{"lone closing braces", "}} and }}}", tplValues, "}} and }}}", nil},
		{"escape then field", "{{{{{{app_info.first_name}}", tplValues, "{{Ana", nil},
		{"unicode around", "¡Hola {{app_info.first_name}}! 👋", tplValues, "¡Hola Ana! 👋", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tpl, err := ParseTemplate(tc.text)
			if err != nil {
				t.Fatal(err)
			}
			got, missing := tpl.Render(tc.v)
			if got != tc.want || !slices.Equal(missing, tc.missing) {
				t.Errorf("Render = %q, missing %q; want %q, missing %q", got, missing, tc.want, tc.missing)
			}
			if tpl.String() != tc.text {
				t.Errorf("String = %q, want the text", tpl.String())
			}
		})
	}
}

func TestTemplateFields(t *testing.T) {
	tpl, err := ParseTemplate("Hi {{app_info.first_name | default \"you\"}},\n  {{ trigger.category }} — {{device.locale}}")
	if err != nil {
		t.Fatal(err)
	}
	want := []Field{
		{Source: FromAppInfo, Key: "first_name", Default: "you", HasDefault: true, Offset: 3, Line: 1, Col: 4, name: "app_info.first_name", device: 0},
		{Source: FromTrigger, Key: "category", Offset: 46, Line: 2, Col: 3, name: "trigger.category"},
		{Source: FromDevice, Key: "locale", Offset: 73, Line: 2, Col: 28, name: "device.locale", device: 5},
	}
	got := tpl.Fields()
	if !slices.Equal(got, want) {
		t.Fatalf("Fields =\n%+v\nwant\n%+v", got, want)
	}
	for _, f := range got {
		if !strings.HasPrefix(tpl.String()[f.Offset:], "{{") {
			t.Errorf("field %s: offset %d is not at its {{", f.Name(), f.Offset)
		}
	}
	got[0].Key = "changed"
	if tpl.Fields()[0].Key != "first_name" {
		t.Error("Fields returns the template's own slice")
	}
}

func TestParseTemplateErrors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"Hi {{app_info.first_name", `1:4: {{ is not closed: end the field with }} (write {{{{ for a literal {{)`},
		{"Hi {{}}", `1:4: empty field {{}}: write {{app_info.<key>}}, {{device.<field>}} or {{trigger.<key>}} (or {{{{ for a literal {{)`},
		{"Hi {{ }}", `1:4: empty field {{}}: write {{app_info.<key>}}, {{device.<field>}} or {{trigger.<key>}} (or {{{{ for a literal {{)`},
		{"{{{app_info.x}}}", `1:3: unexpected '{' in a field: expected app_info.<key>, device.<field> or trigger.<key> (write {{{{ for a literal {{)`},
		{"{{first_name}}", `1:3: field "first_name" needs its source: write app_info.first_name (the device's app-info) or trigger.first_name (an extra of the triggering record)`},
		{"{{locale}}", `1:3: field "locale" needs its source: write device.locale`},
		{"Hi {{app_inf.first_name}}", `1:6: unknown field source "app_inf": use app_info, device or trigger (did you mean "app_info"?)`},
		{"{{device.langage}}", `1:10: unknown device field "langage": use platform, app_version, os_version, model, manufacturer, locale, country, timezone`},
		{"{{device.countyr}}", `1:10: unknown device field "countyr": use platform, app_version, os_version, model, manufacturer, locale, country, timezone (did you mean "country"?)`},
		{"{{trigger.}}", `1:3: field trigger needs a key: trigger.<key>`},
		{"{{app_info.1st}}", `1:12: invalid app_info key "1st": keys match ^[A-Za-z][A-Za-z0-9_]*$ and have at most 64 bytes`},
		{"{{app_info.first.name}}", `1:12: invalid app_info key "first.name": keys match ^[A-Za-z][A-Za-z0-9_]*$ and have at most 64 bytes`},
		{"{{app_info.x | defualt \"a\"}}", `1:16: unknown filter "defualt": the only filter is default, as in {{app_info.x | default "text"}} (did you mean "default"?)`},
		{"{{app_info.x | upper}}", `1:16: unknown filter "upper": the only filter is default, as in {{app_info.x | default "text"}}`},
		{"{{app_info.x | }}", `1:16: expected default after | in field app_info.x, found '}'`},
		{"{{app_info.x | default there}}", `1:24: expected a quoted text after default, as in default "there", found 't'`},
		{"{{app_info.x | default \"there}}", `1:24: the default's quote " is not closed`},
		{"{{app_info.x y}}", `1:14: expected }} to close the field app_info.x, found 'y'`},
		{"{{app_info.x | default \"a\" b}}", `1:28: expected }} to close the field app_info.x, found 'b'`},
		{"é{{app_info.x}\n{{x.y}}", `1:14: expected }} to close the field app_info.x, found '}'`},
		{"line one\n  ¡{{device.plataform}}", `2:13: unknown device field "plataform": use platform, app_version, os_version, model, manufacturer, locale, country, timezone (did you mean "platform"?)`},
	} {
		t.Run(tc.text, func(t *testing.T) {
			_, err := ParseTemplate(tc.text)
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error %v (%T), want Errors", err, err)
			}
			if got := errs[0].Error(); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

// Every mistake of a text is reported, and a good field after a bad one
// is read.
func TestParseTemplateAllErrors(t *testing.T) {
	_, err := ParseTemplate("{{a.b}} {{app_info.ok}} {{device.x}} {{trigger.y | nope}} {{")
	want := []string{
		`1:3: unknown field source "a": use app_info, device or trigger`,
		`1:34: unknown device field "x": use platform, app_version, os_version, model, manufacturer, locale, country, timezone`,
		`1:52: unknown filter "nope": the only filter is default, as in {{trigger.y | default "text"}}`,
		`1:59: {{ is not closed: end the field with }} (write {{{{ for a literal {{)`,
	}
	if got := strings.Split(err.Error(), "\n"); !slices.Equal(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// The template's device fields are the segment language's.
func TestTemplateDeviceFields(t *testing.T) {
	d := &tag.DeviceInfo{Platform: "0", AppVersion: "1", OSVersion: "2", Model: "3", Manufacturer: "4", Locale: "5", Country: "6", TimeZone: "7"}
	for i := range segments.DeviceFields {
		if got := segments.DeviceField(d, i); got != string(rune('0'+i)) {
			t.Errorf("device field %d (%s) reads %q", i, segments.DeviceFields[i], got)
		}
	}
}

// Rendering allocates the result and nothing else.
func TestTemplateRenderAllocs(t *testing.T) {
	tpl, err := ParseTemplate(`Hi {{app_info.first_name | default "there"}}, {{trigger.words}} words on {{trigger.category}} in {{device.country}} until {{app_info.expiry}}`)
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = tpl.Render(tplValues) }); n > 1 {
		t.Errorf("Render allocates %v times, want 1", n)
	}
	plain, _ := ParseTemplate("no fields")
	if n := testing.AllocsPerRun(100, func() { _, _ = plain.Render(tplValues) }); n != 0 {
		t.Errorf("Render of a text without fields allocates %v times, want 0", n)
	}
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() { buf, _ = tpl.Append(buf[:0], tplValues) }); n != 0 {
		t.Errorf("Append into a buffer allocates %v times, want 0", n)
	}
}

func BenchmarkTemplateRender(b *testing.B) {
	tpl, err := ParseTemplate(`Hi {{app_info.first_name | default "there"}}, {{trigger.words}} words on {{trigger.category}} in {{device.country}}`)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_, _ = tpl.Render(tplValues)
	}
}

func TestMessageTemplate(t *testing.T) {
	badge := 3
	m := &Message{
		Title: "Hi {{app_info.first_name}}", Body: "{{trigger.category}} news", Sound: "default", Badge: &badge,
		Image: "https://cdn.example.com/{{trigger.category}}.png", DeepLink: "news://c/{{trigger.category}}",
		Data:       map[string]string{"a": "{{device.locale}}", "b": "{{app_info.nickname}}"},
		CollapseID: "c", Priority: PriorityHigh, TTL: time.Hour, Layout: LayoutModal,
		Buttons:    []Button{{Label: "Go {{app_info.first_name}}", DeepLink: "news://{{trigger.words}}"}},
		Activities: []string{"home"},
	}
	mt, err := CompileMessage(m)
	if err != nil {
		t.Fatal(err)
	}
	got, missing := mt.Render(tplValues)
	want := *m
	want.Title, want.Body = "Hi Ana", "sport news"
	want.Image, want.DeepLink = "https://cdn.example.com/sport.png", "news://c/sport"
	want.Data = map[string]string{"a": "fr-FR", "b": ""}
	want.Buttons = []Button{{Label: "Go Ana", DeepLink: "news://800"}}
	if got.Title != want.Title || got.Body != want.Body || got.Image != want.Image || got.DeepLink != want.DeepLink ||
		!maps.Equal(got.Data, want.Data) || !slices.Equal(got.Buttons, want.Buttons) || got.Sound != "default" || got.Badge != &badge ||
		got.TTL != time.Hour || got.Layout != LayoutModal || !slices.Equal(got.Activities, m.Activities) {
		t.Errorf("Render =\n%+v\nwant\n%+v", got, want)
	}
	if !slices.Equal(missing, []string{"app_info.nickname"}) {
		t.Errorf("missing %q, want [app_info.nickname]", missing)
	}
	if m.Title != "Hi {{app_info.first_name}}" || m.Data["a"] != "{{device.locale}}" {
		t.Error("Render changed the message")
	}

	// Every text that messageTexts lists (and Check checks) is rendered.
	var texts []string
	messageTexts(m, func(path, text string) { texts = append(texts, path) })
	wantTexts := []string{"title", "body", "image", "deep_link", "data.a", "data.b", "buttons[0].label", "buttons[0].deep_link"}
	if !slices.Equal(texts, wantTexts) {
		t.Errorf("messageTexts lists %v, want %v", texts, wantTexts)
	}

	_, err = CompileMessage(&Message{Title: "{{x}}", Data: map[string]string{"k": "{{"}})
	if err == nil || !strings.Contains(err.Error(), `title: 1:3: field "x" needs its source`) || !strings.Contains(err.Error(), "data.k: 1:1: {{ is not closed") {
		t.Errorf("CompileMessage error %v, want the title's and data.k's mistakes with their paths", err)
	}
}

func FuzzParseTemplate(f *testing.F) {
	for _, s := range []string{
		"", "plain", "Hi {{app_info.first_name}}", `{{app_info.x | default "a\"b"}}`, "{{{{", "{{{{{{device.locale}}",
		"{{trigger.category}}{{device.model}}", "{{", "}}", "{{}}", "{{ app_info.x | default 'y' }}", "é{{x.y}}\n{{device.zz}}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		tpl, err := ParseTemplate(text)
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 || len(errs) > maxTemplateErrors {
				t.Fatalf("error %v (%T), want 1 to %d Errors", err, err, maxTemplateErrors)
			}
			for _, e := range errs {
				if e.Line < 1 || e.Col < 1 || e.Msg == "" {
					t.Fatalf("error without a place or a message: %#v", e)
				}
			}
			return
		}
		if tpl.String() != text {
			t.Fatalf("String %q, want %q", tpl.String(), text)
		}
		// Without values, exactly the fields without a default are
		// missing, and the output is the text's literals and defaults.
		out, missing := tpl.Render(Values{})
		var want []string
		for _, fl := range tpl.Fields() {
			if !strings.HasPrefix(text[fl.Offset:], "{{") {
				t.Fatalf("field %s at offset %d, not at a {{", fl.Name(), fl.Offset)
			}
			if !fl.HasDefault && !slices.Contains(want, fl.Name()) {
				want = append(want, fl.Name())
			}
		}
		if !slices.Equal(missing, want) {
			t.Fatalf("missing %q, want %q", missing, want)
		}
		if !strings.Contains(text, "{{") && out != text {
			t.Fatalf("a text without {{ renders as %q", out)
		}
		full, _ := tpl.Render(tplValues)
		_ = full
	})
}
