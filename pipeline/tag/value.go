package tag

import (
	"fmt"
	"math"
	"strconv"
	"time"
)

// Type is the type of an extra or app-info value.
type Type uint8

// The value types. Numeric values are part of the binary encoding.
const (
	TypeInvalid Type = iota
	TypeString
	TypeNumber
	TypeBool
	TypeDate
)

var typeNames = [...]string{"invalid", "string", "number", "bool", "date"}

func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// ParseType returns the type named s ("string", "number", "bool", "date").
func ParseType(s string) (Type, bool) {
	for t := TypeString; t <= TypeDate; t++ {
		if typeNames[t] == s {
			return t, true
		}
	}
	if s == "boolean" {
		return TypeBool, true
	}
	return TypeInvalid, false
}

// Value is a typed value: exactly one of its fields is meaningful, the one
// its Type names. Dates are kept in UTC with millisecond precision.
type Value struct {
	Type Type
	Str  string
	Num  float64
	Bool bool
	Date time.Time
}

// String returns a string value.
func String(s string) Value { return Value{Type: TypeString, Str: s} }

// Number returns a number value.
func Number(f float64) Value { return Value{Type: TypeNumber, Num: f} }

// Bool returns a bool value.
func Bool(b bool) Value { return Value{Type: TypeBool, Bool: b} }

// Date returns a date value, truncated to the millisecond, in UTC.
func Date(t time.Time) Value { return Value{Type: TypeDate, Date: t.UTC().Truncate(time.Millisecond)} }

// Equal reports whether two values have the same type and value.
func (v Value) Equal(w Value) bool {
	if v.Type != w.Type {
		return false
	}
	switch v.Type {
	case TypeString:
		return v.Str == w.Str
	case TypeNumber:
		return v.Num == w.Num || (math.IsNaN(v.Num) && math.IsNaN(w.Num))
	case TypeBool:
		return v.Bool == w.Bool
	case TypeDate:
		return v.Date.Equal(w.Date)
	}
	return true
}

// Text renders the value for logs, errors and analytics columns.
func (v Value) Text() string {
	switch v.Type {
	case TypeString:
		return v.Str
	case TypeNumber:
		return strconv.FormatFloat(v.Num, 'g', -1, 64)
	case TypeBool:
		return strconv.FormatBool(v.Bool)
	case TypeDate:
		return v.Date.Format(time.RFC3339Nano)
	}
	return ""
}

// AppendText appends the value's Text to b, without allocating.
func (v Value) AppendText(b []byte) []byte {
	switch v.Type {
	case TypeString:
		return append(b, v.Str...)
	case TypeNumber:
		return strconv.AppendFloat(b, v.Num, 'g', -1, 64)
	case TypeBool:
		return strconv.AppendBool(b, v.Bool)
	case TypeDate:
		return v.Date.AppendFormat(b, time.RFC3339Nano)
	}
	return b
}

// Extra is one typed key/value.
type Extra struct {
	Key   string
	Value Value
}
