package processor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/openengage/engage/pipeline/apierror"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/tag"
)

// How the instances of one deployment call each other: an instance asks
// another only for the apps the caller's token may read (it checked the
// token itself), with the cluster credential (apiauth.Cluster), never the
// caller's token; it reads at most PeerMaxBytes of an answer, waits at
// most PeerTimeout, and takes an answer only if it has exactly the
// expected shape and covers only what was asked (partitions, apps, and
// members that are on the partitions claimed). An answer that fails any
// of this leaves the peer's partitions missing, with an error naming the
// peer and the partitions.

const (
	// DefaultPeerTimeout bounds one request to another instance.
	DefaultPeerTimeout = 10 * time.Second
	// DefaultPeerMaxBytes bounds one answer of another instance (a
	// segment's members on its partitions, one device id a line).
	DefaultPeerMaxBytes = 256 << 20
	// maxExplainBytes bounds an explanation from another instance.
	maxExplainBytes = 4 << 20
	// maxPeerText bounds a text field of a peer's answer.
	maxPeerText = 64 << 10
)

// DefaultPeerAllow is where other instances may be, unless
// -api.peer-allow says otherwise: loopback and the private ranges.
var DefaultPeerAllow = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("172.16.0.0/12"), netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("fc00::/7"),
}

// ParsePeerAllow reads a comma-separated list of CIDR prefixes (a bare
// address is a prefix of one address).
func ParsePeerAllow(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil {
				return nil, fmt.Errorf("-api.peer-allow: %q is not a CIDR prefix (e.g. 10.0.0.0/8) or an address", f)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	if len(out) == 0 {
		return nil, errors.New("-api.peer-allow: no prefix: give CIDR prefixes (0.0.0.0/0,::/0 allows any address)")
	}
	return out, nil
}

func allowed(allow []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// NewPeerClient returns the client that calls other instances: it
// connects only to addresses within allow (checked on the address dialled,
// after name resolution), uses no proxy and follows no redirect.
func NewPeerClient(allow []netip.Prefix) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second,
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("peer address %s: %w", address, err)
			}
			if !allowed(allow, ap.Addr()) {
				return fmt.Errorf("peer address %s is outside -api.peer-allow", ap.Addr())
			}
			return nil
		}}
	tr := &http.Transport{
		Proxy: nil, DialContext: d.DialContext, ForceAttemptHTTP2: true,
		MaxIdleConns: 32, MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second,
		TLSHandshakeTimeout: 5 * time.Second, MaxResponseHeaderBytes: 64 << 10,
	}
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

var defaultPeerClient = NewPeerClient(DefaultPeerAllow)

// CheckAddr checks an instance's API address: an http or https URL with a
// host and a port, and nothing else (no user, path, query or fragment).
func CheckAddr(addr string) error {
	u, err := url.Parse(addr)
	if err != nil {
		return fmt.Errorf("address %q: %v", addr, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("address %q is not an http(s) URL", addr)
	}
	if u.User != nil || u.Opaque != "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return fmt.Errorf("address %q: give scheme://host:port and nothing else", addr)
	}
	if u.Hostname() == "" || u.Port() == "" {
		return fmt.Errorf("address %q: give a host and a port (scheme://host:port)", addr)
	}
	if p, err := strconv.Atoi(u.Port()); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("address %q: port %q out of 1..65535", addr, u.Port())
	}
	return nil
}

// peerRequest asks another instance: GET path?q with the cluster
// credential, bounded in time and size. It returns the body of a 200
// answer, or the status and error message of another.
func (a *API) peerRequest(ctx context.Context, in Instance, path string, q url.Values, limit int64) (int, []byte, http.Header, error) {
	ctx, cancel := context.WithTimeout(ctx, a.peerTimeout())
	defer cancel()
	u := strings.TrimRight(in.Addr, "/") + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	a.Cluster.Sign(req)
	c := a.Client
	if c == nil {
		c = defaultPeerClient
	}
	resp, err := c.Do(req)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
			return 0, nil, nil, fmt.Errorf("no answer within %s (-api.peer-timeout)", a.peerTimeout())
		}
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		if ctx.Err() != nil {
			return 0, nil, nil, fmt.Errorf("answer not read within %s (-api.peer-timeout)", a.peerTimeout())
		}
		return 0, nil, nil, fmt.Errorf("read the answer: %w", err)
	}
	if int64(len(body)) > limit {
		return 0, nil, nil, fmt.Errorf("answer over %d bytes (-api.peer-max-bytes): refused", limit)
	}
	// Only an answer signed with the cluster secret, for this request, is
	// taken: an address announced by someone without the secret is not
	// an instance.
	if err := a.Cluster.VerifyResponse(req, resp.StatusCode, resp.Header, body); err != nil {
		if resp.StatusCode != http.StatusOK {
			return 0, nil, nil, fmt.Errorf("%w (%v)", peerStatusError(resp.StatusCode, body), err)
		}
		return 0, nil, nil, err
	}
	return resp.StatusCode, body, resp.Header, nil
}

func (a *API) peerTimeout() time.Duration {
	if a.PeerTimeout > 0 {
		return a.PeerTimeout
	}
	return DefaultPeerTimeout
}

func (a *API) peerMaxBytes() int64 {
	if a.PeerMaxBytes > 0 {
		return a.PeerMaxBytes
	}
	return DefaultPeerMaxBytes
}

// peerStatusError describes an answer other than 200.
func peerStatusError(status int, body []byte) error {
	msg := string(body)
	if e, err := apierror.DecodeBytes(body); err == nil {
		msg = e.Code + ": " + e.Message
	}
	return fmt.Errorf("%d %s: %s", status, http.StatusText(status), clean(msg, 300))
}

// clean makes a peer's text safe to show: valid UTF-8 without control
// characters, at most n bytes.
func clean(s string, n int) string {
	s = strings.ToValidUTF8(s, "?")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > n {
		cut := n
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// decodeStrict decodes exactly one JSON value of v's shape: unknown
// fields and trailing data are errors.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("not the expected JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("not the expected JSON: data after the value")
	}
	return nil
}

// statusesAnswer is /v1/local/statuses's answer.
type statusesAnswer struct {
	Instance   string                    `json:"instance"`
	Partitions map[int][]PartitionStatus `json:"partitions"`
}

// checkStatuses validates a peer's statuses: from the instance asked, for
// the partitions asked (and not answered already) and the apps asked.
func checkStatuses(got *statusesAnswer, in Instance, asked map[int]bool, apps map[string]bool) error {
	if got.Instance != in.ID {
		return fmt.Errorf("answered as instance %q", clean(got.Instance, 100))
	}
	for p, sts := range got.Partitions {
		if !asked[p] {
			return fmt.Errorf("answered for partition %d, which it was not asked for", p)
		}
		for _, st := range sts {
			switch {
			case !apps[st.App]:
				return fmt.Errorf("partition %d: a status of app %q, which it was not asked for", p, clean(st.App, 100))
			case !nameRE.MatchString(st.Segment):
				return fmt.Errorf("partition %d: segment name %q", p, clean(st.Segment, 100))
			case st.Size < 0:
				return fmt.Errorf("partition %d: segment %q: size %d", p, st.Segment, st.Size)
			case len(st.Why) > maxPeerText || len(st.Error) > maxPeerText:
				return fmt.Errorf("partition %d: segment %q: a text over %d bytes", p, st.Segment, maxPeerText)
			case st.Fill != nil && (st.Fill.Devices < 0 || st.Fill.Records < 0 || st.Fill.TotalRecords < 0):
				return fmt.Errorf("partition %d: segment %q: negative fill progress", p, st.Segment)
			}
		}
	}
	return nil
}

// checkMembers validates a peer's members: the partitions it claims (the
// Engage-Partitions header) are among those asked, and every device id is
// a valid id on one of them. It returns the partitions and the ids.
func checkMembers(header http.Header, body []byte, app string, n int, asked map[int]bool) ([]int, []string, error) {
	got, err := parseInts(header.Get("Engage-Partitions"))
	if err != nil {
		return nil, nil, fmt.Errorf("Engage-Partitions: %v", err)
	}
	claimed := map[int]bool{}
	for _, p := range got {
		if !asked[p] || claimed[p] {
			return nil, nil, fmt.Errorf("answered for partition %d, which it was not asked for (or twice)", p)
		}
		claimed[p] = true
	}
	if len(body) == 0 {
		return got, nil, nil
	}
	if body[len(body)-1] != '\n' {
		return nil, nil, errors.New("the last device id has no end of line (a cut answer?)")
	}
	lines := strings.Split(string(body[:len(body)-1]), "\n")
	for i, id := range lines {
		if err := checkDeviceID(id); err != nil {
			return nil, nil, fmt.Errorf("device id %d: %v", i+1, err)
		}
		if p := kafkabus.KeyPartition([]byte(app+"/"+id), n); !claimed[p] {
			return nil, nil, fmt.Errorf("device %q is on partition %d, not on partitions %s it answered for", clean(id, 100), p, joinInts(got))
		}
	}
	return got, lines, nil
}

// checkDeviceID applies the tag model's rules to a device id.
func checkDeviceID(id string) error {
	switch {
	case id == "":
		return errors.New("empty")
	case len(id) > tag.MaxIDLen:
		return fmt.Errorf("%d bytes, more than the limit of %d", len(id), tag.MaxIDLen)
	case !utf8.ValidString(id):
		return errors.New("not valid UTF-8")
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x20 || id[i] == 0x7f {
			return fmt.Errorf("contains control character 0x%02x", id[i])
		}
	}
	return nil
}

// ExplainAnswer is an explanation as the API gives it (fields in
// alphabetical order, as they always were).
type ExplainAnswer struct {
	App        string      `json:"app"`
	Clauses    *ClauseJSON `json:"clauses"`
	DeviceID   string      `json:"device_id"`
	History    string      `json:"history"`
	Member     bool        `json:"member"`
	Partitions []int       `json:"partitions"`
	Segment    string      `json:"segment"`
	Text       string      `json:"text"`
	Time       time.Time   `json:"time"`
	Value      bool        `json:"value"`
}

// ClauseJSON is one clause of an explanation.
type ClauseJSON struct {
	Args       []*ClauseJSON `json:"args,omitempty"`
	Clause     string        `json:"clause"`
	Detail     string        `json:"detail,omitempty"`
	NextChange *time.Time    `json:"next_change,omitempty"`
	Value      bool          `json:"value"`
}

// checkExplain validates a peer's explanation of device on partition p.
func checkExplain(x *ExplainAnswer, app, segment, device string, n int) error {
	switch {
	case x.App != app || x.Segment != segment || x.DeviceID != device:
		return fmt.Errorf("explained device %q of segment %q of app %q, not the one asked", clean(x.DeviceID, 100), clean(x.Segment, 100), clean(x.App, 100))
	case x.Clauses == nil:
		return errors.New("an explanation without clauses")
	}
	for _, p := range x.Partitions {
		if p < 0 || p >= n {
			return fmt.Errorf("partition %d out of 0..%d", p, n-1)
		}
	}
	return nil
}
