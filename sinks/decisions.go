package sinks

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/sinks/clickhouse"
)

// DecisionStore stores decoded decisions (clickhouse.Writer). The sink
// calls it from up to Config.Writers goroutines at once.
type DecisionStore interface {
	WriteDecisions(ctx context.Context, rows []clickhouse.DecisionRow) error
}

// DecisionWriter decodes the scheduler's decisions, as engage.decisions
// carries them (scheduler.DecisionMessage, JSON), and writes them. A
// message that does not decode, or lacks what identifies a decision, or has
// a time the store cannot hold, is dead; so is one the store refuses for
// what it is.
type DecisionWriter struct {
	Store DecisionStore
	// Permanent tells a refusal of the data from an unavailable store
	// (clickhouse.IsPermanent).
	Permanent func(error) bool
}

// decisionJSON is the wire form of scheduler.DecisionMessage, decoded here
// rather than imported so that the sink does not depend on the scheduler
// service and its dependencies; decisions_test.go holds the two to the same
// fields and the golden messages.
type decisionJSON struct {
	ID         string     `json:"id"`
	App        string     `json:"app"`
	Campaign   string     `json:"campaign"`
	Version    int64      `json:"version"`
	DeviceID   string     `json:"device_id"`
	Occurrence string     `json:"occurrence"`
	Outcome    string     `json:"outcome"`
	Reason     string     `json:"reason"`
	Time       time.Time  `json:"time"`
	SendAt     *time.Time `json:"send_at,omitempty"`
	Variant    string     `json:"variant,omitempty"`
}

// Write implements Writer.
func (w DecisionWriter) Write(ctx context.Context, msgs []bus.Message) ([]Dead, error) {
	rows := make([]clickhouse.DecisionRow, 0, len(msgs))
	kept := make([]bus.Message, 0, len(msgs))
	var dead []Dead
	for _, m := range msgs {
		row, reason := decodeDecision(m)
		if reason != "" {
			dead = append(dead, Dead{Msg: m, Reason: reason})
			continue
		}
		rows = append(rows, row)
		kept = append(kept, m)
	}
	refused, err := isolate(ctx, rows, kept, w.Store.WriteDecisions, w.Permanent)
	return append(dead, refused...), err
}

// decodeDecision returns the row of a message, or why it can never be one.
func decodeDecision(m bus.Message) (clickhouse.DecisionRow, string) {
	var d decisionJSON
	if err := json.Unmarshal(m.Value, &d); err != nil {
		return clickhouse.DecisionRow{}, "undecodable decision: " + err.Error()
	}
	for _, f := range []struct{ name, v string }{{"id", d.ID}, {"app", d.App}, {"campaign", d.Campaign}, {"device_id", d.DeviceID}, {"outcome", d.Outcome}} {
		if f.v == "" {
			return clickhouse.DecisionRow{}, "invalid decision: no " + f.name
		}
	}
	if d.Time.IsZero() {
		return clickhouse.DecisionRow{}, "invalid decision: no time"
	}
	if msg := checkTime("decision", "time", d.Time); msg != "" {
		return clickhouse.DecisionRow{}, msg
	}
	row := clickhouse.DecisionRow{ID: d.ID, App: d.App, Campaign: d.Campaign, Version: d.Version, DeviceID: d.DeviceID, Occurrence: d.Occurrence,
		Outcome: d.Outcome, Reason: d.Reason, Time: d.Time.UTC(), Variant: d.Variant, Partition: int32(m.Partition), Offset: m.Offset}
	if d.SendAt != nil {
		if msg := checkTime("decision", "send_at", *d.SendAt); msg != "" {
			return clickhouse.DecisionRow{}, msg
		}
		row.SendAt = d.SendAt.UTC()
	}
	return row, ""
}

// checkTime says why a time of a message (what) cannot be stored, or "".
func checkTime(what, field string, t time.Time) string {
	if t.Before(clickhouse.MinTime) || t.After(clickhouse.MaxTime) {
		return fmt.Sprintf("invalid %s: %s %s is outside %s..%s", what, field, t.UTC().Format(time.RFC3339), clickhouse.MinTime.Format(time.RFC3339), clickhouse.MaxTime.Format(time.RFC3339))
	}
	return ""
}
