package mock

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The shape of projects.messages.send's body, from the FCM HTTP v1 REST
// reference (Message, AndroidConfig, AndroidNotification, WebpushConfig,
// ApnsConfig, FcmOptions). Field names are matched as proto JSON does: the
// lowerCamelCase name or the original snake_case one (the Go Admin SDK sends
// the latter).

type fieldKind int

const (
	kString fieldKind = iota
	kBool
	kInt
	kNumber
	kDuration
	kTimestamp
	kEnum
	kStringMap
	kStringList
	kDurationList
	kStruct // google.protobuf.Struct: any JSON object
	kMessage
)

type fieldSpec struct {
	kind fieldKind
	sub  map[string]fieldSpec // kMessage
	enum []string             // kEnum, compared ignoring case
	typ  string               // type name in error messages
}

var (
	str       = fieldSpec{kind: kString, typ: "TYPE_STRING"}
	boolean   = fieldSpec{kind: kBool, typ: "TYPE_BOOL"}
	duration  = fieldSpec{kind: kDuration, typ: "type.googleapis.com/google.protobuf.Duration"}
	stringMap = fieldSpec{kind: kStringMap, typ: "TYPE_STRING"}
	structObj = fieldSpec{kind: kStruct, typ: "type.googleapis.com/google.protobuf.Struct"}
)

func msg(typ string, fields map[string]fieldSpec) fieldSpec {
	return fieldSpec{kind: kMessage, sub: fields, typ: typ}
}

func enum(typ string, values ...string) fieldSpec {
	return fieldSpec{kind: kEnum, enum: values, typ: typ}
}

var fcmOptionsSpec = msg("type.googleapis.com/google.firebase.fcm.v1.FcmOptions", map[string]fieldSpec{"analyticsLabel": str})

var androidNotificationSpec = msg("type.googleapis.com/google.firebase.fcm.v1.AndroidNotification", map[string]fieldSpec{
	"title": str, "body": str, "icon": str, "color": str, "sound": str, "tag": str,
	"clickAction": str, "bodyLocKey": str, "titleLocKey": str, "channelId": str,
	"ticker": str, "image": str,
	"bodyLocArgs":  {kind: kStringList, typ: "TYPE_STRING"},
	"titleLocArgs": {kind: kStringList, typ: "TYPE_STRING"},
	"sticky":       boolean, "localOnly": boolean, "defaultSound": boolean,
	"defaultVibrateTimings": boolean, "defaultLightSettings": boolean,
	"eventTime": {kind: kTimestamp, typ: "type.googleapis.com/google.protobuf.Timestamp"},
	"notificationPriority": enum("type.googleapis.com/google.firebase.fcm.v1.AndroidNotification.NotificationPriority",
		"PRIORITY_UNSPECIFIED", "PRIORITY_MIN", "PRIORITY_LOW", "PRIORITY_DEFAULT", "PRIORITY_HIGH", "PRIORITY_MAX"),
	"visibility": enum("type.googleapis.com/google.firebase.fcm.v1.AndroidNotification.Visibility",
		"VISIBILITY_UNSPECIFIED", "PRIVATE", "PUBLIC", "SECRET"),
	"proxy": enum("type.googleapis.com/google.firebase.fcm.v1.AndroidNotification.Proxy",
		"PROXY_UNSPECIFIED", "ALLOW", "DENY", "IF_PRIORITY_LOWERED"),
	"vibrateTimings":    {kind: kDurationList, typ: "type.googleapis.com/google.protobuf.Duration"},
	"notificationCount": {kind: kInt, typ: "TYPE_INT32"},
	"lightSettings": msg("type.googleapis.com/google.firebase.fcm.v1.LightSettings", map[string]fieldSpec{
		"color": msg("type.googleapis.com/google.type.Color", map[string]fieldSpec{
			"red": {kind: kNumber, typ: "TYPE_FLOAT"}, "green": {kind: kNumber, typ: "TYPE_FLOAT"},
			"blue": {kind: kNumber, typ: "TYPE_FLOAT"}, "alpha": {kind: kNumber, typ: "TYPE_FLOAT"},
		}),
		"lightOnDuration":  duration,
		"lightOffDuration": duration,
	}),
})

var messageSpec = map[string]fieldSpec{
	"name": str,
	"data": stringMap,
	"notification": msg("type.googleapis.com/google.firebase.fcm.v1.Notification", map[string]fieldSpec{
		"title": str, "body": str, "image": str,
	}),
	"android": msg("type.googleapis.com/google.firebase.fcm.v1.AndroidConfig", map[string]fieldSpec{
		"collapseKey":            str,
		"priority":               enum("type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority", "NORMAL", "HIGH"),
		"ttl":                    duration,
		"restrictedPackageName":  str,
		"data":                   stringMap,
		"notification":           androidNotificationSpec,
		"fcmOptions":             fcmOptionsSpec,
		"directBootOk":           boolean,
		"restrictedSatelliteOk":  boolean,
		"bandwidthConstrainedOk": boolean,
	}),
	"webpush": msg("type.googleapis.com/google.firebase.fcm.v1.WebpushConfig", map[string]fieldSpec{
		"headers":      stringMap,
		"data":         stringMap,
		"notification": structObj,
		"fcmOptions": msg("type.googleapis.com/google.firebase.fcm.v1.WebpushFcmOptions", map[string]fieldSpec{
			"link": str, "analyticsLabel": str,
		}),
	}),
	"apns": msg("type.googleapis.com/google.firebase.fcm.v1.ApnsConfig", map[string]fieldSpec{
		"headers": stringMap,
		"payload": structObj,
		"fcmOptions": msg("type.googleapis.com/google.firebase.fcm.v1.ApnsFcmOptions", map[string]fieldSpec{
			"analyticsLabel": str, "image": str,
		}),
		"liveActivityToken": str,
	}),
	"fcmOptions": fcmOptionsSpec,
	"token":      str,
	"topic":      str,
	"condition":  str,
}

var (
	durationRE = regexp.MustCompile(`^-?[0-9]+(\.[0-9]{1,9})?s$`)
	topicRE    = regexp.MustCompile(`^[a-zA-Z0-9\-_.~%]+$`)
	fcmTokenRE = regexp.MustCompile(`^[A-Za-z0-9_:.\-]+$`)
)

// Limits of the data payload (keys and values), from the ErrorCode
// reference: 4096 bytes, 2048 for messages to topics.
const (
	fcmMaxData      = 4096
	fcmMaxTopicData = 2048
)

// violation is why a message is refused: an INVALID_ARGUMENT answer with a
// google.rpc.BadRequest detail (naming field when set), and an FcmError
// detail when fcm is set.
type violation struct {
	message  string
	field    string
	fcm      bool
	noDetail bool // no google.rpc.BadRequest detail either
}

func invalidValue(path string, spec fieldSpec, raw json.RawMessage) *violation {
	d := fmt.Sprintf("Invalid value at '%s' (%s), %s", path, spec.typ, bytes.TrimSpace(raw))
	return &violation{message: d, field: path}
}

func unknownName(path, name string) *violation {
	return &violation{message: fmt.Sprintf("Invalid JSON payload received. Unknown name %q at '%s': Cannot find field.", name, path)}
}

// member is one name and value of a JSON object, in the order written.
type member struct {
	name string
	val  json.RawMessage
}

// members splits a JSON object; false if raw is not one.
func members(raw json.RawMessage) ([]member, bool) {
	d := json.NewDecoder(bytes.NewReader(raw))
	if t, err := d.Token(); err != nil || t != json.Delim('{') {
		return nil, false
	}
	var out []member
	for d.More() {
		t, err := d.Token()
		if err != nil {
			return nil, false
		}
		name, _ := t.(string)
		var v json.RawMessage
		if err := d.Decode(&v); err != nil {
			return nil, false
		}
		out = append(out, member{name, v})
	}
	return out, true
}

// lowerCamel turns a proto field's original name into its JSON name.
func lowerCamel(s string) string {
	if !strings.Contains(s, "_") {
		return s
	}
	var b strings.Builder
	up := false
	for _, r := range s {
		switch {
		case r == '_':
			up = true
		case up:
			b.WriteString(strings.ToUpper(string(r)))
			up = false
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// checkObject checks a JSON object against a message's fields.
func checkObject(path string, raw json.RawMessage, spec fieldSpec) *violation {
	ms, ok := members(raw)
	if !ok {
		return invalidValue(path, spec, raw)
	}
	for _, m := range ms {
		f, ok := spec.sub[lowerCamel(m.name)]
		if !ok {
			return unknownName(path, m.name)
		}
		if isNull(m.val) {
			continue
		}
		if v := checkValue(path+"."+lowerCamel(m.name), m.val, f); v != nil {
			return v
		}
	}
	return nil
}

func checkValue(path string, raw json.RawMessage, f fieldSpec) *violation {
	var s string
	isString := json.Unmarshal(raw, &s) == nil
	switch f.kind {
	case kString:
		if !isString {
			return invalidValue(path, f, raw)
		}
	case kBool:
		if b := string(bytes.TrimSpace(raw)); b != "true" && b != "false" {
			return invalidValue(path, f, raw)
		}
	case kInt:
		if isString {
			raw = json.RawMessage(s)
		}
		if _, err := strconv.ParseInt(string(bytes.TrimSpace(raw)), 10, 32); err != nil {
			return invalidValue(path, f, raw)
		}
	case kNumber:
		var n float64
		if json.Unmarshal(raw, &n) != nil {
			return invalidValue(path, f, raw)
		}
	case kDuration:
		if !isString || !durationRE.MatchString(s) {
			return invalidValue(path, f, raw)
		}
	case kTimestamp:
		if _, err := time.Parse(time.RFC3339Nano, s); !isString || err != nil {
			return invalidValue(path, f, raw)
		}
	case kEnum:
		if !isString || !containsFold(f.enum, s) {
			return invalidValue(path, f, raw)
		}
	case kStringList, kDurationList:
		var list []json.RawMessage
		if json.Unmarshal(raw, &list) != nil {
			return invalidValue(path, f, raw)
		}
		elem := fieldSpec{kind: kString, typ: f.typ}
		if f.kind == kDurationList {
			elem.kind = kDuration
		}
		for i, e := range list {
			if v := checkValue(fmt.Sprintf("%s[%d]", path, i), e, elem); v != nil {
				return v
			}
		}
	case kStringMap:
		ms, ok := members(raw)
		if !ok {
			return invalidValue(path, f, raw)
		}
		for i, m := range ms {
			if json.Unmarshal(m.val, new(string)) != nil {
				return invalidValue(fmt.Sprintf("%s[%d].value", path, i), f, m.val)
			}
		}
	case kStruct:
		if _, ok := members(raw); !ok {
			return invalidValue(path, f, raw)
		}
	case kMessage:
		return checkObject(path, raw, f)
	}
	return nil
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

// fcmTarget is the recipient of a message and its data, read from the body.
type fcmTarget struct {
	Token     string            `json:"token"`
	Topic     string            `json:"topic"`
	Condition string            `json:"condition"`
	Data      map[string]string `json:"data"`
}

// checkMessage checks a message's shape and recipient, as the FCM backend
// does; nil if it may be sent.
func checkMessage(raw json.RawMessage) (fcmTarget, *violation) {
	var t fcmTarget
	if raw == nil || isNull(raw) {
		return t, &violation{message: "Recipient of the message is not set.", field: "message", fcm: true}
	}
	if v := checkObject("message", raw, fieldSpec{kind: kMessage, sub: messageSpec, typ: "type.googleapis.com/google.firebase.fcm.v1.Message"}); v != nil {
		return t, v
	}
	_ = json.Unmarshal(raw, &t)
	targets, second := 0, ""
	for _, f := range []struct{ name, val string }{{"token", t.Token}, {"topic", t.Topic}, {"condition", t.Condition}} {
		if f.val != "" {
			if targets++; targets == 2 {
				second = f.name
			}
		}
	}
	switch {
	case targets == 0:
		return t, &violation{message: "Recipient of the message is not set.", field: "message", fcm: true}
	case targets > 1:
		return t, &violation{message: "Invalid JSON payload received. Oneof field 'target' is already set. Cannot set '" + second + "'"}
	case t.Token != "" && (len(t.Token) > 4096 || !fcmTokenRE.MatchString(t.Token)):
		return t, &violation{message: "The registration token is not a valid FCM registration token", field: "message.token", fcm: true}
	case t.Topic != "" && !topicRE.MatchString(t.Topic):
		return t, &violation{message: "Invalid topic name " + strconv.Quote(t.Topic), field: "message.topic", fcm: true}
	}
	size := 0
	for k, v := range t.Data {
		if k == "from" || k == "gcm" || strings.HasPrefix(k, "google") {
			return t, &violation{message: "Invalid data key " + strconv.Quote(k), field: "message.data", fcm: true}
		}
		size += len(k) + len(v)
	}
	limit := fcmMaxData
	if t.Topic != "" || t.Condition != "" {
		limit = fcmMaxTopicData
	}
	if size > limit {
		// What FCM answers for a message too big: no detail at all.
		return t, &violation{message: "Request contains an invalid argument.", noDetail: true}
	}
	return t, nil
}
