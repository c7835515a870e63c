package bootstrap_test

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	authzv1 "github.com/basaltplatform/basalt/gen/go/basalt/authz/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/authz/v1/authzv1connect"
	"github.com/basaltplatform/basalt/kernel/authn"
	"github.com/basaltplatform/basalt/kernel/errs"
	"github.com/basaltplatform/basalt/kernel/testkit"
	"github.com/basaltplatform/basalt/kernel/testkit/authority"
	"github.com/basaltplatform/basalt/services/identity/internal/bootstrap"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// flaky fails its first calls, as an authz service that is still starting does.
type flaky struct {
	bootstrap.Granter
	failures atomic.Int64
}

func (f *flaky) GrantRole(ctx context.Context, req *connect.Request[authzv1.GrantRoleRequest]) (*connect.Response[authzv1.GrantRoleResponse], error) {
	if f.failures.Add(-1) >= 0 {
		return nil, errs.Unavailable(nil, "not started")
	}
	return f.Granter.GrantRole(ctx, req)
}

func TestGrantAdminRetriesUntilAuthzTakesIt(t *testing.T) {
	t.Parallel()
	a := authority.New(t)
	tokens, err := authn.NewServiceTokens("identity", []byte(authority.InternalSecret))
	if err != nil {
		t.Fatal(err)
	}
	client := authzv1connect.NewAuthzServiceClient(testkit.H2CClient(t), a.URL, connect.WithInterceptors(authn.NewClientCredentials(tokens)))
	f := &flaky{Granter: client}
	f.failures.Store(2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bootstrap.GrantAdmin(ctx, f, "admin-id", testkit.Logger(t))
	if roles := a.Roles("admin-id"); !slices.Equal(roles, []string{"admin"}) {
		t.Fatalf("roles = %v, want [admin] after two failed attempts", roles)
	}
}
