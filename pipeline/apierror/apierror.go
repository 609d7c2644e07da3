// Package apierror writes the one error body every HTTP API of the
// platform answers with (the collector, the processor's segments API, the
// scheduler's campaigns API and the analytics API):
//
//	{"error": {"code": "unknown_write_key", "message": "the write key ab… is not the key of any app"}}
//
// code is a stable snake_case identifier a program can switch on; message
// says, for a person, what is wrong and what to do. The optional fields
// say where: param (the query parameter, path part or header at fault),
// offset (the byte offset in the body where JSON went wrong) and errors
// (each mistake of a document sent, at its line:column). Nothing else is
// ever in the body.
//
// It imports the standard library only.
package apierror

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// Body is an error answer.
type Body struct {
	Error Detail `json:"error"`
}

// Detail is the content of an error answer.
type Detail struct {
	Code    string   `json:"code"`
	Message string   `json:"message"`
	Param   string   `json:"param,omitempty"`
	Offset  *int64   `json:"offset,omitempty"`
	Errors  []string `json:"errors,omitempty"`
}

// Error is an error answered with its status: handlers return it and the
// API's wrapper writes it with Write.
type Error struct {
	Status int
	Detail
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// New returns an *Error with a formatted message.
func New(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Detail: Detail{Code: code, Message: fmt.Sprintf(format, args...)}}
}

// WithParam sets the parameter at fault.
func (e *Error) WithParam(param string) *Error { e.Param = param; return e }

// Write answers with the status and the body of d, as JSON.
func Write(w http.ResponseWriter, status int, d Detail) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Del("Content-Length")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(Body{Error: d})
}

// Writef answers with status and the body {"error": {"code": code,
// "message": …}}, the message formatted.
func Writef(w http.ResponseWriter, status int, code, format string, args ...any) {
	Write(w, status, Detail{Code: code, Message: fmt.Sprintf(format, args...)})
}

// WriteErr answers with err: an *Error (also wrapped) as it is, any other
// error as a 500 "internal" with its text.
func WriteErr(w http.ResponseWriter, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Status: http.StatusInternalServerError, Detail: Detail{Code: "internal", Message: err.Error()}}
	}
	Write(w, e.Status, e.Detail)
}

// Decode reads an error body strictly: exactly one value of the shape,
// no other field, code and message not empty.
func Decode(r io.Reader) (Detail, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var b struct {
		Error *Detail `json:"error"`
	}
	if err := dec.Decode(&b); err != nil {
		return Detail{}, fmt.Errorf("error body: %w", err)
	}
	if dec.More() {
		return Detail{}, errors.New("error body: data after the JSON value")
	}
	if _, err := dec.Token(); err != io.EOF {
		return Detail{}, errors.New("error body: data after the JSON value")
	}
	switch {
	case b.Error == nil:
		return Detail{}, errors.New(`error body: no "error"`)
	case b.Error.Code == "" || b.Error.Message == "":
		return Detail{}, errors.New("error body: empty code or message")
	}
	return *b.Error, nil
}

// DecodeBytes is Decode of a body already read.
func DecodeBytes(body []byte) (Detail, error) { return Decode(bytes.NewReader(body)) }

// Routes serves mux, and answers what mux does not route with the shape
// rather than its plain-text answers: a path no pattern matches (404
// "not_found") and a method the path does not take (405
// "method_not_allowed", with the Allow header mux sets).
func Routes(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		// mux's own 404 or 405: let it set its headers (Allow), keep
		// its status, drop its text.
		rec := &statusOnly{header: w.Header(), status: http.StatusOK}
		h.ServeHTTP(rec, r)
		w.Header().Del("X-Content-Type-Options")
		if rec.status == http.StatusMethodNotAllowed {
			Writef(w, http.StatusMethodNotAllowed, "method_not_allowed", "%.16s is not allowed on %.200s: use %s", r.Method, r.URL.Path, w.Header().Get("Allow"))
			return
		}
		Writef(w, http.StatusNotFound, "not_found", "no route %.200s", r.URL.Path)
	})
}

// statusOnly keeps the status a handler writes and drops its body.
type statusOnly struct {
	header http.Header
	status int
	wrote  bool
}

func (s *statusOnly) Header() http.Header { return s.header }
func (s *statusOnly) WriteHeader(status int) {
	if !s.wrote {
		s.status, s.wrote = status, true
	}
}
func (s *statusOnly) Write(b []byte) (int, error) { s.wrote = true; return len(b), nil }
