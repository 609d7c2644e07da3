package segmentapi

import (
	"bytes"
	"fmt"
	"os"
	"testing"

	"github.com/openengage/engage/pipeline/tag"
)

// benchBatch is a 100-message batch as a mobile SDK sends it: every message
// carries the full context, most are track calls.
func benchBatch(b *testing.B) []byte {
	sample, err := os.ReadFile("testdata/sample_batch.json")
	if err != nil {
		b.Fatal(err)
	}
	start := bytes.IndexByte(sample, '[') + 1
	end := bytes.LastIndexByte(sample, ']')
	lines := bytes.Split(bytes.TrimSpace(sample[start:end]), []byte(",\n"))
	var buf bytes.Buffer
	buf.WriteString(`{"batch":[`)
	for i := range 100 {
		if i > 0 {
			buf.WriteByte(',')
		}
		m := lines[1+i%(len(lines)-1)] // screen, track, page, track
		if i == 0 {
			m = lines[0] // identify
		}
		buf.Write(bytes.Replace(m, []byte(`"messageId":"node-next-`), fmt.Appendf(nil, `"messageId":"n%d-`, i), 1))
	}
	buf.WriteString(`],"writeKey":"wk","sentAt":"2026-11-28T11:35:15.505Z"}`)
	return buf.Bytes()
}

func BenchmarkDecodeBatch(b *testing.B) {
	body := benchBatch(b)
	results, err := DecodeBatch(body, env, plan{"article_read": tag.KindEvent})
	if err != nil || len(results) != 100 {
		b.Fatalf("%v, %d results", err, len(results))
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if _, err := DecodeBatch(body, env, plan{"article_read": tag.KindEvent}); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(100*n)/b.Elapsed().Seconds(), "messages/s")
}
