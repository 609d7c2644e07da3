// Package tagplan reads an app's tag plan — a YAML file that declares what
// the app collects — and holds records to it. Too much data kills the data:
// what the plan does not declare is reported, and refused where the plan
// says enforce.
//
// # The plan file
//
//	app: news            # app id, required, same rules as record ids
//	mode: warn           # off | warn | enforce   (default warn)
//	activities:          # screens
//	  home: {}
//	  login:
//	    extras: {section: string}
//	  article:
//	    extras: {category: string, words: number}
//	events:
//	  article_read:
//	    extras: {category: string, words: number, premium: bool, published: date}
//	  logged_in: {}
//	  shared: {extras: {network: string}}
//	jobs:
//	  login: {}
//	errors:
//	  connection_failure: {extras: {code: number}}
//	crashes: any          # or a mapping of names; any (the default) allows every crash name
//	extras:               # extras allowed on every tag (optional)
//	  ab_group: string
//	app_info:
//	  logged_in: bool
//	  subscription_expiry: date
//	  level: number
//	  topics: string
//
// Every section is optional. activities, events, jobs, errors and (unless
// any) crashes map names to entries; a name is any string of 1 to 256 bytes
// without control characters, and the same name may appear in several
// sections (login above is an activity and a job). An entry is a mapping
// whose only key is extras; `home: {}` and `home:` both declare a tag
// without extras. extras and app_info map keys (^[A-Za-z][A-Za-z0-9_]*$, at
// most 64 bytes) to types: string, number, bool (or boolean) and date. A
// tag may repeat a global extras key only with the same type. YAML anchors
// and aliases may share entries or extras between tags.
//
// Parse reports every mistake in the file, not only the first, as Errors:
// unknown keys (with a suggestion for typos), duplicate keys and names,
// unknown types, invalid keys, entries that are not mappings, a missing
// app. Each renders as "file:line:col: message" at the YAML node concerned;
// YAML syntax errors render as "file:line: syntax error: …" because the YAML
// parser gives no column.
//
// # Applying the plan
//
// Plan.Apply holds one record to the plan. A record's name must be declared
// in the section of its kind: activity_start and activity_end in
// activities; event in events; job, job_start and job_end in jobs; error in
// errors; crash in crashes, unless crashes is any. Each extras key must be
// declared on the tag or in the global extras, and each app_info key in
// app_info, with the value of the declared type. Sessions, device info and
// push feedback are not checked. With crashes: any, a crash's extras are not
// checked either, except the global ones' types.
//
// Before checking, Apply coerces strings to the declared type, because some
// SDKs (Segment's) send dates as strings: an RFC 3339 time becomes a date,
// a decimal number (as JSON writes numbers) a number, "true" or "false" a
// bool. Only declared keys are coerced.
//
// In mode off, Apply does nothing. In mode enforce, it returns a
// *tag.FieldError for the first unplanned thing, e.g. `name: event "foo" is
// not in the tag plan of app "news" (mode enforce)` or `extras.words:
// declared number in the tag plan, got bool`. In mode warn, it accepts the
// record and appends one mark per unplanned thing to Record.Unplanned:
//
//	activity:<name>                        undeclared tag (also event:, job:, error:, crash:)
//	extra:<section>:<name>:<key>           undeclared extras key on a declared tag
//	type:extra:<section>:<name>:<key>:<type>  extras value of another type than declared
//	app_info:<key>                         undeclared app_info key
//	type:app_info:<key>:<type>             app_info value of another type than declared
//
// <section> is activity, event, job, error or crash; <type> is the type
// the record carried (string, number, bool, date). The extras of an
// undeclared tag are not marked one by one. Only <name> may contain ':', so
// a mark splits unambiguously: the prefix and section up to the first ':'s,
// the key and type after the last ones.
package tagplan
