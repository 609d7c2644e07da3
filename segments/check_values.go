package segments

import (
	"fmt"
	"slices"
	"strings"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/pipeline/tagplan"
)

// comparand is what a comparison compares: an app_info key, an extra of a
// tag, or a device field.
type comparand struct {
	subject string   // for messages: `app_info "level"`, `extra "category" of event "article_read"`, `platform`
	use     string   // key in checker.uses when the type is not declared; "" for device fields
	typ     tag.Type // the declared type; TypeInvalid when the plan does not say
	planned bool     // typ comes from the tag plan
	device  bool     // a device field (always a string)
	version bool     // app_version or os_version: ordered as versions
}

// Platforms are the values of the platform device field.
var Platforms = []string{"ios", "android", "web", "windows", "macos", "other"}

// article returns "a" or "an" for a type name.
func article(t tag.Type) string {
	return map[bool]string{true: "an", false: "a"}[t == tag.TypeInvalid] + " " + t.String()
}

// operandType is the type of a value: a date for dates relative to now.
func operandType(o Operand) tag.Type {
	if o.Relative {
		return tag.TypeDate
	}
	return o.Value.Type
}

func operandAt(o Operand, at Pos) Pos {
	if o.At != (Pos{}) {
		return o.At
	}
	return at
}

// comparison checks an operator and its values against what they compare
// and reports whether they are sound (so further checks of the values make
// sense).
func (c *checker) comparison(x comparand, op CmpOp, vs []Operand, at Pos, path string) bool {
	if _, ok := opNames[op]; !ok {
		c.errorf(at, path+"/op", "unknown operator %d", op)
		return false
	}
	switch n := arity(op); {
	case n >= 0 && len(vs) != n:
		c.errorf(at, path+"/values", "%s takes %d value%s, found %d", op, n, map[bool]string{true: "s"}[n != 1], len(vs))
		return false
	case n < 0 && len(vs) == 0:
		c.errorf(at, path+"/values", "%s takes a list of at least one value, found none", op)
		return false
	case len(vs) > MaxValues:
		c.errorf(at, path+"/values", "%s takes at most %d values, found %d", op, MaxValues, len(vs))
		return false
	}
	for i, v := range vs {
		vp := fmt.Sprintf("%s/values/%d", path, i)
		switch t := operandType(v); {
		case t < tag.TypeString || t > tag.TypeDate:
			c.errorf(operandAt(v, at), vp, "the value has no type")
			return false
		case t == tag.TypeNumber && !finite(v.Value.Num):
			c.errorf(operandAt(v, at), vp, "number %v is not allowed: give a finite number", v.Value.Num)
			return false
		case t != operandType(vs[0]):
			c.errorf(operandAt(v, at), vp, "the values of %s mix %s (%s) and %s (%s): give values of one type",
				op, article(operandType(vs[0])), formatOperand(vs[0]), article(t), formatOperand(v))
			return false
		}
	}
	typ, ok := c.resolveType(x, vs, at, path)
	if !ok {
		return false
	}
	if typ != tag.TypeInvalid && !opApplies(op, typ, x.version) {
		c.errorf(at, path+"/op", "%s", opMismatch(x, op, typ))
		return false
	}
	return c.ordered(x, op, vs, at, path)
}

// resolveType returns the type of the comparand: declared, or inferred
// from the values and held to the other comparisons of the same thing.
func (c *checker) resolveType(x comparand, vs []Operand, at Pos, path string) (tag.Type, bool) {
	if len(vs) == 0 {
		if u, ok := c.uses[x.use]; ok && x.typ == tag.TypeInvalid {
			return u.typ, true
		}
		return x.typ, true
	}
	got, vat := operandType(vs[0]), operandAt(vs[0], at)
	switch {
	case x.typ != tag.TypeInvalid && got == x.typ:
		return got, true
	case x.version && got == tag.TypeNumber:
		c.errorf(vat, path+"/values/0", "%s is a version: write it in quotes, %s", x.subject, versionHint)
	case x.device:
		c.errorf(vat, path+"/values/0", "%s is a string, compared with %s", x.subject, article(got))
	case x.typ != tag.TypeInvalid:
		c.errorf(vat, path+"/values/0", "%s is %s %s, compared with %s", x.subject, article(x.typ), c.inPlan(), article(got))
	default:
		u, seen := c.uses[x.use]
		if !seen {
			c.uses[x.use] = typeUse{got, vat}
			return got, true
		}
		if u.typ == got {
			return got, true
		}
		c.errorf(vat, path+"/values/0", "%s is compared with %s here and with %s at %s", x.subject, article(got), article(u.typ), u.at)
	}
	return tag.TypeInvalid, false
}

// opApplies reports whether op compares values of type t.
func opApplies(op CmpOp, t tag.Type, version bool) bool {
	switch op {
	case OpEq, OpNe, OpSet, OpNotSet:
		return true
	case OpIn, OpNotIn:
		return t == tag.TypeString || t == tag.TypeNumber
	case OpPrefix:
		return t == tag.TypeString
	}
	// <, <=, >, >=, between
	return t == tag.TypeNumber || t == tag.TypeDate || t == tag.TypeString && version
}

func opMismatch(x comparand, op CmpOp, t tag.Type) string {
	var applies string
	switch op {
	case OpIn, OpNotIn:
		applies = "strings and numbers"
	case OpPrefix:
		applies = "strings"
	default:
		applies = "numbers, dates and versions (app_version, os_version)"
	}
	return fmt.Sprintf("%s compares %s, and %s is %s", op, applies, x.subject, article(t))
}

// ordered checks that between's bounds come in order, and that versions
// read as versions.
func (c *checker) ordered(x comparand, op CmpOp, vs []Operand, at Pos, path string) bool {
	if x.version && op != OpPrefix {
		for i, v := range vs {
			if !ValidVersion(v.Value.Str) {
				c.errorf(operandAt(v, at), fmt.Sprintf("%s/values/%d", path, i), "%s is not a version: a digit first, %s", Quote(v.Value.Str), versionHint)
				return false
			}
		}
	}
	if op != OpBetween {
		return true
	}
	lo, hi := vs[0], vs[1]
	var reversed bool
	switch {
	case x.version:
		reversed = CompareVersions(lo.Value.Str, hi.Value.Str) > 0
	case lo.Relative && hi.Relative:
		reversed = lo.Offset > hi.Offset
	case lo.Relative || hi.Relative:
		// One fixed date and one relative to now: their order changes with time.
	case lo.Value.Type == tag.TypeNumber:
		reversed = lo.Value.Num > hi.Value.Num
	case lo.Value.Type == tag.TypeDate:
		reversed = lo.Value.Date.After(hi.Value.Date)
	}
	if reversed {
		c.errorf(operandAt(lo, at), path+"/values", "between %s and %s: the smaller value comes first (between %s and %s)",
			formatOperand(lo), formatOperand(hi), formatOperand(hi), formatOperand(lo))
		return false
	}
	return true
}

// deviceValues checks the values of platform, country and timezone
// against what devices send.
func (c *checker) deviceValues(a *Attr, path string) {
	if a.Op != OpEq && a.Op != OpNe && a.Op != OpIn && a.Op != OpNotIn {
		return
	}
	for i, v := range a.Values {
		s, vat, vp := v.Value.Str, operandAt(v, a.At), fmt.Sprintf("%s/values/%d", path, i)
		switch a.Key {
		case "platform":
			if !slices.Contains(Platforms, s) {
				hint := ""
				if low := strings.ToLower(s); slices.Contains(Platforms, low) {
					hint = fmt.Sprintf(" (did you mean %q?)", low)
				} else if sug, ok := tagplan.Suggest(s, Platforms); ok {
					hint = fmt.Sprintf(" (did you mean %q?)", sug)
				}
				c.errorf(vat, vp, "platform %q is not one of %s%s", s, strings.Join(Platforms, ", "), hint)
			}
		case "country":
			if len(s) != 2 || !isUpper(s[0]) || !isUpper(s[1]) {
				c.errorf(vat, vp, "country %q is not an ISO 3166-1 alpha-2 code in upper case, such as \"FR\"", s)
			}
		case "timezone":
			if !tag.ValidTimeZone(s) {
				c.errorf(vat, vp, "timezone %q is not an IANA time zone such as \"Europe/Paris\"", s)
			}
		}
	}
}

func isUpper(c byte) bool { return 'A' <= c && c <= 'Z' }
