package sinks

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/sinks/clickhouse"
	"github.com/openengage/engage/triggers"
	"github.com/openengage/engage/triggers/scheduler"
)

// The sink decodes engage.decisions with a struct of its own: it must have
// exactly scheduler.DecisionMessage's fields, JSON names and kinds, so that
// a field the scheduler adds fails here rather than vanishing in the sink.
func TestDecisionJSONIsDecisionMessage(t *testing.T) {
	fields := func(v any) map[string]string {
		out := map[string]string{}
		ty := reflect.TypeOf(v)
		for i := range ty.NumField() {
			f := ty.Field(i)
			out[f.Name] = f.Tag.Get("json") + " " + f.Type.Kind().String()
			if f.Type.Kind() == reflect.Pointer {
				out[f.Name] += " " + f.Type.Elem().String()
			}
		}
		return out
	}
	got, want := fields(decisionJSON{}), fields(scheduler.DecisionMessage{})
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("the sink's decision form differs from scheduler.DecisionMessage:\n sink: %v\n want: %v", got, want)
	}
}

// Random decisions encoded by the scheduler's type decode to rows with the
// same values.
func TestDecodeDecisionRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	outcomes := []triggers.Outcome{triggers.OutcomeSent, triggers.OutcomeDeferred, triggers.OutcomeControl, triggers.OutcomeCapped, triggers.OutcomeOutranked,
		triggers.OutcomeRepeat, triggers.OutcomeQuiet, triggers.OutcomeExpired, triggers.OutcomeEnded, triggers.OutcomeLeft, triggers.OutcomeNoSample, triggers.OutcomeSkipped}
	for i := range 500 {
		d := triggers.Decision{ID: fmt.Sprintf("%032x", rng.Uint64()), App: "app-" + fmt.Sprint(rng.IntN(3)), Campaign: "c" + fmt.Sprint(rng.IntN(5)),
			Version: rng.Int64N(1 << 40), DeviceID: fmt.Sprintf("d\"é\\%d", rng.IntN(100)), Occurrence: fmt.Sprintf("entry:%x", rng.Uint32()),
			Outcome: outcomes[rng.IntN(len(outcomes))], Reason: fmt.Sprintf("why %d\n", i), Time: time.Unix(1.7e9+rng.Int64N(1e8), 0)}
		if rng.IntN(2) == 0 {
			d.SendAt = d.Time.Add(time.Duration(rng.IntN(86400)) * time.Second)
		}
		if rng.IntN(2) == 0 {
			d.Variant = "v" + fmt.Sprint(rng.IntN(3))
		}
		v, err := json.Marshal(scheduler.FromDecision(&d))
		if err != nil {
			t.Fatal(err)
		}
		row, reason := decodeDecision(bus.Message{Value: v, Partition: i % 4, Offset: int64(i)})
		want := clickhouse.DecisionRow{ID: d.ID, App: d.App, Campaign: d.Campaign, Version: d.Version, DeviceID: d.DeviceID, Occurrence: d.Occurrence,
			Outcome: string(d.Outcome), Reason: d.Reason, Time: d.Time.UTC(), SendAt: d.SendAt.UTC(), Variant: d.Variant, Partition: int32(i % 4), Offset: int64(i)}
		if d.SendAt.IsZero() {
			want.SendAt = time.Time{}
		}
		if reason != "" || !reflect.DeepEqual(row, want) {
			t.Fatalf("%s:\n got %+v (%s)\nwant %+v", v, row, reason, want)
		}
	}
}
