package engine_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The engine is pure core: it imports the standard library, the tag model,
// the segment syntax tree and murmur3, and nothing that reaches an adapter.
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{join .Imports "\n"}}`, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	allowed := []string{"github.com/openengage/engage/pipeline/tag", "github.com/openengage/engage/segments", "github.com/twmb/murmur3"}
	for _, imp := range strings.Fields(string(out)) {
		std := !strings.Contains(strings.Split(imp, "/")[0], ".")
		ok := std
		for _, a := range allowed {
			ok = ok || imp == a
		}
		if !ok {
			t.Errorf("the engine imports %s", imp)
		}
	}
	deps, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, deps)
	}
	for _, dep := range strings.Fields(string(deps)) {
		for _, f := range []string{"net/http", "github.com/segmentio/kafka-go", "github.com/twmb/franz-go", "github.com/ClickHouse",
			"github.com/prometheus", "github.com/sideshow/apns2", "firebase.google.com"} {
			if strings.HasPrefix(dep, f) {
				t.Errorf("the engine depends on %s", dep)
			}
		}
	}
}
