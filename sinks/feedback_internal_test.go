package sinks

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/openengage/engage/delivery/dispatcher"
	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/sinks/clickhouse"
	"github.com/openengage/engage/triggers"
)

// jsonFields maps each field of a struct to its JSON tag and kind (and the
// element type of a pointer).
func jsonFields(v any) map[string]string {
	out := map[string]string{}
	ty := reflect.TypeOf(v)
	for i := range ty.NumField() {
		f := ty.Field(i)
		out[f.Name] = f.Tag.Get("json") + " " + f.Type.Kind().String()
		if f.Type.Kind() == reflect.Pointer || f.Type.Kind() == reflect.Struct {
			out[f.Name] += " " + f.Type.String()
		}
	}
	return out
}

// The sink decodes engage.feedback with a struct of its own: it must have
// exactly dispatcher.Feedback's fields, JSON names and kinds, so that a
// field the dispatcher adds fails here rather than vanishing in the sink.
func TestFeedbackJSONIsDispatcherFeedback(t *testing.T) {
	got, want := jsonFields(feedbackJSON{}), jsonFields(dispatcher.Feedback{})
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("the sink's feedback form differs from dispatcher.Feedback:\n sink: %v\n want: %v", got, want)
	}
}

// Random results encoded by the dispatcher's type decode to rows with the
// same values.
func TestDecodeFeedbackRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	outcomes := []triggers.Outcome{dispatcher.OutcomeAccepted, dispatcher.OutcomeFailed, dispatcher.OutcomeUnreachable, dispatcher.OutcomeUnknown, triggers.OutcomeExpired}
	channels := []triggers.Channel{triggers.ChannelPush, triggers.ChannelData, triggers.ChannelInApp}
	for i := range 500 {
		f := dispatcher.Feedback{ID: fmt.Sprintf("%032x", rng.Uint64()), DeliveryID: fmt.Sprintf("%032x", rng.Uint64()), App: "app-" + fmt.Sprint(rng.IntN(3)),
			Campaign: "c" + fmt.Sprint(rng.IntN(5)), Version: rng.Int64N(1 << 40), DeviceID: fmt.Sprintf("d\"é\\%d", rng.IntN(100)),
			Channel: channels[rng.IntN(len(channels))], Outcome: outcomes[rng.IntN(len(outcomes))], Attempts: rng.IntN(9),
			Time: time.Unix(1.7e9+rng.Int64N(1e8), rng.Int64N(1e9))}
		if rng.IntN(2) == 0 {
			f.Variant = "v" + fmt.Sprint(rng.IntN(3))
		}
		if rng.IntN(2) == 0 {
			f.Provider, f.ProviderID = "apns", fmt.Sprintf("%x", rng.Uint64())
		}
		if f.Outcome != dispatcher.OutcomeAccepted {
			f.Reason = fmt.Sprintf("why %d\n", i)
		}
		v, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		row, reason := decodeFeedback(bus.Message{Value: v, Partition: i % 4, Offset: int64(i)})
		want := clickhouse.ResultRow{ID: f.ID, DeliveryID: f.DeliveryID, App: f.App, Campaign: f.Campaign, Version: f.Version, Variant: f.Variant,
			DeviceID: f.DeviceID, Channel: string(f.Channel), Provider: f.Provider, Outcome: string(f.Outcome), Reason: f.Reason, ProviderID: f.ProviderID,
			Attempts: uint32(f.Attempts), Time: f.Time.UTC(), Partition: int32(i % 4), Offset: int64(i)}
		if reason != "" || !reflect.DeepEqual(row, want) {
			t.Fatalf("%s:\n got %+v (%s)\nwant %+v", v, row, reason, want)
		}
	}
}
