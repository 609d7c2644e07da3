package tag

import (
	"encoding/json"
	"testing"
)

// The encoding for Kafka was chosen by these: compare ns/op and bytes/record.
func BenchmarkEncodeBinary(b *testing.B) {
	r := sampleRecords()[1]
	b.ReportAllocs()
	var buf []byte
	for b.Loop() {
		buf = r.AppendBinary(buf[:0])
	}
	b.ReportMetric(float64(len(buf)), "bytes/record")
}

func BenchmarkDecodeBinary(b *testing.B) {
	data := sampleRecords()[1].AppendBinary(nil)
	b.ReportAllocs()
	var r Record
	for b.Loop() {
		if err := r.UnmarshalBinary(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeBinaryShared(b *testing.B) {
	data := sampleRecords()[1].AppendBinary(nil)
	b.ReportAllocs()
	var r Record
	var arena []Extra
	for b.Loop() {
		if len(arena) > 4096 {
			arena = arena[:0]
		}
		if err := r.UnmarshalBinaryShared(data, &arena); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeJSON(b *testing.B) {
	r := sampleRecords()[1]
	b.ReportAllocs()
	var n int
	for b.Loop() {
		buf, err := json.Marshal(r)
		if err != nil {
			b.Fatal(err)
		}
		n = len(buf)
	}
	b.ReportMetric(float64(n), "bytes/record")
}

func BenchmarkDecodeJSON(b *testing.B) {
	data, _ := json.Marshal(sampleRecords()[1])
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeJSON(data, Envelope{AppID: "a"}); err != nil {
			b.Fatal(err)
		}
	}
}
