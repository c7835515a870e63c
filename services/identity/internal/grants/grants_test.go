package grants_test

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	auditv1 "github.com/basaltplatform/basalt/gen/go/basalt/audit/v1"
	authzv1 "github.com/basaltplatform/basalt/gen/go/basalt/authz/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/authz/v1/authzv1connect"
	"github.com/basaltplatform/basalt/kernel/authn"
	"github.com/basaltplatform/basalt/kernel/database"
	"github.com/basaltplatform/basalt/kernel/errs"
	"github.com/basaltplatform/basalt/kernel/outbox"
	"github.com/basaltplatform/basalt/kernel/testkit"
	"github.com/basaltplatform/basalt/kernel/testkit/authority"
	"github.com/basaltplatform/basalt/services/identity/ent"
	"github.com/basaltplatform/basalt/services/identity/internal/grants"
	"github.com/basaltplatform/basalt/services/identity/internal/store"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// flaky fails its first calls, as an authz service that is still starting does.
type flaky struct {
	grants.Granter
	failures atomic.Int64
}

func (f *flaky) GrantRole(ctx context.Context, req *connect.Request[authzv1.GrantRoleRequest]) (*connect.Response[authzv1.GrantRoleResponse], error) {
	if f.failures.Add(-1) >= 0 {
		return nil, errs.Unavailable(nil, "not started")
	}
	return f.Granter.GrantRole(ctx, req)
}

func TestQueuedGrantsSurviveAnAuthzOutage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := database.Open(ctx, testkit.Database(t, "grants"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	ob := outbox.New(db, "identity")
	if err := ob.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	st := store.New(db, ob)
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	u, err := st.Create(ctx, store.NewUser{ID: "0193e6c4-7d43-7b5e-9f3a-3c1d2e4f5a6b", Email: "q@example.com", DisplayName: "Q", PasswordHash: "$argon2id$x"},
		store.Change{Roles: []string{"member"}, Events: func(*ent.User) []*auditv1.Event { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	a := authority.New(t)
	tokens, err := authn.NewServiceTokens("identity", []byte(authority.InternalSecret))
	if err != nil {
		t.Fatal(err)
	}
	f := &flaky{Granter: authzv1connect.NewAuthzServiceClient(testkit.H2CClient(t), a.URL, connect.WithInterceptors(authn.NewClientCredentials(tokens)))}
	f.failures.Store(1)
	if err := grants.DeliverDue(ctx, st, f, testkit.Logger(t)); err != nil {
		t.Fatal(err)
	}
	if n, _ := st.PendingGrants(ctx); n != 1 || len(a.Roles(u.ID)) != 0 {
		t.Fatalf("during the outage: %d pending, roles %v; the grant must wait", n, a.Roles(u.ID))
	}
	// The failed grant waits for its backoff; due again, it is delivered.
	testkit.Eventually(t, 10*time.Second, "the grant is delivered after the outage", func() bool {
		_ = grants.DeliverDue(ctx, st, f, testkit.Logger(t))
		n, _ := st.PendingGrants(ctx)
		return n == 0
	})
	if roles := a.Roles(u.ID); !slices.Equal(roles, []string{"member"}) {
		t.Fatalf("roles = %v", roles)
	}
}
