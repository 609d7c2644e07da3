package servicetest

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// services.sh status only reports: it exits 0 with services down (make
// services-status); services.sh ready is what scripts ask, and it exits 1
// then. Nothing is started: the state folder is empty and the ports free.
func TestServicesStatusReportsAndReadyTells(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	script, err := filepath.Abs("../services/services.sh")
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"ENGAGE_SERVICES_DIR=" + t.TempDir(), "HOME=" + t.TempDir(), "PATH=/usr/bin:/bin",
		fmt.Sprintf("ENGAGE_KAFKA_PORT=%d", FreePort(t)), fmt.Sprintf("ENGAGE_KAFKA_CONTROLLER_PORT=%d", FreePort(t)),
		fmt.Sprintf("ENGAGE_CLICKHOUSE_PORT=%d", FreePort(t)), fmt.Sprintf("ENGAGE_CLICKHOUSE_HTTP_PORT=%d", FreePort(t))}
	run := func(args ...string) (string, int) {
		cmd := exec.Command(script, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		switch {
		case errors.As(err, &exit):
			return string(out), exit.ExitCode()
		case err != nil:
			t.Fatalf("services.sh %v: %v\n%s", args, err, out)
		}
		return string(out), 0
	}
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"status"}, 0},
		{[]string{"status", "kafka"}, 0},
		{[]string{"ready"}, 1},
		{[]string{"ready", "clickhouse"}, 1},
	} {
		out, code := run(c.args...)
		if code != c.code || !strings.Contains(out, ": down") {
			t.Errorf("services.sh %v with the services down: exit %d (want %d)\n%s", c.args, code, c.code, out)
		}
	}
	if out, code := run("status", "nonsense"); code == 0 {
		t.Errorf("services.sh status nonsense: exit 0\n%s", out)
	}
}
