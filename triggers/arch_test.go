package triggers_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The campaign core (and the dry run, built on it) depends on no adapter (Kafka, ClickHouse, HTTP,
// Prometheus, push), directly or through another package.
func TestImportsNoAdapters(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".", "./dryrun").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := []string{"net/http", "github.com/segmentio/kafka-go", "github.com/twmb/franz-go", "github.com/ClickHouse",
		"github.com/prometheus", "github.com/sideshow/apns2", "firebase.google.com",
		"github.com/openengage/engage/pipeline/kafkabus", "github.com/openengage/engage/pipeline/collector",
		"github.com/openengage/engage/segments/processor", "github.com/openengage/engage/sinks"}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if strings.HasPrefix(dep, f) {
				t.Errorf("triggers depends on %s", dep)
			}
		}
	}
}
