package collector

import (
	"net/http"
	"time"

	"github.com/openengage/engage/delivery/inbox"
)

// Inbox is where the collector finds each device's in-app messages: the
// inbox.Store that follows engage.inbox.
type Inbox interface {
	Get(app, device, activity string, now time.Time) []inbox.Message
}

// SetInbox makes the collector serve GET /v1/inapp from in (nil: not
// served). Call it before serving.
func (s *Server) SetInbox(in Inbox) { s.inbox = in }

// handleInApp answers an app's request for a device's in-app messages:
// GET /v1/inapp?device=D[&activity=A], with the app's write key as the
// tracking endpoints take it. The messages that may show on activity (all
// of them without one), oldest first.
func (s *Server) handleInApp(w http.ResponseWriter, r *http.Request) {
	app, ok := s.authenticate(w, writeKey(r))
	if !ok || !s.checkOrigin(w, r, app, classInApp) {
		return
	}
	if s.inbox == nil {
		writeError(w, http.StatusNotFound, "inapp_not_served", "this collector does not serve in-app messages (start it with -collector.inbox and Kafka brokers)")
		return
	}
	q := r.URL.Query()
	device := q.Get("device")
	switch {
	case device == "":
		writeError(w, http.StatusBadRequest, "missing_device", "device: give the device id (?device=…)")
		return
	case len(device) > 256:
		writeError(w, http.StatusBadRequest, "bad_device", "device: %d bytes, at most 256", len(device))
		return
	case len(q.Get("activity")) > 256:
		writeError(w, http.StatusBadRequest, "bad_activity", "activity: %d bytes, at most 256", len(q.Get("activity")))
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{"messages": s.inbox.Get(app.ID, device, q.Get("activity"), s.now())})
}
