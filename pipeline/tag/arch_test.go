package tag_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The pure core imports no adapter: no Kafka, ClickHouse, HTTP, Prometheus
// or push library, directly or through another package.
func TestCoreImportsNoAdapters(t *testing.T) {
	core := []string{"./", "../tagplan", "../segmentapi", "../bus", "../../segments", "../../segments/engine"}
	forbidden := []string{"net/http", "github.com/segmentio/kafka-go", "github.com/twmb/franz-go", "github.com/ClickHouse",
		"github.com/prometheus", "github.com/sideshow/apns2", "firebase.google.com",
		"github.com/openengage/engage/pipeline/kafkabus", "github.com/openengage/engage/pipeline/collector"}
	for _, pkg := range core {
		out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, f := range forbidden {
				if strings.HasPrefix(dep, f) {
					t.Errorf("core package %s depends on %s", pkg, dep)
				}
			}
		}
	}
}
