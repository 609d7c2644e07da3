package compose_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/openengage/engage/delivery"
	"github.com/openengage/engage/delivery/mock"
	"github.com/openengage/engage/deploy/servicetest"
	"github.com/openengage/engage/sinks/clickhouse"
)

func buildEngage(t testing.TB) *servicetest.Engage { return servicetest.BuildEngage(t) }

// engageVerbs are the commands `engage -h` lists.
func engageVerbs(t testing.TB, e *servicetest.Engage) []string {
	t.Helper()
	cmd := exec.Command(e.Bin, "-h")
	cmd.Env = e.Env
	out, _ := cmd.CombinedOutput() // -h may exit 2
	var verbs []string
	in := false
	for _, line := range strings.Split(string(out), "\n") {
		switch {
		case strings.TrimSpace(line) == "commands:":
			in = true
		case in && strings.TrimSpace(line) == "":
			in = len(verbs) == 0
		case in && strings.HasPrefix(line, "  "):
			if f := strings.Fields(line); len(f) > 0 && !slices.Contains(verbs, f[0]) {
				verbs = append(verbs, f[0])
			}
		}
	}
	if len(verbs) == 0 {
		t.Fatalf("engage -h lists no commands:\n%s", out)
	}
	return verbs
}

// TestComposeStack reads docker-compose.yml and runs every engage service
// it names as Compose would run it, on this machine: its command and
// environment, Compose's variables substituted, the other services' host
// names mapped to loopback (kafka and clickhouse to a broker and a
// ClickHouse server of the test's own, started by services.sh, so that
// the services' default topics, groups and database collide with no
// other test), the mounted folders to the repository's files. The one-shot
// jobs must end with success before the services that depend on them, and
// each service must pass its own health check within a minute. ClickHouse
// gets the users that the compose file gives the image: the writer from
// CLICKHOUSE_USER and CLICKHOUSE_PASSWORD (as the image's entrypoint makes
// it) and the mounted users file with its from_env passwords. Then a
// record sent to the collector must come out of the analytics API (the
// sink writing as the writer, the API reading as the read-only user), and
// the read-only user must be refused an INSERT and a CREATE.
func TestComposeStack(t *testing.T) {
	script := servicetest.Script(t)
	kafka := servicetest.Start(t, "kafka")
	ch := startClickHouse(t, script)
	e := buildEngage(t)

	apns, err := mock.StartAPNs(mock.APNsConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(apns.Close)
	fcm, err := mock.StartFCM(mock.FCMConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fcm.Close)
	// The operator's folder of credentials (ENGAGE_DELIVERY_DIR): the
	// providers' mocks for the news app.
	deliveryDir := t.TempDir()
	writeCredentials(t, deliveryDir, apns, fcm)

	vars := map[string]string{"ENGAGE_DELIVERY_DIR": deliveryDir}
	svcs, _ := composeServices(t, vars)
	eng := engageServices(t, svcs)

	// The infrastructure's host names and ports, mapped to the test's.
	infra := map[string]string{}
	var chSvc *service
	for name, s := range svcs {
		switch {
		case strings.HasPrefix(s.Image, "apache/kafka:"):
			infra[name+":9092"] = kafka.Addr()
		case strings.HasPrefix(s.Image, "clickhouse/clickhouse-server:"):
			infra[name+":9000"], infra[name+":8123"] = ch.native, ch.http
			chSvc = s
		}
	}
	if chSvc == nil || len(infra) != 3 {
		t.Fatalf("docker-compose.yml: want a kafka and a clickhouse service, have %v", infra)
	}
	users := clickhouseUsers(t, svcs)
	ch.configure(t, chSvc, users)

	root := repoRoot(t)
	ports := map[string]string{} // service:port → 127.0.0.1:free
	hostPort := regexp.MustCompile(`([A-Za-z0-9][A-Za-z0-9._-]*):(\d{2,5})\b`)
	rewrite := func(svc, v string) string {
		v = hostPort.ReplaceAllStringFunc(v, func(hp string) string {
			m := hostPort.FindStringSubmatch(hp)
			host, port := m[1], m[2]
			switch {
			case host == "0.0.0.0" || host == "127.0.0.1" || host == "localhost":
				host = svc // its own port
			case infra[hp] != "":
				return infra[hp]
			case svcs[host] != nil && eng[host] == nil:
				t.Fatalf("%s: %s: no mapping of %s to this machine", svc, v, hp)
			case eng[host] == nil:
				return hp
			}
			key := host + ":" + port
			if ports[key] == "" {
				ports[key] = fmt.Sprintf("127.0.0.1:%d", servicetest.FreePort(t))
			}
			return ports[key]
		})
		for _, vol := range eng[svc].Volumes {
			if v == vol.Target || strings.HasPrefix(v, vol.Target+"/") {
				src := vol.Source
				if !filepath.IsAbs(src) {
					src = filepath.Join(root, src)
				}
				return src + strings.TrimPrefix(v, vol.Target)
			}
		}
		return v
	}

	healthy, completed := map[string]bool{}, map[string]bool{}
	envs := map[string]map[string]string{} // each engage service's environment, mapped
	for _, name := range startOrder(t, svcs) {
		s := eng[name]
		if s == nil {
			continue // Kafka and ClickHouse: up and healthy
		}
		for dep, cond := range s.DependsOn {
			if eng[dep] == nil {
				continue
			}
			if cond == "service_healthy" && !healthy[dep] || cond == "service_completed_successfully" && !completed[dep] {
				t.Fatalf("%s: depends on %s (%s), which is not", name, dep, cond)
			}
		}
		args := make([]string, len(s.Command))
		for i, a := range s.Command {
			args[i] = rewrite(name, a)
		}
		env := slices.Clone(e.Env)
		envs[name] = map[string]string{}
		for k, v := range s.Env {
			envs[name][k] = rewrite(name, v)
			env = append(env, k+"="+envs[name][k])
		}
		if slices.Contains(oneShot, s.Verb()) {
			runOnce(t, e.Bin, name, args, env)
			completed[name] = true
			continue
		}
		if len(s.Healthcheck) < 3 || s.Healthcheck[0] != "CMD" {
			t.Fatalf("%s: health check %q: want [CMD, /usr/local/bin/engage, probe, URL]", name, s.Healthcheck)
		}
		p := startService(t, e.Bin, name, args, env)
		probe := make([]string, len(s.Healthcheck)-1)
		for i, a := range s.Healthcheck[1:] {
			probe[i] = rewrite(name, a)
		}
		if probe[0] != "/usr/local/bin/engage" {
			t.Fatalf("%s: health check %q does not run engage", name, s.Healthcheck)
		}
		probe[0] = e.Bin
		start := time.Now()
		p.waitHealthy(t, probe, time.Minute)
		t.Logf("%s (engage %s): healthy after %v", name, s.Verb(), time.Since(start).Round(100*time.Millisecond))
		healthy[name] = true
	}
	for _, v := range longRunning {
		found := false
		for name, s := range eng {
			found = found || s.Verb() == v && healthy[name]
		}
		if !found {
			t.Errorf("no healthy service ran engage %s", v)
		}
	}
	if t.Failed() {
		return
	}

	// One record through the collector, the sink and the analytics API.
	serviceOf := func(verb string) string {
		for name, s := range eng {
			if s.Verb() == verb {
				return name
			}
		}
		t.Fatalf("no service runs engage %s", verb)
		return ""
	}
	collector, api := serviceOf("collect"), serviceOf("api")
	today := time.Now().UTC().Format("2006-01-02")
	// A broker that has just created its topics may not have their leaders
	// yet: the collector then answers 503 and the client retries, as SDKs do.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Second) {
		req, _ := http.NewRequest(http.MethodPost, "http://"+envs[collector]["ENGAGE_ADDR"]+"/v1/tags",
			strings.NewReader(`[{"type":"event","deviceId":"compose-device-1","messageId":"compose-1","name":"article_read","extras":{"category":"sport"}}]`))
		req.SetBasicAuth("news-write-key-prod", "")
		req.Header.Set("Content-Type", "application/json")
		body, status := do(t, req)
		if status/100 == 2 {
			break
		}
		if status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("collector: %d %s", status, body)
		}
	}
	token, _, _ := strings.Cut(strings.Fields(envs[api]["ENGAGE_API_TOKENS"])[0], ":")
	deadline := time.Now().Add(time.Minute)
	for {
		req, _ := http.NewRequest(http.MethodGet, "http://"+envs[api]["ENGAGE_ADDR"]+"/v1/apps/news/top?kind=event&from="+today+"&to="+today, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		body, status := do(t, req)
		if status != http.StatusOK {
			t.Fatalf("analytics API as ClickHouse user %q: %d %s", envs[api]["ENGAGE_CLICKHOUSE_USER"], status, body)
		}
		var top struct {
			Names []struct {
				Name    string `json:"name"`
				Records uint64 `json:"records"`
			} `json:"names"`
		}
		if err := json.Unmarshal([]byte(body), &top); err != nil {
			t.Fatalf("analytics API: %v: %s", err, body)
		}
		if len(top.Names) == 1 && top.Names[0].Name == "article_read" && top.Names[0].Records == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the record sent to the collector is not in the analytics API's answer after a minute: %s", body)
		}
		time.Sleep(500 * time.Millisecond)
	}

	// The API's user reads and may not write.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	apiEnv := envs[api]
	db := apiEnv["ENGAGE_CLICKHOUSE_DATABASE"]
	reader := ch.connect(t, apiEnv["ENGAGE_CLICKHOUSE_USER"], apiEnv["ENGAGE_CLICKHOUSE_PASSWORD"])
	writer := ch.connect(t, chSvc.Env["CLICKHOUSE_USER"], chSvc.Env["CLICKHOUSE_PASSWORD"])
	if err := writer.Exec(ctx, "CREATE TABLE "+db+".compose_probe (n UInt8) ENGINE = Memory"); err != nil {
		t.Fatalf("the writer cannot create a table: %v", err)
	}
	if err := writer.Exec(ctx, "INSERT INTO "+db+".compose_probe SELECT 1"); err != nil {
		t.Fatalf("the writer cannot insert: %v", err)
	}
	var n uint64
	if err := reader.QueryRow(ctx, "SELECT count() FROM "+db+".compose_probe").Scan(&n); err != nil || n != 1 {
		t.Errorf("the API's user reads %d rows, %v; want 1", n, err)
	}
	for _, sql := range []string{
		"INSERT INTO " + db + ".compose_probe SELECT 2",
		"CREATE TABLE " + db + ".compose_probe2 (n UInt8) ENGINE = Memory",
		"DROP TABLE " + db + ".compose_probe",
	} {
		err := reader.Exec(ctx, sql)
		if err == nil || !strings.Contains(strings.ToLower(err.Error()), "readonly") {
			t.Errorf("as the API's user %q, %s: %v; want a readonly refusal", apiEnv["ENGAGE_CLICKHOUSE_USER"], sql, err)
		}
	}
	if err := writer.QueryRow(ctx, "SELECT count() FROM "+db+".compose_probe").Scan(&n); err != nil || n != 1 {
		t.Errorf("after the API user's refused writes: %d rows, %v; want 1", n, err)
	}
}

// TestDevelopmentCredentials loads the credentials that docker-compose.yml
// gives engage deliver by default.
func TestDevelopmentCredentials(t *testing.T) {
	svcs, _ := composeServices(t, nil)
	for name, s := range engageServices(t, svcs) {
		if s.Verb() != "deliver" {
			continue
		}
		for _, v := range s.Volumes {
			if strings.HasPrefix(s.Env["ENGAGE_CREDENTIALS"], v.Target+"/") {
				file := filepath.Join(repoRoot(t), v.Source, strings.TrimPrefix(s.Env["ENGAGE_CREDENTIALS"], v.Target))
				p, err := delivery.LoadCredentials(context.Background(), file)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				p.Close()
				return
			}
		}
		t.Fatalf("%s: ENGAGE_CREDENTIALS %q is in no mounted folder", name, s.Env["ENGAGE_CREDENTIALS"])
	}
	t.Fatal("docker-compose.yml has no deliver service")
}

func writeCredentials(t testing.TB, dir string, apns *mock.APNs, fcm *mock.FCM) {
	t.Helper()
	p8, err := apns.NewKey("TEAM123456", "KEY1234567", "com.example.news")
	if err != nil {
		t.Fatal(err)
	}
	sa, err := fcm.NewServiceAccount("news-project")
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"key.p8": p8, "ca.pem": apns.CertificatePEM(), "sa.json": sa} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The paths are this machine's: the test runs the services here, not
	// in containers.
	creds := fmt.Sprintf(`apps:
  news:
    apns: {team_id: TEAM123456, key_id: KEY1234567, key_file: %s, topic: com.example.news, host: %s, ca_file: %s}
    fcm: {project_id: news-project, service_account_file: %s, endpoint: %s}
`, filepath.Join(dir, "key.p8"), apns.URL(), filepath.Join(dir, "ca.pem"), filepath.Join(dir, "sa.json"), fcm.Endpoint())
	if err := os.WriteFile(filepath.Join(dir, "credentials.yaml"), []byte(creds), 0o600); err != nil {
		t.Fatal(err)
	}
}

func do(t testing.TB, req *http.Request) (string, int) {
	t.Helper()
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body), resp.StatusCode
}

// runOnce runs a one-shot job to its end: it must succeed within two
// minutes.
func runOnce(t testing.TB, bin, name string, args, env []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s (engage %s): %v\n%s", name, strings.Join(args, " "), err, out)
	}
	t.Logf("%s (engage %s): done\n%s", name, strings.Join(args, " "), strings.TrimSpace(string(out)))
}

// proc is a running service.
type proc struct {
	name, log string
	cmd       *exec.Cmd
	exited    chan error
}

// startService starts a long-running service; it gets SIGTERM when the
// test ends (SIGKILL after 20 s), and its log's last lines are shown if
// the test failed.
func startService(t testing.TB, bin, name string, args, env []string) *proc {
	t.Helper()
	p := &proc{name: name, log: filepath.Join(t.TempDir(), name+".log"), exited: make(chan error, 1)}
	out, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env, p.cmd.Stdout, p.cmd.Stderr = env, out, out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(20 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		out.Close()
		if t.Failed() {
			data, _ := os.ReadFile(p.log)
			t.Logf("%s (engage %s) log, last lines:\n%s", name, strings.Join(args, " "), servicetest.LastLines(data, 30))
		}
	})
	return p
}

// waitHealthy runs the health check until it passes; the test fails if
// the service exits or the check has not passed within timeout.
func (p *proc) waitHealthy(t testing.TB, probe []string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		select {
		case err := <-p.exited:
			p.exited <- err
			data, _ := os.ReadFile(p.log)
			t.Fatalf("%s exited: %v\n%s", p.name, err, servicetest.LastLines(data, 30))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cmd := exec.CommandContext(ctx, probe[0], probe[1:]...)
		out, err := cmd.CombinedOutput()
		cancel()
		if err == nil {
			return
		}
		last = fmt.Sprintf("%v: %s", err, out)
		if time.Now().After(deadline) {
			t.Fatalf("%s: health check %q has not passed within %v: %s", p.name, probe, timeout, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// ownClickHouse is a ClickHouse server of the test's own (services.sh on
// free ports, in a folder of the test's), so that its users can be those
// of docker-compose.yml.
type ownClickHouse struct {
	dir, native, http string
}

func startClickHouse(t testing.TB, script string) *ownClickHouse {
	t.Helper()
	c := &ownClickHouse{dir: t.TempDir()}
	port, httpPort := servicetest.FreePort(t), servicetest.FreePort(t)
	c.native, c.http = fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("127.0.0.1:%d", httpPort)
	env := append(os.Environ(), "ENGAGE_SERVICES_DIR="+c.dir, fmt.Sprintf("ENGAGE_CLICKHOUSE_PORT=%d", port), fmt.Sprintf("ENGAGE_CLICKHOUSE_HTTP_PORT=%d", httpPort))
	run := func(args ...string) {
		cmd := exec.Command(script, args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("services %v: %v\n%s", args, err, out)
		}
	}
	run("up", "clickhouse")
	t.Cleanup(func() { run("reset", "clickhouse") })
	return c
}

var fromEnv = regexp.MustCompile(`<([A-Za-z_][A-Za-z0-9_]*)\s+from_env="([A-Za-z_][A-Za-z0-9_]*)"\s*/>`)

// configure gives the server the users that docker-compose.yml gives the
// ClickHouse image: the writer that the image's entrypoint makes from
// CLICKHOUSE_USER and CLICKHOUSE_PASSWORD, and the mounted users file,
// its from_env elements filled from the service's environment as
// ClickHouse 24 does (the test's server, Debian's 18.16, predates
// from_env). The server reads users.d again by itself; this waits until
// both users can log in. (The image's entrypoint also removes the
// password-less default user; here it stays, for services.sh.)
func (c *ownClickHouse) configure(t testing.TB, chSvc *service, users *usersConfig) {
	t.Helper()
	writer, writerPW := chSvc.Env["CLICKHOUSE_USER"], chSvc.Env["CLICKHOUSE_PASSWORD"]
	if writer == "" || writerPW == "" {
		t.Fatalf("%s: want CLICKHOUSE_USER and CLICKHOUSE_PASSWORD (the writer)", chSvc.Name)
	}
	var missing []string
	text := fromEnv.ReplaceAllStringFunc(users.text, func(el string) string {
		m := fromEnv.FindStringSubmatch(el)
		v, ok := chSvc.Env[m[2]]
		if !ok || v == "" {
			missing = append(missing, m[2])
		}
		return "<" + m[1] + ">" + xmlEscape(v) + "</" + m[1] + ">"
	})
	if len(missing) > 0 {
		t.Fatalf("%s names %v (from_env), which the %s service's environment does not set", users.file, missing, chSvc.Name)
	}
	entry := fmt.Sprintf(`<clickhouse><users><%s><password>%s</password><networks><ip>::/0</ip></networks><profile>default</profile><quota>default</quota></%s></users></clickhouse>`,
		writer, xmlEscape(writerPW), writer)
	dir := filepath.Join(c.dir, "clickhouse", "users.d")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"default-user.xml": entry, "engage-api.xml": text} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var last error
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		last = nil
		for user := range users.users {
			if last = c.ping(user, extractPassword(text, user)); last != nil {
				break
			}
		}
		if last == nil {
			if last = c.ping(writer, writerPW); last == nil {
				return
			}
		}
	}
	t.Fatalf("ClickHouse has not taken the compose file's users within a minute: %v", last)
}

func (c *ownClickHouse) ping(user, password string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := clickhouse.DefaultConfig(c.native)
	cfg.User, cfg.Password = user, password
	cfg.AllowPlaintextPassword = true // a loopback instance of the test's own, as the compose file allows it
	conn, _, err := clickhouse.Open(ctx, cfg)
	if err != nil {
		return fmt.Errorf("user %s: %w", user, err)
	}
	defer conn.Close()
	return conn.Exec(ctx, "SELECT 1")
}

func (c *ownClickHouse) connect(t testing.TB, user, password string) driver.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := clickhouse.DefaultConfig(c.native)
	cfg.User, cfg.Password = user, password
	cfg.AllowPlaintextPassword = true // a loopback instance of the test's own, as the compose file allows it
	conn, _, err := clickhouse.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("ClickHouse as %s: %v", user, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// extractPassword is a user's plain password in a rendered users file.
func extractPassword(text, user string) string {
	m := regexp.MustCompile(`(?s)<` + regexp.QuoteMeta(user) + `>.*?<password>([^<]*)</password>`).FindStringSubmatch(text)
	if m == nil {
		return ""
	}
	return xmlUnescape(m[1])
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}

func xmlUnescape(s string) string {
	return strings.NewReplacer("&amp;", "&", "&lt;", "<", "&gt;", ">", "&quot;", `"`).Replace(s)
}
