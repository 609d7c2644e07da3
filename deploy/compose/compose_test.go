package compose_test

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"
)

// The engage verbs by what they are in a deployment. Every verb that
// `engage -h` lists must be in one of these, so that a new one is either
// added to docker-compose.yml or said here to be a tool.
var (
	longRunning = []string{"collect", "sink", "process", "schedule", "deliver", "api"}
	oneShot     = []string{"topics", "migrate"}
	tools       = []string{"segments", "campaigns", "demo", "tagplan", "probe"}
)

// engageDockerfile is the Dockerfile of the engage image; a service built
// from it, or using the image of one that is, runs engage.
const engageDockerfile = "deploy/Dockerfile"

func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// readCompose reads docker-compose.yml as Compose reads it: YAML (anchors,
// aliases and merge keys resolved) into plain values.
func readCompose(t testing.TB) map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return doc
}

// interpolate substitutes the variables of s as Compose does: $$ is a
// dollar; $NAME and ${NAME}; ${NAME:-default} and ${NAME-default} (unset
// or empty, unset); ${NAME:?error} and ${NAME?error}; ${NAME:+other} and
// ${NAME+other}. Only vars are read, never the process's environment.
func interpolate(s string, vars map[string]string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); {
		if s[i] != '$' {
			b.WriteByte(s[i])
			i++
			continue
		}
		switch {
		case i+1 < len(s) && s[i+1] == '$':
			b.WriteByte('$')
			i += 2
		case i+1 < len(s) && s[i+1] == '{':
			depth, j := 0, i+1
			for ; j < len(s); j++ {
				if s[j] == '{' {
					depth++
				} else if s[j] == '}' {
					if depth--; depth == 0 {
						break
					}
				}
			}
			if j == len(s) {
				return "", fmt.Errorf("%q: unclosed ${", s)
			}
			v, err := expand(s[i+2:j], vars)
			if err != nil {
				return "", fmt.Errorf("%q: %w", s, err)
			}
			b.WriteString(v)
			i = j + 1
		default:
			j := i + 1
			for j < len(s) && (s[j] == '_' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= 'a' && s[j] <= 'z' || j > i+1 && s[j] >= '0' && s[j] <= '9') {
				j++
			}
			if j == i+1 {
				return "", fmt.Errorf("%q: a lone $ (write $$ for a dollar)", s)
			}
			b.WriteString(vars[s[i+1:j]])
			i = j
		}
	}
	return b.String(), nil
}

var varExpr = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?$`)

func expand(expr string, vars map[string]string) (string, error) {
	m := varExpr.FindStringSubmatch(expr)
	if m == nil {
		return "", fmt.Errorf("invalid interpolation ${%s}", expr)
	}
	v, set := vars[m[1]]
	full := set && v != "" // the : forms treat empty as unset
	if !strings.HasPrefix(m[2], ":") {
		full = set
	}
	switch strings.TrimPrefix(m[2], ":") {
	case "":
		return v, nil
	case "-":
		if full {
			return v, nil
		}
		return interpolate(m[3], vars)
	case "?":
		if full {
			return v, nil
		}
		return "", fmt.Errorf("required variable %s is missing: %s", m[1], m[3])
	default: // "+"
		if full {
			return interpolate(m[3], vars)
		}
		return "", nil
	}
}

// interpolateTree interpolates every string value of a decoded document
// (keys are left as they are, as Compose does).
func interpolateTree(v any, vars map[string]string) (any, error) {
	switch v := v.(type) {
	case string:
		return interpolate(v, vars)
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			y, err := interpolateTree(x, vars)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			out[k] = y
		}
		return out, nil
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			y, err := interpolateTree(x, vars)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			out[i] = y
		}
		return out, nil
	}
	return v, nil
}

func TestInterpolate(t *testing.T) {
	vars := map[string]string{"A": "a", "E": ""}
	for in, want := range map[string]string{
		"x$$y": "x$y", "$A/${A}": "a/a", "${B:-d}": "d", "${E:-d}": "d", "${E-d}": "", "${B-d}": "d",
		"${A:-d}": "a", "${A:+p}": "p", "${E:+p}": "", "${E+p}": "p", "${B:-${A}x}": "ax", "${A:?no}": "a",
		"tok:*": "tok:*", "${B:-tok:*}": "tok:*",
	} {
		if got, err := interpolate(in, vars); err != nil || got != want {
			t.Errorf("interpolate(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"${B:?set B}", "${E:?set E}", "${B?set B}", "a $ b", "${A"} {
		if got, err := interpolate(in, vars); err == nil {
			t.Errorf("interpolate(%q) = %q, want an error", in, got)
		}
	}
}

// validate validates a Compose document against the Compose
// specification's JSON schema (compose-spec.json beside this file).
func validate(t testing.TB, doc any) error {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot(t), "deploy", "compose", "compose-spec.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	schemaDoc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatalf("compose-spec.json: %v", err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("compose-spec.json", schemaDoc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("compose-spec.json")
	if err != nil {
		t.Fatalf("compile compose-spec.json: %v", err)
	}
	// YAML's values become JSON's, as `docker compose` sees them.
	data, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return sch.Validate(inst)
}

// TestComposeSchema validates docker-compose.yml against the Compose
// specification's schema, as written and with its variables substituted
// by their defaults (what `docker compose config` checks), and makes sure
// the schema does refuse a broken file.
func TestComposeSchema(t *testing.T) {
	doc := readCompose(t)
	if err := validate(t, doc); err != nil {
		t.Errorf("docker-compose.yml as written:\n%v", err)
	}
	sub, err := interpolateTree(doc, nil)
	if err != nil {
		t.Fatalf("docker-compose.yml with every variable unset: %v", err)
	}
	if err := validate(t, sub); err != nil {
		t.Errorf("docker-compose.yml with its defaults:\n%v", err)
	}
	for name, breakIt := range map[string]func(svc map[string]any){
		"misspelt key":       func(svc map[string]any) { svc["healthchek"] = svc["healthcheck"] },
		"restart not string": func(svc map[string]any) { svc["restart"] = 3 },
		"bad condition": func(svc map[string]any) {
			svc["depends_on"] = map[string]any{"kafka": map[string]any{"condition": "service_ready"}}
		},
	} {
		broken, _ := interpolateTree(doc, nil) // a deep copy
		for _, svc := range broken.(map[string]any)["services"].(map[string]any) {
			breakIt(svc.(map[string]any))
		}
		if err := validate(t, broken); err == nil {
			t.Errorf("the schema accepts docker-compose.yml with a %s", name)
		}
	}
}

// service is a service of docker-compose.yml, its variables substituted.
type service struct {
	Name        string
	Image       string
	Dockerfile  string // of its build, if it has one
	Command     []string
	Env         map[string]string
	Volumes     []volume
	DependsOn   map[string]string // service → condition
	Healthcheck []string          // its test
	Restart     string
}

type volume struct {
	Source, Target string
	ReadOnly       bool
}

// Verb is the engage command the service runs.
func (s *service) Verb() string {
	if len(s.Command) == 0 {
		return ""
	}
	return s.Command[0]
}

// composeServices reads the services of docker-compose.yml with the
// variables vars (the others unset), and the document itself.
func composeServices(t testing.TB, vars map[string]string) (map[string]*service, map[string]any) {
	t.Helper()
	raw, err := interpolateTree(readCompose(t), vars)
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	doc := raw.(map[string]any)
	svcs, _ := doc["services"].(map[string]any)
	if len(svcs) == 0 {
		t.Fatal("docker-compose.yml has no services")
	}
	out := map[string]*service{}
	for name, v := range svcs {
		m, _ := v.(map[string]any)
		s := &service{Name: name, Env: map[string]string{}, DependsOn: map[string]string{}}
		s.Image, _ = m["image"].(string)
		s.Restart, _ = m["restart"].(string)
		if b, ok := m["build"].(map[string]any); ok {
			s.Dockerfile, _ = b["dockerfile"].(string)
		}
		switch c := m["command"].(type) {
		case nil:
		case []any:
			for _, a := range c {
				s.Command = append(s.Command, fmt.Sprint(a))
			}
		default:
			t.Fatalf("service %s: write its command as a list ([verb, ...]), not %T", name, c)
		}
		switch e := m["environment"].(type) {
		case map[string]any:
			for k, x := range e {
				if x != nil {
					s.Env[k] = fmt.Sprint(x)
				}
			}
		case []any:
			for _, kv := range e {
				k, x, _ := strings.Cut(fmt.Sprint(kv), "=")
				s.Env[k] = x
			}
		}
		if vols, ok := m["volumes"].([]any); ok {
			for _, x := range vols {
				str, ok := x.(string)
				if !ok {
					t.Fatalf("service %s: write volumes short (SOURCE:TARGET[:ro]), not %v", name, x)
				}
				parts := strings.Split(str, ":")
				if len(parts) < 2 {
					t.Fatalf("service %s: volume %q has no target", name, str)
				}
				s.Volumes = append(s.Volumes, volume{parts[0], parts[1], len(parts) > 2 && parts[2] == "ro"})
			}
		}
		switch d := m["depends_on"].(type) {
		case map[string]any:
			for dep, x := range d {
				cond, _ := x.(map[string]any)["condition"].(string)
				s.DependsOn[dep] = cond
			}
		case []any:
			for _, dep := range d {
				s.DependsOn[fmt.Sprint(dep)] = "service_started"
			}
		}
		if h, ok := m["healthcheck"].(map[string]any); ok {
			if test, ok := h["test"].([]any); ok {
				for _, a := range test {
					s.Healthcheck = append(s.Healthcheck, fmt.Sprint(a))
				}
			}
		}
		out[name] = s
	}
	return out, doc
}

// engageServices returns the services that run the engage image, by name.
func engageServices(t testing.TB, svcs map[string]*service) map[string]*service {
	t.Helper()
	images := map[string]bool{}
	for _, s := range svcs {
		if s.Dockerfile == engageDockerfile {
			images[s.Image] = true
		}
	}
	if len(images) != 1 {
		t.Fatalf("docker-compose.yml: want one image built from %s, have %v", engageDockerfile, images)
	}
	out := map[string]*service{}
	for name, s := range svcs {
		if s.Dockerfile == engageDockerfile || images[s.Image] {
			out[name] = s
		}
	}
	return out
}

// startOrder returns the names of svcs in an order that starts every
// service after those it depends on.
func startOrder(t testing.TB, svcs map[string]*service) []string {
	t.Helper()
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(string, []string)
	visit = func(n string, path []string) {
		switch state[n] {
		case 1:
			t.Fatalf("docker-compose.yml: depends_on cycle %v", append(path, n))
		case 2:
			return
		}
		state[n] = 1
		deps := make([]string, 0, len(svcs[n].DependsOn))
		for d := range svcs[n].DependsOn {
			if svcs[d] == nil {
				t.Fatalf("docker-compose.yml: %s depends on %s, which is not a service", n, d)
			}
			deps = append(deps, d)
		}
		sort.Strings(deps)
		for _, d := range deps {
			visit(d, append(path, n))
		}
		state[n] = 2
		order = append(order, n)
	}
	names := make([]string, 0, len(svcs))
	for n := range svcs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		visit(n, nil)
	}
	return order
}

// TestComposeShape checks what docker-compose.yml promises without
// running it: every long-running engage verb is a service with a health
// check through engage probe, a restart policy and its dependencies'
// conditions; the one-shot jobs run before those that need them; the
// mounted files exist; the analytics API reads ClickHouse as a read-only
// user that the mounted users file defines, and only it.
func TestComposeShape(t *testing.T) {
	svcs, _ := composeServices(t, nil)
	eng := engageServices(t, svcs)
	byVerb := map[string][]string{}
	for name, s := range eng {
		byVerb[s.Verb()] = append(byVerb[s.Verb()], name)
	}
	for _, v := range slices.Concat(longRunning, oneShot) {
		if len(byVerb[v]) != 1 {
			t.Errorf("docker-compose.yml: want one service running engage %s, have %v", v, byVerb[v])
		}
	}
	for v, names := range byVerb {
		if !slices.Contains(longRunning, v) && !slices.Contains(oneShot, v) {
			t.Errorf("docker-compose.yml: services %v run engage %q, which is no service", names, v)
		}
	}
	root := repoRoot(t)
	for name, s := range eng {
		long := slices.Contains(longRunning, s.Verb())
		if long {
			if s.Restart != "unless-stopped" && s.Restart != "always" {
				t.Errorf("%s: restart %q, want unless-stopped", name, s.Restart)
			}
			h := s.Healthcheck
			if len(h) != 4 || h[0] != "CMD" || h[1] != "/usr/local/bin/engage" || h[2] != "probe" || !regexp.MustCompile(`^http://127\.0\.0\.1:\d+/(healthz|readyz)$`).MatchString(h[3]) {
				t.Errorf("%s: healthcheck %q, want [CMD, /usr/local/bin/engage, probe, http://127.0.0.1:PORT/healthz] "+
					"(127.0.0.1: the services listen on IPv4, and localhost may be ::1)", name, h)
			}
		} else if s.Restart != "on-failure" && s.Restart != "no" {
			t.Errorf("%s (one-shot): restart %q, want on-failure", name, s.Restart)
		}
		for dep, cond := range s.DependsOn {
			want := "service_healthy"
			if d := svcs[dep]; d != nil && eng[dep] != nil && slices.Contains(oneShot, d.Verb()) {
				want = "service_completed_successfully"
			}
			if cond != want {
				t.Errorf("%s: depends on %s with condition %q, want %s", name, dep, cond, want)
			}
		}
		for _, v := range s.Volumes {
			if !strings.ContainsAny(v.Source, "./") {
				t.Errorf("%s: volume %s:%s: an engage service mounts files of the operator's, not a named volume", name, v.Source, v.Target)
				continue
			}
			if !v.ReadOnly {
				t.Errorf("%s: volume %s:%s: mount it read-only (:ro)", name, v.Source, v.Target)
			}
			if _, err := os.Stat(filepath.Join(root, v.Source)); err != nil {
				t.Errorf("%s: volume %s: %v", name, v.Source, err)
			}
		}
	}
	// Kafka and ClickHouse keep their data in named volumes.
	for _, inf := range []struct{ image, target string }{{"apache/kafka", "/var/lib/kafka/data"}, {"clickhouse/clickhouse-server", "/var/lib/clickhouse"}} {
		n := 0
		for _, s := range svcs {
			if strings.HasPrefix(s.Image, inf.image+":") {
				n++
				if volumeName(s, inf.target) == "" {
					t.Errorf("%s: no named volume at %s", s.Name, inf.target)
				}
			}
		}
		if n != 1 {
			t.Errorf("docker-compose.yml: want one %s service, have %d", inf.image, n)
		}
	}
	if len(byVerb["api"]) == 0 {
		return
	}
	users := clickhouseUsers(t, svcs)
	api := eng[byVerb["api"][0]]
	apiUser := api.Env["ENGAGE_CLICKHOUSE_USER"]
	if apiUser == "" || apiUser == "default" {
		t.Fatalf("api: ENGAGE_CLICKHOUSE_USER %q: want the read-only user of the users file", apiUser)
	}
	// readonly 1 or 2 refuses every write; 2, because engage api sends
	// settings with its queries (readonly=2, max_execution_time), which a
	// user at 1 may not.
	if level := users.readonly(apiUser); level != 2 {
		t.Errorf("api: ClickHouse user %q has readonly %d in %s, want 2 (0: it may write; 1: engage api's queries are refused)", apiUser, level, users.file)
	}
	for name, s := range eng {
		if u, ok := s.Env["ENGAGE_CLICKHOUSE_USER"]; ok && s.Verb() != "api" && u == apiUser {
			t.Errorf("%s: writes ClickHouse as the read-only user %q", name, u)
		}
	}
}

// volumeName is the named volume that s mounts at target.
func volumeName(s *service, target string) string {
	for _, v := range s.Volumes {
		if v.Target == target && !strings.ContainsAny(v.Source, "./") {
			return v.Source
		}
	}
	return ""
}

// usersConfig is the ClickHouse users file that docker-compose.yml mounts
// into the server's users.d.
type usersConfig struct {
	file     string // its path in the repository
	text     string
	profiles map[string]int    // profile → readonly
	users    map[string]string // user → profile
}

// readonly is the readonly level of a user's profile (0: may write).
func (u *usersConfig) readonly(user string) int {
	p, ok := u.users[user]
	if !ok {
		return 0
	}
	return u.profiles[p]
}

func clickhouseUsers(t testing.TB, svcs map[string]*service) *usersConfig {
	t.Helper()
	for _, s := range svcs {
		if !strings.HasPrefix(s.Image, "clickhouse/clickhouse-server:") {
			continue
		}
		for _, v := range s.Volumes {
			if !strings.HasPrefix(v.Target, "/etc/clickhouse-server/users.d/") {
				continue
			}
			data, err := os.ReadFile(filepath.Join(repoRoot(t), v.Source))
			if err != nil {
				t.Fatal(err)
			}
			u := &usersConfig{file: v.Source, text: string(data), profiles: map[string]int{}, users: map[string]string{}}
			if err := u.parse(); err != nil {
				t.Fatalf("%s: %v", v.Source, err)
			}
			return u
		}
	}
	t.Fatal("docker-compose.yml: the ClickHouse service mounts no users file into /etc/clickhouse-server/users.d/")
	return nil
}

// parse reads the profiles' readonly levels and the users' profiles.
func (u *usersConfig) parse() error {
	var x struct {
		Profiles struct {
			Any []struct {
				XMLName  xml.Name
				Readonly string `xml:"readonly"`
			} `xml:",any"`
		} `xml:"profiles"`
		Users struct {
			Any []struct {
				XMLName xml.Name
				Profile string `xml:"profile"`
			} `xml:",any"`
		} `xml:"users"`
	}
	if err := xml.Unmarshal([]byte(u.text), &x); err != nil {
		return err
	}
	for _, p := range x.Profiles.Any {
		n, _ := strconv.Atoi(strings.TrimSpace(p.Readonly))
		u.profiles[p.XMLName.Local] = n
	}
	for _, us := range x.Users.Any {
		u.users[us.XMLName.Local] = strings.TrimSpace(us.Profile)
	}
	if len(u.users) == 0 {
		return errors.New("defines no user")
	}
	return nil
}

// TestEngageVerbsClassified makes sure every verb the binary has is either
// in docker-compose.yml (a service or a one-shot job) or said to be a tool.
func TestEngageVerbsClassified(t *testing.T) {
	for _, v := range engageVerbs(t, buildEngage(t)) {
		if !slices.Contains(longRunning, v) && !slices.Contains(oneShot, v) && !slices.Contains(tools, v) {
			t.Errorf("engage %s is new: run it as a service in docker-compose.yml (and add it to longRunning or oneShot here), or add it to tools", v)
		}
	}
}
