package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	t.Parallel()
	// The test renders a copy of deploy/k8s without prod's secrets.env, which a developer may
	// have written in the checkout and which CI never has.
	k8s := t.TempDir()
	if err := os.CopyFS(k8s, os.DirFS(filepath.Join("..", "..", "..", "k8s"))); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(k8s, "overlays", "prod", "secrets.env")); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		args       []string
		want       int
		wantStdout []string
		wantStderr string
	}{
		{name: "dev", args: []string{filepath.Join(k8s, "overlays", "dev")}, want: 0,
			wantStdout: []string{"kind: Deployment", "name: gateway", "image: basalt/gateway:dev", "kind: StatefulSet"}},
		{name: "base", args: []string{filepath.Join(k8s, "base")}, want: 0,
			wantStdout: []string{"kind: HorizontalPodAutoscaler", "namespace: basalt"}},
		// prod's secrets.env is never committed, so prod renders only once it is written.
		{name: "prod without its secrets", args: []string{filepath.Join(k8s, "overlays", "prod")}, want: 1, wantStderr: "secrets.env"},
		{name: "not a kustomization", args: []string{t.TempDir()}, want: 1, wantStderr: "kustomization"},
		{name: "no folder", want: 2, wantStderr: "usage"},
		{name: "two folders", args: []string{k8s, k8s}, want: 2, wantStderr: "usage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			if got := run(tt.args, &stdout, &stderr); got != tt.want {
				t.Fatalf("run(%q) = %d, want %d; stderr: %s", tt.args, got, tt.want, stderr.String())
			}
			for _, w := range tt.wantStdout {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("output lacks %q", w)
				}
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr = %q, want it to contain %q", stderr.String(), tt.wantStderr)
			}
		})
	}
}
