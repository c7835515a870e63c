package routes

// The gateway routes the services whose contracts are linked into it; adding a service to the
// platform means adding its generated package here (a test checks that none is missing).
import (
	_ "github.com/basaltplatform/basalt/gen/go/basalt/audit/v1"
	_ "github.com/basaltplatform/basalt/gen/go/basalt/auth/v1"
	_ "github.com/basaltplatform/basalt/gen/go/basalt/authz/v1"
	_ "github.com/basaltplatform/basalt/gen/go/basalt/blog/v1"
	_ "github.com/basaltplatform/basalt/gen/go/basalt/identity/v1"
)
