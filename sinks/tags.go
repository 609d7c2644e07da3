package sinks

import (
	"context"
	"slices"
	"sync"

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
	// The rows live only as long as this call, and msgs longer: decode
	// sharing the messages' bytes, and every record's extras from one arena;
	// rows and arena are reused by later batches.
	sc, _ := decodePool.Get().(*decodeScratch)
	if sc == nil {
		sc = &decodeScratch{}
	}
	defer func() {
		clear(sc.rows) // drop the references into this batch's messages
		clear(sc.arena)
		sc.rows, sc.arena = sc.rows[:0], sc.arena[:0]
		decodePool.Put(sc)
	}()
	rows := slices.Grow(sc.rows, len(msgs))
	var dead []Dead
	kept := make([]bus.Message, 0, len(msgs))
	for _, m := range msgs {
		rows = append(rows, clickhouse.Row{Partition: int32(m.Partition), Offset: m.Offset})
		r := &rows[len(rows)-1].Rec
		if err := r.UnmarshalBinaryShared(m.Value, &sc.arena); err != nil {
			rows = rows[:len(rows)-1]
			dead = append(dead, Dead{Msg: m, Reason: err.Error()})
			continue
		}
		if err := r.ValidateStored(); err != nil {
			rows = rows[:len(rows)-1]
			dead = append(dead, Dead{Msg: m, Reason: "invalid record: " + err.Error()})
			continue
		}
		kept = append(kept, m)
	}
	sc.rows = rows
	refused, err := isolate(ctx, rows, kept, w.Rows.Write, w.Permanent)
	return append(dead, refused...), err
}

// decodeScratch is the memory one batch decodes into.
type decodeScratch struct {
	rows  []clickhouse.Row
	arena []tag.Extra
}

var decodePool sync.Pool // *decodeScratch

// isolate writes rows (rows[i] decoded from msgs[i]) with write; if the
// store refuses them as data (permanent), it halves the batch until the
// refused rows are alone, writes the others, and returns the refused ones
// as dead. Any other error is returned for the sink to retry the batch.
func isolate[R any](ctx context.Context, rows []R, msgs []bus.Message, write func(context.Context, []R) error, permanent func(error) bool) ([]Dead, error) {
	if len(rows) == 0 {
		return nil, nil
	}
	err := write(ctx, rows)
	if err == nil || permanent == nil || !permanent(err) {
		return nil, err
	}
	if len(rows) == 1 {
		return []Dead{{Msg: msgs[0], Reason: "refused by the store: " + err.Error()}}, nil
	}
	half := len(rows) / 2
	d1, err := isolate(ctx, rows[:half], msgs[:half], write, permanent)
	if err != nil {
		return nil, err
	}
	d2, err := isolate(ctx, rows[half:], msgs[half:], write, permanent)
	if err != nil {
		return nil, err
	}
	return append(d1, d2...), nil
}
