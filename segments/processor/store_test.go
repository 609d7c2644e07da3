package processor_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/segments/processor"
)

// Which instance answers for a partition: the newest announcement of the
// group wins; a stopped instance's record is gone; another group's
// instances do not count; a bad record is an error that names it.
func TestStoreOwners(t *testing.T) {
	s := processor.NewStore()
	off := int64(0)
	announce := func(in processor.Instance) error {
		off++
		var v []byte
		if in.Addr != "" {
			v, _ = json.Marshal(in)
		}
		_, err := s.Apply(bus.Message{Key: []byte(processor.InstanceKeyPrefix + in.ID), Value: v, Offset: off})
		return err
	}
	owners := func() map[int]string {
		out := map[int]string{}
		for p, in := range s.Owners("g") {
			out[p] = in.ID
		}
		return out
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, changed := s.Current()
	must(announce(processor.Instance{ID: "a", Group: "g", Addr: "http://a:8082", Partitions: []int{0, 1, 2, 3}}))
	must(announce(processor.Instance{ID: "x", Group: "replay", Addr: "http://x:8082", Partitions: []int{0, 1, 2, 3}}))
	// b is killed after taking 2 and 3; a, which lost them, has not said so.
	must(announce(processor.Instance{ID: "b", Group: "g", Addr: "http://b:8082", Partitions: []int{2, 3}}))
	if got, want := owners(), map[int]string{0: "a", 1: "a", 2: "b", 3: "b"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("owners %v, want %v", got, want)
	}
	// a takes them back: its newer record wins over b's stale one.
	must(announce(processor.Instance{ID: "a", Group: "g", Addr: "http://a:8082", Partitions: []int{0, 1, 2, 3}}))
	if got, want := owners(), map[int]string{0: "a", 1: "a", 2: "a", 3: "a"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("owners %v, want %v", got, want)
	}
	must(announce(processor.Instance{ID: "a"})) // stopped: tombstone
	if got, want := owners(), map[int]string{2: "b", 3: "b"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("owners %v, want %v", got, want)
	}
	select {
	case <-changed:
		t.Fatal("instance records changed the segment set")
	default:
	}
	_, err := s.Apply(bus.Message{Key: []byte(processor.InstanceKeyPrefix + "c"), Value: []byte(`{"id":"d"}`), Offset: 99})
	if err == nil || !strings.Contains(err.Error(), `announces instance "d"`) {
		t.Fatalf("mismatched record: %v", err)
	}
	_, err = s.Apply(bus.Message{Key: []byte(processor.InstanceKeyPrefix + "c"), Value: []byte(`{`), Offset: 100})
	if err == nil || !strings.Contains(err.Error(), `"instance/c" at offset 100`) {
		t.Fatalf("bad record: %v", err)
	}
}
