package database_test

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/basaltplatform/basalt/kernel/database"
	"github.com/basaltplatform/basalt/kernel/errs"
	"github.com/basaltplatform/basalt/kernel/testkit"
)

func TestListenHearsCommittedNotificationsAndReconnects(t *testing.T) {
	t.Parallel()
	db := open(t, testkit.Database(t, "listen"), database.WithApplicationName("basalt-listen-test"))
	ctx, cancel := context.WithCancel(context.Background())
	var (
		mu       sync.Mutex
		payloads []string
		connects atomic.Int64
	)
	done := make(chan error, 1)
	go func() {
		done <- db.Listen(ctx, "basalt_test", func() { connects.Add(1) }, func(p string) {
			mu.Lock()
			payloads = append(payloads, p)
			mu.Unlock()
		})
	}()
	got := func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), payloads...) }
	testkit.Eventually(t, 10*time.Second, "the listener connects", func() bool { return connects.Load() == 1 })

	notify := func(payload string, commit bool) {
		err := database.WithTx(context.Background(), beginSQL(db), func(tx *sql.Tx) error {
			if err := db.Notify(context.Background(), tx, "basalt_test", payload); err != nil {
				return err
			}
			if !commit {
				return errs.FailedPrecondition("rolled back")
			}
			return nil
		})
		if commit && err != nil {
			t.Fatal(err)
		}
	}
	notify("rolled-back", false)
	notify("1", true)
	testkit.Eventually(t, 10*time.Second, "the committed notification arrives", func() bool { return len(got()) == 1 })
	if p := got(); p[0] != "1" {
		t.Fatalf("payloads %v; a rolled-back notification must never arrive", p)
	}

	// Killing the listening session makes it reconnect and say so.
	testkit.Exec(t, `SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE application_name = 'basalt-listen-test' AND query LIKE 'LISTEN%'`)
	testkit.Eventually(t, 10*time.Second, "the listener reconnects", func() bool { return connects.Load() == 2 })
	notify("2", true)
	testkit.Eventually(t, 10*time.Second, "notifications flow again", func() bool { return len(got()) == 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
