//go:build unix

package main

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// run runs the built up with args and returns its stdout, stderr and exit status.
func run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	bin, err := upBinary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

func TestHelpPrintsTheUsageAndExitsZero(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"-h", "-help", "--help"} {
		t.Run(arg, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := run(t, arg)
			if code != 0 || stderr != "" {
				t.Fatalf("up %s: exit status %d, stderr %q; want 0 and nothing", arg, code, stderr)
			}
			for _, want := range []string{"Usage: up [flags]", "up.json", "-ports", "auto", "(env BASALT_UP_PORTS)", `(default "fixed")`, "-data-dir"} {
				if !strings.Contains(stdout, want) {
					t.Errorf("up %s does not say %q:\n%s", arg, want, stdout)
				}
			}
		})
	}
}

func TestBadSettingsExitTwoNamingThem(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-nope"}, "-nope"},
		{[]string{"-ports", "sometimes"}, `BASALT_UP_PORTS: must be fixed or auto, not "sometimes"`},
	}
	for _, tt := range tests {
		stdout, stderr, code := run(t, tt.args...)
		if code != 2 || stdout != "" || !strings.Contains(stderr, tt.want) {
			t.Errorf("up %v: exit status %d, stdout %q, stderr %q; want 2 and an error naming %s", tt.args, code, stdout, stderr, tt.want)
		}
	}
}
