package sinks

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/sinks/clickhouse"
)

// ResultStore stores decoded delivery results (clickhouse.Writer). The sink
// calls it from up to Config.Writers goroutines at once.
type ResultStore interface {
	WriteResults(ctx context.Context, rows []clickhouse.ResultRow) error
}

// FeedbackWriter decodes the dispatcher's delivery results, as
// engage.feedback carries them (dispatcher.Feedback, JSON), and writes
// them. A message that does not decode, or lacks what identifies a result,
// or has a time the store cannot hold or a negative attempt count, is dead;
// so is one the store refuses for what it is.
type FeedbackWriter struct {
	Store ResultStore
	// Permanent tells a refusal of the data from an unavailable store
	// (clickhouse.IsPermanent).
	Permanent func(error) bool
}

// feedbackJSON is the wire form of dispatcher.Feedback, decoded here rather
// than imported so that the sink does not depend on the dispatcher and the
// providers' clients; feedback_internal_test.go holds the two to the same
// fields.
type feedbackJSON struct {
	ID         string    `json:"id"`
	DeliveryID string    `json:"delivery_id"`
	App        string    `json:"app"`
	Campaign   string    `json:"campaign"`
	Version    int64     `json:"version"`
	Variant    string    `json:"variant,omitempty"`
	DeviceID   string    `json:"device_id"`
	Channel    string    `json:"channel"`
	Provider   string    `json:"provider,omitempty"`
	Outcome    string    `json:"outcome"`
	Reason     string    `json:"reason,omitempty"`
	ProviderID string    `json:"provider_id,omitempty"`
	Attempts   int       `json:"attempts"`
	Time       time.Time `json:"time"`
}

// Write implements Writer.
func (w FeedbackWriter) Write(ctx context.Context, msgs []bus.Message) ([]Dead, error) {
	rows := make([]clickhouse.ResultRow, 0, len(msgs))
	kept := make([]bus.Message, 0, len(msgs))
	var dead []Dead
	for _, m := range msgs {
		row, reason := decodeFeedback(m)
		if reason != "" {
			dead = append(dead, Dead{Msg: m, Reason: reason})
			continue
		}
		rows = append(rows, row)
		kept = append(kept, m)
	}
	refused, err := isolate(ctx, rows, kept, w.Store.WriteResults, w.Permanent)
	return append(dead, refused...), err
}

// decodeFeedback returns the row of a message, or why it can never be one.
func decodeFeedback(m bus.Message) (clickhouse.ResultRow, string) {
	var f feedbackJSON
	if err := json.Unmarshal(m.Value, &f); err != nil {
		return clickhouse.ResultRow{}, "undecodable feedback: " + err.Error()
	}
	for _, x := range []struct{ name, v string }{{"id", f.ID}, {"delivery_id", f.DeliveryID}, {"app", f.App}, {"campaign", f.Campaign},
		{"device_id", f.DeviceID}, {"outcome", f.Outcome}} {
		if x.v == "" {
			return clickhouse.ResultRow{}, "invalid feedback: no " + x.name
		}
	}
	if f.Time.IsZero() {
		return clickhouse.ResultRow{}, "invalid feedback: no time"
	}
	if msg := checkTime("feedback", "time", f.Time); msg != "" {
		return clickhouse.ResultRow{}, msg
	}
	if f.Attempts < 0 || f.Attempts > math.MaxUint32 {
		return clickhouse.ResultRow{}, fmt.Sprintf("invalid feedback: attempts %d is not in 0..%d", f.Attempts, uint32(math.MaxUint32))
	}
	return clickhouse.ResultRow{ID: f.ID, DeliveryID: f.DeliveryID, App: f.App, Campaign: f.Campaign, Version: f.Version, Variant: f.Variant,
		DeviceID: f.DeviceID, Channel: f.Channel, Provider: f.Provider, Outcome: f.Outcome, Reason: f.Reason, ProviderID: f.ProviderID,
		Attempts: uint32(f.Attempts), Time: f.Time.UTC(), Partition: int32(m.Partition), Offset: m.Offset}, ""
}
