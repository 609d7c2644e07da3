package segmentapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"

	"github.com/openengage/engage/pipeline/tag"
)

// wireContext is the part of a Segment context that the device record uses.
// Everything else in a context (library, ip, userAgent, page, campaign,
// network, screen, traits…) is ignored.
type wireContext struct {
	Device struct {
		ID               rawJSON `json:"id"`
		Type             rawJSON `json:"type"`
		Model            rawJSON `json:"model"`
		Manufacturer     rawJSON `json:"manufacturer"`
		Token            rawJSON `json:"token"`
		TokenEnvironment rawJSON `json:"tokenEnvironment"`
		APNsEnvironment  rawJSON `json:"apnsEnvironment"`
	} `json:"device"`
	OS struct {
		Name    rawJSON `json:"name"`
		Version rawJSON `json:"version"`
	} `json:"os"`
	App struct {
		Version rawJSON `json:"version"`
		Build   rawJSON `json:"build"`
	} `json:"app"`
	Locale   rawJSON `json:"locale"`
	Timezone rawJSON `json:"timezone"`
	Location struct {
		Country rawJSON `json:"country"`
	} `json:"location"`
	SessionID    rawJSON `json:"sessionId"`    // RudderStack's SDKs
	SessionStart rawJSON `json:"sessionStart"` // RudderStack's SDKs
}

// decode reads a context over c, field by field, so that a message's
// context overrides the top-level one of its batch. A part of the context
// of the wrong shape is reported in the returned drops (appended to a copy
// of inherited), not as an error: SDKs fill the context, not the app.
func (c *wireContext) decode(raw rawJSON, inherited []string) []string {
	drops := slices.Clip(inherited)
	raw = bytes.TrimSpace(raw)
	if raw.absent() {
		return drops
	}
	if raw[0] != '{' {
		return append(drops, "context: expected an object, got JSON "+jsonKind(raw))
	}
	if err := json.Unmarshal(raw, c); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return append(drops, "context."+te.Field+": expected an object, got JSON "+te.Value)
		}
		return append(drops, "context: "+trimJSONPrefix(err.Error()))
	}
	return drops
}

// info maps the context to device info. Fields it cannot use are appended
// to drops.
func (c *wireContext) info(drops *[]string) tag.DeviceInfo {
	str := func(raw rawJSON, path string) string {
		raw = bytes.TrimSpace(raw)
		if raw.absent() {
			return ""
		}
		if s, ok := unquote(raw); ok {
			return s
		}
		if jsonKind(raw) == "number" {
			return string(raw) // e.g. app.build: 231
		}
		*drops = append(*drops, path+": expected a string, got JSON "+jsonKind(raw))
		return ""
	}
	info := tag.DeviceInfo{
		Platform:     platform(str(c.Device.Type, "context.device.type"), str(c.OS.Name, "context.os.name")),
		AppVersion:   str(c.App.Version, "context.app.version"),
		AppBuild:     str(c.App.Build, "context.app.build"),
		OSVersion:    str(c.OS.Version, "context.os.version"),
		Model:        str(c.Device.Model, "context.device.model"),
		Manufacturer: str(c.Device.Manufacturer, "context.device.manufacturer"),
		Locale:       str(c.Locale, "context.locale"),
		TimeZone:     str(c.Timezone, "context.timezone"),
	}
	if country := str(c.Location.Country, "context.location.country"); country != "" {
		if len(country) == 2 && isLetter(country[0]) && isLetter(country[1]) {
			info.Country = strings.ToUpper(country)
		} else {
			*drops = append(*drops, "context.location.country: "+quoteShort(country)+" is not a two-letter ISO 3166-1 code")
		}
	}
	if token := str(c.Device.Token, "context.device.token"); token != "" {
		switch info.Platform {
		case "ios":
			info.PushToken, info.PushProvider = token, tag.ProviderAPNs
			for _, env := range [...]string{str(c.Device.TokenEnvironment, "context.device.tokenEnvironment"), str(c.Device.APNsEnvironment, "context.device.apnsEnvironment")} {
				if env = strings.ToLower(env); env == "sandbox" || env == "development" {
					info.PushProvider = tag.ProviderAPNsSandbox
				}
			}
		case "android":
			info.PushToken, info.PushProvider = token, tag.ProviderFCM
		default:
			*drops = append(*drops, "context.device.token: no push provider for platform "+quoteShort(info.Platform)+": context.device.type must be ios or android")
		}
	}
	return info
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// platform maps context.device.type and context.os.name to a platform of
// the tag model: the first that names a known platform, else "other" if
// either is set.
func platform(names ...string) string {
	p := ""
	for _, n := range names {
		if n == "" {
			continue
		}
		switch l := strings.ToLower(n); l {
		case "ios", "ipados":
			return "ios"
		case "android", "web", "windows", "macos":
			return l
		}
		p = "other"
	}
	return p
}

// contextPath maps the fields of a device record to the Segment fields they
// come from.
var contextPath = map[string]string{
	"device.platform":     "context.device.type",
	"device.appVersion":   "context.app.version",
	"device.appBuild":     "context.app.build",
	"device.osVersion":    "context.os.version",
	"device.model":        "context.device.model",
	"device.manufacturer": "context.device.manufacturer",
	"device.locale":       "context.locale",
	"device.timeZone":     "context.timezone",
	"device.country":      "context.location.country",
	"device.pushToken":    "context.device.token",
	"device.pushProvider": "context.device.token",
}

// clearField empties the field of info that a validation error names.
func clearField(info *tag.DeviceInfo, field string) bool {
	switch field {
	case "device.platform":
		info.Platform = ""
	case "device.appVersion":
		info.AppVersion = ""
	case "device.appBuild":
		info.AppBuild = ""
	case "device.osVersion":
		info.OSVersion = ""
	case "device.model":
		info.Model = ""
	case "device.manufacturer":
		info.Manufacturer = ""
	case "device.locale":
		info.Locale = ""
	case "device.timeZone":
		info.TimeZone = ""
	case "device.country":
		info.Country = ""
	case "device.pushToken", "device.pushProvider":
		info.PushToken, info.PushProvider = "", tag.ProviderNone
	default:
		return false
	}
	return true
}

// seenDevice is what a request last emitted for a device.
type seenDevice struct {
	context []byte // the message's raw context, for a quick comparison
	info    tag.DeviceInfo
}

// device returns the device record of the message, or nil when it has
// none: when the context gives nothing, or, except for identify calls and
// Application Installed and Updated (forceDevice), when this request
// already emitted the same device info for the device. Context fields that
// break the model's rules are dropped, not errors.
func (d *decoder) device(ctx *wireContext, raw rawJSON, mp *mapped, drops *[]string) (*tag.Record, *MessageError) {
	id := mp.base.DeviceID
	last, seen := d.devices[id]
	if seen && !mp.forceDevice && len(raw) > 0 && bytes.Equal(raw, last.context) {
		return nil, nil // same context as the record already emitted
	}
	var info tag.DeviceInfo
	if raw.absent() {
		info = d.batchInfo(drops)
	} else {
		info = ctx.info(drops)
	}
	if info.AppVersion == "" {
		info.AppVersion = mp.propVersion
	}
	if info.AppBuild == "" {
		info.AppBuild = mp.propBuild
	}
	if info == (tag.DeviceInfo{}) || seen && !mp.forceDevice && info == last.info {
		return nil, nil
	}
	r := mp.base
	r.Kind = tag.KindDevice
	if err := repair(&r, info, mp, drops); err != nil {
		return nil, err
	}
	if d.devices == nil {
		d.devices = make(map[string]seenDevice)
	}
	d.devices[id] = seenDevice{context: raw, info: info}
	return &r, nil
}

// batchInfo is ctx.info of the batch's context, which every message
// without a context of its own has: read once a request.
func (d *decoder) batchInfo(drops *[]string) tag.DeviceInfo {
	if !d.ctxInfoRead {
		d.ctxInfo, d.ctxInfoRead = d.ctx.info(&d.ctxInfoDrops), true
	}
	*drops = append(*drops, d.ctxInfoDrops...)
	return d.ctxInfo
}

// repair sets r's device info and message id, dropping the fields of info
// that the model refuses until r is valid.
func repair(r *tag.Record, info tag.DeviceInfo, mp *mapped, drops *[]string) *MessageError {
	for {
		r.Device = &info
		r.MessageID = tag.GenerateID(r, mp.client)
		err := r.Validate()
		if err == nil {
			return nil
		}
		var fe *tag.FieldError
		if !errors.As(err, &fe) || !clearField(&info, fe.Field) {
			return mp.fieldError(err)
		}
		*drops = append(*drops, contextPath[fe.Field]+": "+fe.Reason)
	}
}
