package analytics_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// engageBuild is the engage binary that the package's tests through Kafka
// run, built once for all of them.
var engageBuild struct {
	once     sync.Once
	dir, bin string
	out      []byte
	err      error
}

// engageBin builds cmd/engage (once) and returns its path.
func engageBin(t *testing.T) string {
	t.Helper()
	b := &engageBuild
	b.once.Do(func() {
		if b.dir, b.err = os.MkdirTemp("", "engage-analytics-test-"); b.err != nil {
			return
		}
		b.bin = filepath.Join(b.dir, "engage")
		b.out, b.err = exec.Command("go", "build", "-o", b.bin, "../../cmd/engage").CombinedOutput()
	})
	if b.err != nil {
		t.Fatalf("build: %v\n%s", b.err, b.out)
	}
	return b.bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if engageBuild.dir != "" {
		_ = os.RemoveAll(engageBuild.dir)
	}
	os.Exit(code)
}
