package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// clearAPIEnv keeps the environment's ENGAGE_API_* out of a test's flags.
func clearAPIEnv(t *testing.T) {
	for _, v := range []string{"ENGAGE_API_TOKENS", "ENGAGE_API_CLUSTER_SECRET", "ENGAGE_API_PEER_ALLOW", "ENGAGE_API_ADVERTISE", "ENGAGE_KAFKA_BROKERS"} {
		t.Setenv(v, "")
	}
}

// A token shorter than 16 bytes stops `engage process`, `engage
// schedule` and `engage api` at start, with an error that names which token (masked, not
// in full) and what to do.
func TestShortTokenRefusedAtStart(t *testing.T) {
	clearAPIEnv(t)
	const secret = "cluster-secret-0123456789abcdef-0123456789"
	for _, c := range []struct {
		name string
		run  func(ctx context.Context, args []string) error
		args []string
	}{
		{"process", func(ctx context.Context, args []string) error { return runProcess(ctx, args, nil) },
			[]string{"-kafka.brokers", "127.0.0.1:1", "-addr", "127.0.0.1:0", "-api.cluster-secret", secret}},
		{"schedule", func(ctx context.Context, args []string) error { return runSchedule(ctx, args, nil) },
			[]string{"-kafka.brokers", "127.0.0.1:1", "-addr", "127.0.0.1:0"}},
		{"api", func(ctx context.Context, args []string) error { return runAPI(ctx, args, nil) },
			[]string{"-addr", "127.0.0.1:0"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := c.run(ctx, append(c.args, "-api.tokens", "good-token-0123456789:* tiny-secret:game"))
			if err == nil || !strings.Contains(err.Error(), "-api.tokens") || !strings.Contains(err.Error(), "token 2") ||
				!strings.Contains(err.Error(), "at least 16") || strings.Contains(err.Error(), "tiny-secret") {
				t.Fatalf("a token of 11 bytes: %v", err)
			}
		})
	}
}

// `engage process` with tokens needs a cluster secret of 32 bytes or more.
func TestClusterSecretRequired(t *testing.T) {
	clearAPIEnv(t)
	for _, c := range []struct {
		secret, want string
	}{
		{"", "-api.cluster-secret"},
		{"short-secret", "at least 32"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := runProcess(ctx, []string{"-kafka.brokers", "127.0.0.1:1", "-addr", "127.0.0.1:0", "-api.tokens", "good-token-0123456789:*", "-api.cluster-secret", c.secret}, nil)
		cancel()
		if err == nil || !strings.Contains(err.Error(), c.want) || (c.secret != "" && strings.Contains(err.Error(), c.secret)) {
			t.Errorf("cluster secret %q: %v", c.secret, err)
		}
	}
}
