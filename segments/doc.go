// Package segments is the segment language: a readable text form that a
// marketer writes, an equivalent JSON form for the API, and the checks that
// hold a segment against an app's tag plan. It is part of the pure core: it
// imports no adapter. The engine that keeps memberships current lives in
// segments/engine; docs/segments.md is the reference for the language.
//
//	first_session between 3d and 4d ago
//	  and did activity "login"
//	  and did not event "logged_in"
//
// Parse reads the text into the syntax tree of ast.go, with positions;
// Format writes the canonical text back (Parse(Format(n)) is Equal to n).
// MarshalNode and UnmarshalNode are the JSON form. Parse and UnmarshalNode
// check the form only, and fail on the first mistake with an *Error that
// says where (line:column, or a JSON path), what was expected and what was
// found. Check then holds a segment to its app's tag plan (tags, extras
// and app_info keys, their types) and to the language's limits (windows,
// counts, samples), reporting every problem; CheckRefs finds reference
// cycles among an app's segments.
//
// The conditions:
//
//	first_session within 2d                      Since{MomentFirstSession}
//	last_seen more than 14d ago                  Since{MomentLastSeen}
//	last event "purchase" between 3d and 4d ago  Since{MomentLastTag}
//	did event "share" where network = "x", n > 1 at least 3 times in the last 7d
//	                                             Did (did not …: Not{Did})
//	did job "download" taking more than 30s      Did.Duration
//	app_info "level" >= 5, platform = "ios"      Attr
//	app_info "level" unchanged for 3d            Unchanged
//	segment "engaged"                            Ref
//	sample 1% salt "x"                           Sample
//
// combined with and, or, not and parentheses (not binds tighter than and,
// and than or).
//
// Everything here is safe for concurrent use: the functions keep no state,
// and a tree is never changed once built.
package segments
