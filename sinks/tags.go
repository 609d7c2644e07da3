package sinks

import (
	"context"

	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/sinks/clickhouse"
)

// RowWriter stores decoded tag records (clickhouse.Writer, HTTPWriter).
type RowWriter = clickhouse.RowWriter

// TagWriter decodes tag records and writes them. A record that does not
// decode is dead; so is a record that the store refuses for what it is
// (found by halving a refused batch until the bad records are alone).
type TagWriter struct {
	Rows RowWriter
	// Permanent tells a refusal of the data from an unavailable store
	// (clickhouse.IsPermanent).
	Permanent func(error) bool
}

// Write implements Writer.
func (w TagWriter) Write(ctx context.Context, msgs []bus.Message) ([]Dead, error) {
	rows := make([]clickhouse.Row, 0, len(msgs))
	var dead []Dead
	kept := make([]bus.Message, 0, len(msgs))
	// The rows live only as long as this call, and msgs longer: decode
	// sharing the messages' bytes, and every record's extras from one arena.
	arena := make([]tag.Extra, 0, 4*len(msgs))
	for _, m := range msgs {
		var r tag.Record
		if err := r.UnmarshalBinaryShared(m.Value, &arena); err != nil {
			dead = append(dead, Dead{Msg: m, Reason: err.Error()})
			continue
		}
		if err := r.Validate(); err != nil {
			dead = append(dead, Dead{Msg: m, Reason: "invalid record: " + err.Error()})
			continue
		}
		rows = append(rows, clickhouse.Row{Rec: r, Partition: int32(m.Partition), Offset: m.Offset})
		kept = append(kept, m)
	}
	refused, err := w.write(ctx, rows, kept)
	return append(dead, refused...), err
}

// write writes rows; if the store refuses them as data, it halves the batch
// to find the refused rows and writes the others.
func (w TagWriter) write(ctx context.Context, rows []clickhouse.Row, msgs []bus.Message) ([]Dead, error) {
	err := w.Rows.Write(ctx, rows)
	if err == nil || w.Permanent == nil || !w.Permanent(err) {
		return nil, err
	}
	if len(rows) == 1 {
		return []Dead{{Msg: msgs[0], Reason: "refused by the store: " + err.Error()}}, nil
	}
	half := len(rows) / 2
	d1, err := w.write(ctx, rows[:half], msgs[:half])
	if err != nil {
		return nil, err
	}
	d2, err := w.write(ctx, rows[half:], msgs[half:])
	if err != nil {
		return nil, err
	}
	return append(d1, d2...), nil
}
