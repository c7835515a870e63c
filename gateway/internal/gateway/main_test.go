package gateway

import (
	"io"
	"log/slog"
	"testing"

	"github.com/basaltplatform/basalt/kernel/testkit"
)

func TestMain(m *testing.M) {
	testkit.Main(m, testkit.CheckLeaks())
}

// newTeeLogger logs to the test and, as JSON, to w, so a test can read the access log.
func newTeeLogger(test *slog.Logger, w io.Writer) *slog.Logger {
	return slog.New(slog.NewMultiHandler(test.Handler(), slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})))
}
