package main

// The services serve HTTPS with -tls.cert/-tls.key and take a renewed
// certificate without a restart; a broken one leaves the old one serving.

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openengage/engage/deploy/servicetest"
	"github.com/openengage/engage/pipeline/httpserve/tlstest"
	"github.com/openengage/engage/pipeline/kafkabus/kafkatest"
)

// startHTTPS starts service with TLS on a free loopback port and waits
// until /healthz answers 200 to client; it returns the https:// base URL
// and the log file. The service gets SIGTERM when the test ends.
func startHTTPS(t *testing.T, e *servicetest.Engage, client *http.Client, service, addrFlag string, args ...string) (string, string) {
	t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(servicetest.FreePort(t))
	logFile := filepath.Join(t.TempDir(), service+".log")
	out, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(e.Bin, append([]string{service, addrFlag, addr}, args...)...)
	cmd.Env, cmd.Stdout, cmd.Stderr = e.Env, out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		out.Close()
		if t.Failed() {
			data, _ := os.ReadFile(logFile)
			t.Logf("engage %s log (last lines):\n%s", service, servicetest.LastLines(data, 30))
		}
	})
	url := "https://" + addr
	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case err := <-exited:
			exited <- err
			data, _ := os.ReadFile(logFile)
			t.Fatalf("engage %s exited: %v\n%s", service, err, servicetest.LastLines(data, 30))
		default:
		}
		if resp, err := client.Get(url + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url, logFile
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("engage %s did not answer 200 on %s/healthz within 2 minutes", service, url)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestServicesServeHTTPSAndTakeRenewedCertificates(t *testing.T) {
	brokers := kafkatest.RealBrokers(t)
	b := strings.Join(brokers, ",")
	id := fmt.Sprintf("https%d", time.Now().UnixNano()%1e9)
	topic := healthTopics(t, brokers, id)
	e := servicetest.BuildEngage(t)
	ca := tlstest.NewCA(t)
	client := ca.Client()
	for _, c := range []struct {
		service string
		args    []string
	}{
		{"collect", []string{"-kafka.brokers", b, "-collector.topic", topic["tags"], "-collector.inbox=false"}},
		{"schedule", []string{"-kafka.brokers", b, "-schedule.group", id + "-schedule", "-schedule.topic", topic["changes"],
			"-schedule.changelog-topic", topic["sstate"], "-schedule.deliveries-topic", topic["deliveries"], "-schedule.decisions-topic", topic["decisions"],
			"-config.topic", topic["config"]}},
	} {
		t.Run(c.service, func(t *testing.T) {
			dir := t.TempDir()
			certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
			ca.WritePair(c.service+"-first", certFile, keyFile)
			url, logFile := startHTTPS(t, e, client, c.service, "-addr",
				append([]string{"-log.level", "info", "-tls.cert", certFile, "-tls.key", keyFile, "-tls.check-every", "200ms"}, c.args...)...)
			peer := func() string {
				resp, err := client.Get(url + "/healthz")
				if err != nil {
					t.Fatalf("HTTPS with the test CA: %v", err)
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("/healthz over HTTPS: %s", resp.Status)
				}
				return tlstest.PeerCN(resp)
			}
			if got := peer(); got != c.service+"-first" {
				t.Fatalf("certificate %q, want %s-first", got, c.service)
			}
			// Plain HTTP is not served on the TLS port.
			if resp, err := http.Get("http" + strings.TrimPrefix(url, "https") + "/healthz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					t.Fatal("plain HTTP answered 200 on the TLS port")
				}
			}

			// A renewed pair, written over the same files: new connections
			// see it.
			ca.WritePair(c.service+"-second", certFile, keyFile)
			deadline := time.Now().Add(30 * time.Second)
			for got := peer(); got != c.service+"-second"; got = peer() {
				if time.Now().After(deadline) {
					t.Fatalf("certificate %q still served 30 s after the renewed one was written", got)
				}
				time.Sleep(50 * time.Millisecond)
			}

			// Garbage written over the certificate: the renewed pair
			// keeps serving, over many more checks than -tls.check-every
			// allows, and the log says why.
			tlstest.WriteFile(t, certFile, []byte("garbage, not PEM\n"))
			for range 20 {
				if got := peer(); got != c.service+"-second" {
					t.Fatalf("certificate %q after garbage was written, want %s-second kept", got, c.service)
				}
				time.Sleep(100 * time.Millisecond)
			}
			data, _ := os.ReadFile(logFile)
			if !strings.Contains(string(data), "TLS certificate not reloaded") {
				t.Errorf("the broken certificate file is not logged:\n%s", servicetest.LastLines(data, 10))
			}
		})
	}
}
