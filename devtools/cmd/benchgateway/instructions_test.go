package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestDumpTotalFindsItsDump writes callgrind files as a run leaves them, a dump per trigger, a
// program's last dump and one a killed process left unfinished, and reads each trigger's
// total back.
func TestDumpTotalFindsItsDump(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	files := map[string]string{
		"callgrind.gateway.1": "# callgrind format\nversion: 1\ndesc: Trigger: dump gateway-1\n\npositions: line\nevents: Ir\nsummary: 4000\n\n\ntotals: 4000\n",
		"callgrind.gateway":   "# callgrind format\ndesc: Trigger: Program termination\nsummary: 99\n",
		"callgrind.service.1": "# callgrind format\ndesc: Trigger: dump service behind nginx-3\nevents: Ir\nsummary: 1234567\n",
		"callgrind.service":   "# callgrind format\nversion: 1\n",
		"callgrind.nginx.1":   "# callgrind format\ndesc: Trigger: dump nginx-2\nevents: Ir\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		trigger string
		want    int64
		wantErr bool
	}{
		{"gateway-1", 4000, false},
		{"service behind nginx-3", 1234567, false},
		{"nginx-2", 0, true},
		{"gateway-2", 0, true},
		{"gateway", 0, true},
	} {
		got, err := dumpTotal(dir, tt.trigger)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("dumpTotal(%q) = %d, %v; want %d, error %t", tt.trigger, got, err, tt.want, tt.wantErr)
		}
	}
}
