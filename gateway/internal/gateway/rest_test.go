package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/basaltplatform/basalt/gateway/internal/proxy"
	"github.com/basaltplatform/basalt/kernel/authn"
	"github.com/basaltplatform/basalt/kernel/errs"
	"github.com/basaltplatform/basalt/kernel/policy"
	"github.com/basaltplatform/basalt/kernel/server"
	"github.com/basaltplatform/basalt/kernel/testkit"

	"github.com/basaltplatform/basalt/gateway/internal/config"
	"github.com/basaltplatform/basalt/gateway/internal/routes"
)

// failingService stands in for every service behind the gateway: whatever procedure is
// called, it answers with the kernel's mapping of a domain error, chosen by the call's
// X-Test-Error header ("bad-request": a field violation, with a detail of a type of its own
// too, which the gateway does not know; "lockout": too many attempts, retry in 30 s), and with
// data_loss otherwise, which no refusal of the gateway's looks like. It records the request ids
// of the calls that reached it.
type failingService struct {
	reached sync.Map
	url     string
}

func startFailingService(t *testing.T) *failingService {
	t.Helper()
	s := &failingService{}
	srv, err := server.New("failing", testkit.HTTPConfig(), server.WithLogger(testkit.Logger(t)))
	if err != nil {
		t.Fatal(err)
	}
	errorWriter := connect.NewErrorWriter()
	log := slog.New(slog.DiscardHandler)
	answer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.reached.Store(r.Header.Get("X-Request-Id"), true)
		var err error
		switch r.Header.Get("X-Test-Error") {
		case "bad-request":
			err = errs.Invalid("title", "is required")
		case "lockout":
			err = errs.ResourceExhausted(30*time.Second, "too many failed attempts; try again later")
		default:
			err = connect.NewError(connect.CodeDataLoss, errors.New("the call reached the service"))
		}
		cerr := server.ToConnectError(r.Context(), log, r.URL.Path, err).(*connect.Error)
		if r.Header.Get("X-Test-Error") == "bad-request" {
			own, _ := connect.NewErrorDetail(&anypb.Any{TypeUrl: "type.googleapis.com/failing.v1.OwnDetail", Value: []byte{8, 1}})
			cerr.AddDetail(own)
		}
		_ = errorWriter.Write(w, r, cerr)
	})
	table, err := routes.Build(protoregistry.GlobalFiles, config.Defaults())
	if err != nil {
		t.Fatal(err)
	}
	for _, sd := range table.Services() {
		srv.Handle("POST /"+string(sd.FullName())+"/", answer)
	}
	testkit.Serve(t, srv)
	s.url = srv.URL()
	return s
}

// restRoute is a REST binding of a route, with a request that the gateway forwards.
type restRoute struct {
	route   *routes.Route
	method  string
	pattern string
	// path is pattern with every variable set to "x"; vars are the variables' field paths.
	path string
	vars []string
	// body is the binding's body field ("*", a field, or "" for none).
	body string
}

var pathVariable = regexp.MustCompile(`\{([^}=]+)(=[^}]*)?\}`)

// restRoutes returns the REST binding of every route of the table that has one.
func restRoutes(t *testing.T, table *routes.Table) []restRoute {
	t.Helper()
	var out []restRoute
	for _, r := range table.Routes() {
		rule, _ := proto.GetExtension(r.Method.Options(), annotations.E_Http).(*annotations.HttpRule)
		if rule == nil {
			continue
		}
		rr := restRoute{route: r, body: rule.GetBody()}
		switch p := rule.GetPattern().(type) {
		case *annotations.HttpRule_Get:
			rr.method, rr.pattern = http.MethodGet, p.Get
		case *annotations.HttpRule_Post:
			rr.method, rr.pattern = http.MethodPost, p.Post
		case *annotations.HttpRule_Patch:
			rr.method, rr.pattern = http.MethodPatch, p.Patch
		case *annotations.HttpRule_Delete:
			rr.method, rr.pattern = http.MethodDelete, p.Delete
		case *annotations.HttpRule_Put:
			rr.method, rr.pattern = http.MethodPut, p.Put
		default:
			t.Fatalf("%s: binding %v", r.Procedure, rule)
		}
		rr.path = pathVariable.ReplaceAllStringFunc(rr.pattern, func(v string) string {
			m := pathVariable.FindStringSubmatch(v)
			rr.vars = append(rr.vars, m[1])
			if m[2] == "" {
				return "x"
			}
			return strings.ReplaceAll(strings.ReplaceAll(m[2][1:], "**", "x"), "*", "x")
		})
		out = append(out, rr)
	}
	if len(out) < 20 {
		t.Fatalf("only %d REST routes in the table", len(out))
	}
	return out
}

// field returns the JSON name of a top-level field of the route's request that the query may
// set, is not in the path and has a kind the test wants, or "".
func (rr restRoute) field(want func(protoreflect.FieldDescriptor) bool) string {
	fields := rr.route.Method.Input().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.IsList() || fd.IsMap() || fd.ContainingOneof() != nil || !want(fd) {
			continue
		}
		inPath := false
		for _, v := range rr.vars {
			inPath = inPath || strings.Split(v, ".")[0] == string(fd.Name())
		}
		if !inPath {
			return fd.JSONName()
		}
	}
	return ""
}

func isKind(kinds ...protoreflect.Kind) func(protoreflect.FieldDescriptor) bool {
	return func(fd protoreflect.FieldDescriptor) bool {
		for _, k := range kinds {
			if fd.Kind() == k {
				return true
			}
		}
		return false
	}
}

// restCall is one request of the table and what its answer must be.
type restCall struct {
	method, path, body string
	header             map[string]string
	status             int
	code               connect.Code
	// says is what the message must contain (a parameter's name); field, when set, the field
	// of the answer's BadRequest detail.
	says, field string
	// challenge is the WWW-Authenticate a 401 must carry.
	challenge string
	// retryAfter is the Retry-After a 429 must carry ("" for any value).
	retryAfter string
	// forwarded says the call reaches the service; every other must not.
	forwarded bool
}

// restKind makes the call of one kind of error for a route, or returns false when the route
// cannot have it (a public method has no token to miss, a method without a body no JSON).
type restKind struct {
	name string
	make func(rr restRoute, auth map[string]string) (restCall, bool)
}

func with(h map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range h {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// bodyOf is a body that decodes for the route's binding.
func (rr restRoute) bodyOf() string {
	if rr.body == "" {
		return ""
	}
	return "{}"
}

func restKinds(t *testing.T, f *fixture) []restKind {
	expired := raw(t, map[string]any{"alg": "EdDSA", "kid": testKid, "typ": "at+jwt"}, claims("u", func(c map[string]any) {
		c["exp"] = time.Now().Add(-10 * time.Minute).Unix()
		c["iat"] = time.Now().Add(-30 * time.Minute).Unix()
	}), func(b []byte) []byte { return ed25519Sign(f.keys.priv, b) })
	authenticated := func(rr restRoute) bool { return rr.route.Rule.Audience != policy.Public }
	return []restKind{
		{"unknown path", func(rr restRoute, auth map[string]string) (restCall, bool) {
			return restCall{method: rr.method, path: rr.path + "/no/such/thing", header: auth, status: 404, code: connect.CodeNotFound, says: "no such route"}, true
		}},
		{"method not bound", func(rr restRoute, auth map[string]string) (restCall, bool) {
			return restCall{method: http.MethodPut, path: rr.path, body: "{}", header: with(auth, "Content-Type", "application/json"), status: 405, code: connect.CodeUnimplemented, says: "PUT is not allowed"}, true
		}},
		{"unknown query parameter", func(rr restRoute, auth map[string]string) (restCall, bool) {
			return restCall{method: rr.method, path: rr.path + "?foo=1", body: rr.bodyOf(), header: auth, status: 400, code: connect.CodeInvalidArgument, says: "foo", field: "foo"}, true
		}},
		{"query through a scalar", func(rr restRoute, auth map[string]string) (restCall, bool) {
			name := rr.field(isKind(protoreflect.StringKind))
			return restCall{method: rr.method, path: rr.path + "?" + name + ".x=1", body: rr.bodyOf(), header: auth, status: 400, code: connect.CodeInvalidArgument, says: name + ".x", field: name + ".x"}, name != ""
		}},
		{"bad UTF-8 in the path", func(rr restRoute, auth map[string]string) (restCall, bool) {
			if len(rr.vars) == 0 {
				return restCall{}, false
			}
			path := pathVariable.ReplaceAllString(strings.Replace(rr.pattern, "{"+rr.vars[0]+"}", "%FF", 1), "x")
			return restCall{method: rr.method, path: path, body: rr.bodyOf(), header: auth, status: 400, code: connect.CodeInvalidArgument, says: rr.vars[0], field: rr.vars[0]}, true
		}},
		{"bad UTF-8 in the query", func(rr restRoute, auth map[string]string) (restCall, bool) {
			name := rr.field(isKind(protoreflect.StringKind))
			return restCall{method: rr.method, path: rr.path + "?" + name + "=%FF%FE", body: rr.bodyOf(), header: auth, status: 400, code: connect.CodeInvalidArgument, says: name, field: name}, name != ""
		}},
		{"bad enum", func(rr restRoute, auth map[string]string) (restCall, bool) {
			name := rr.field(isKind(protoreflect.EnumKind))
			return restCall{method: rr.method, path: rr.path + "?" + name + "=NO_SUCH_VALUE", body: rr.bodyOf(), header: auth, status: 400, code: connect.CodeInvalidArgument, says: name, field: name}, name != ""
		}},
		{"bad number", func(rr restRoute, auth map[string]string) (restCall, bool) {
			name := rr.field(isKind(protoreflect.Int32Kind, protoreflect.Int64Kind, protoreflect.Uint32Kind, protoreflect.Uint64Kind))
			return restCall{method: rr.method, path: rr.path + "?" + name + "=ten", body: rr.bodyOf(), header: auth, status: 400, code: connect.CodeInvalidArgument, says: name, field: name}, name != ""
		}},
		{"malformed JSON body", func(rr restRoute, auth map[string]string) (restCall, bool) {
			return restCall{method: rr.method, path: rr.path, body: `{"x":`, header: with(auth, "Content-Type", "application/json"), status: 400, code: connect.CodeInvalidArgument, says: "the request body is not valid"}, rr.body != ""
		}},
		{"wrong type in the JSON body", func(rr restRoute, auth map[string]string) (restCall, bool) {
			if rr.body != "*" {
				return restCall{}, false
			}
			name := rr.field(isKind(protoreflect.StringKind))
			return restCall{method: rr.method, path: rr.path, body: `{"` + name + `":{"a":1}}`, header: with(auth, "Content-Type", "application/json"), status: 400, code: connect.CodeInvalidArgument, says: name}, name != ""
		}},
		{"body that is not JSON", func(rr restRoute, auth map[string]string) (restCall, bool) {
			return restCall{method: rr.method, path: rr.path, body: `title=x`, header: with(auth, "Content-Type", "application/x-www-form-urlencoded"), status: 415, code: connect.CodeInvalidArgument, says: "must be JSON"}, rr.body != ""
		}},
		{"body for a method without one", func(rr restRoute, auth map[string]string) (restCall, bool) {
			return restCall{method: rr.method, path: rr.path, body: `{}`, header: with(auth, "Content-Type", "application/json"), status: 400, code: connect.CodeInvalidArgument, says: "takes no request body"}, rr.body == ""
		}},
		{"too large", func(rr restRoute, auth map[string]string) (restCall, bool) {
			body := `{"x":"` + strings.Repeat("a", 4096) + `"}`
			return restCall{method: rr.method, path: rr.path, body: body, header: with(auth, "Content-Type", "application/json"), status: 413, code: connect.CodeResourceExhausted, says: "larger"}, rr.body != ""
		}},
		{"no token", func(rr restRoute, _ map[string]string) (restCall, bool) {
			return restCall{method: rr.method, path: rr.path, body: rr.bodyOf(), status: 401, code: connect.CodeUnauthenticated, says: "needs an access token", challenge: "Bearer"}, authenticated(rr)
		}},
		{"invalid token", func(rr restRoute, _ map[string]string) (restCall, bool) {
			return restCall{method: rr.method, path: rr.path, body: rr.bodyOf(), header: map[string]string{"Authorization": "Bearer not-a-token"}, status: 401, code: connect.CodeUnauthenticated, says: "invalid", challenge: `Bearer error="invalid_token"`}, authenticated(rr)
		}},
		{"expired token", func(rr restRoute, _ map[string]string) (restCall, bool) {
			return restCall{method: rr.method, path: rr.path, body: rr.bodyOf(), header: map[string]string{"Authorization": "Bearer " + expired}, status: 401, code: connect.CodeUnauthenticated, says: "expired", challenge: `Bearer error="invalid_token"`}, authenticated(rr)
		}},
		{"service: field violation", func(rr restRoute, auth map[string]string) (restCall, bool) {
			return restCall{method: rr.method, path: rr.path, body: rr.bodyOf(), header: with(auth, "X-Test-Error", "bad-request"), status: 400, code: connect.CodeInvalidArgument, says: "title: is required", field: "title", forwarded: true}, true
		}},
		{"service: lockout", func(rr restRoute, auth map[string]string) (restCall, bool) {
			return restCall{method: rr.method, path: rr.path, body: rr.bodyOf(), header: with(auth, "X-Test-Error", "lockout"), status: 429, code: connect.CodeResourceExhausted, says: "too many failed attempts", retryAfter: "30", forwarded: true}, true
		}},
	}
}

// staticKeys verifies the fixture's tokens without fetching a key set, for gateways whose
// upstreams publish none.
func staticKeys(t *testing.T, k keys) Option {
	t.Helper()
	set, err := authn.ParseJWKS(k.jwks)
	if err != nil {
		t.Fatal(err)
	}
	return WithKeys(authn.NewStaticKeys(set))
}

// errorFixture is a gateway in front of a failingService for every service, with requests
// bounded at 1 KiB, no rate limit in the way, and edit applied.
func errorFixture(t *testing.T, edit func(*config.Config, []restRoute)) (*fixture, *failingService) {
	t.Helper()
	svc := startFailingService(t)
	k := newKeys(t)
	// The table the gateway builds from the contracts, for edit.
	table, err := routes.Build(protoregistry.GlobalFiles, config.Defaults())
	if err != nil {
		t.Fatal(err)
	}
	rrs := restRoutes(t, table)
	f := newFixtureWithKeys(t, k, 0, func(c *config.Config) {
		c.Upstreams = map[string][]string{"auth": {svc.url}, "identity": {svc.url}, "audit": {svc.url}, "authz": {svc.url}, "blog": {svc.url}}
		c.Limits.MaxRequestBytes = 1024
		c.RateLimits.Public = config.Rate{Rate: 1e6, Burst: 1e6}
		c.RateLimits.Authenticated = config.Rate{Rate: 1e6, Burst: 1e6}
		c.Routes = nil
		if edit != nil {
			edit(c, rrs)
		}
	}, staticKeys(t, k))
	return f, svc
}

// TestRESTErrors sends every kind of error the gateway can produce without a real service to
// every REST route of the contracts, and wants each answered as google.rpc.Status in JSON:
// Content-Type application/json, the HTTP status of its code (405 for a method the path is not
// bound to, 413 for a request too large and 415 for a body that is not JSON), a message that
// names the parameter at fault and no Go or proto type, WWW-Authenticate on 401, Retry-After
// on 429, the details as JSON with their types, and nothing the gateway refused forwarded.
func TestRESTErrors(t *testing.T) {
	t.Parallel()
	f, svc := errorFixture(t, nil)
	ran := map[string]int{}
	kinds := restKinds(t, f)
	for _, rr := range restRoutes(t, f.gw.table) {
		auth := map[string]string{}
		if rr.route.Rule.Audience != policy.Public {
			auth["Authorization"] = "Bearer " + f.keys.token(t, "user-"+uuid.NewString())
		}
		for _, k := range kinds {
			call, ok := k.make(rr, auth)
			if !ok {
				continue
			}
			ran[k.name]++
			t.Run(rr.route.Procedure+"/"+k.name, func(t *testing.T) {
				t.Parallel()
				checkRESTError(t, f, svc, call)
			})
		}
	}
	for _, k := range kinds {
		if ran[k.name] == 0 {
			t.Errorf("no route could have %q", k.name)
		}
	}
}

// TestRESTErrorsRateLimitedAndUnavailable covers the two kinds that need a gateway of their
// own: every route rate limited (its own bucket of one call, refilled once a day), and every
// route's service down.
func TestRESTErrorsRateLimitedAndUnavailable(t *testing.T) {
	t.Parallel()
	limited, svc := errorFixture(t, func(c *config.Config, rrs []restRoute) {
		c.Routes = map[string]config.Route{}
		for _, rr := range rrs {
			c.Routes[rr.route.Procedure] = config.Route{RateLimit: &config.Rate{Rate: 1.0 / 86400, Burst: 1}}
		}
	})
	down, _ := errorFixture(t, func(c *config.Config, _ []restRoute) {
		u := startUpstream(t, "stopped", nil)
		if err := u.stop(); err != nil {
			t.Fatal(err)
		}
		c.Upstreams = map[string][]string{"auth": {u.url}, "identity": {u.url}, "audit": {u.url}, "authz": {u.url}, "blog": {u.url}}
	})
	for _, rr := range restRoutes(t, limited.gw.table) {
		for _, f := range []*fixture{limited, down} {
			auth := map[string]string{}
			if rr.route.Rule.Audience != policy.Public {
				auth["Authorization"] = "Bearer " + f.keys.token(t, "user-"+uuid.NewString())
			}
			call := restCall{method: rr.method, path: rr.path, body: rr.bodyOf(), header: auth}
			name := "unavailable"
			if f == limited {
				name = "rate limited"
				// The bucket's one call.
				if resp, body := f.do(t, call.method, call.path, call.body, call.header); resp.StatusCode == http.StatusTooManyRequests {
					t.Fatalf("%s %s: the first call was limited: %s", call.method, call.path, body)
				}
				call.status, call.code, call.says, call.retryAfter = 429, connect.CodeResourceExhausted, "too many requests", ""
			} else {
				call.status, call.code, call.says = 503, connect.CodeUnavailable, "unavailable"
			}
			t.Run(rr.route.Procedure+"/"+name, func(t *testing.T) {
				t.Parallel()
				checkRESTError(t, f, svc, call)
			})
		}
	}
}

// internalName matches what must not reach a client: a proto package or message name, a Go
// type, protobuf-go's prefix, vanguard's and Go's parser wording.
var internalName = regexp.MustCompile(`basalt\.|[A-Z][a-z]+Request\b|\*[a-z]|proto:|\x{00a0}|field path|wrapperspb|looking for beginning`)

func checkRESTError(t *testing.T, f *fixture, svc *failingService, call restCall) {
	t.Helper()
	id := uuid.NewString()
	header := with(call.header, "X-Request-Id", id)
	resp, body := f.do(t, call.method, call.path, call.body, header)
	where := fmt.Sprintf("%s %s", call.method, call.path)
	if resp.StatusCode != call.status {
		t.Errorf("%s = %d %s, want %d", where, resp.StatusCode, body, call.status)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q, want application/json", where, ct)
	}
	st := decodeStatus(t, body)
	code := connect.Code(st.GetCode())
	if code != call.code {
		t.Errorf("%s: code %v (%s), want %v", where, code, body, call.code)
	}
	if want := proxy.StatusOf(code); want != resp.StatusCode && resp.StatusCode != 405 && resp.StatusCode != 413 && resp.StatusCode != 415 {
		t.Errorf("%s: HTTP %d for code %v, which is %d", where, resp.StatusCode, code, want)
	}
	if st.GetMessage() == "" || !strings.Contains(st.GetMessage(), call.says) {
		t.Errorf("%s: message %q, want it to say %q", where, st.GetMessage(), call.says)
	}
	if m := internalName.FindString(st.GetMessage()); m != "" {
		t.Errorf("%s: message %q names %q", where, st.GetMessage(), m)
	}
	if call.field != "" {
		var fields []string
		for _, d := range st.GetDetails() {
			if br := new(errdetails.BadRequest); d.MessageIs(br) && d.UnmarshalTo(br) == nil {
				for _, v := range br.GetFieldViolations() {
					fields = append(fields, v.GetField())
				}
			}
		}
		if len(fields) != 1 || fields[0] != call.field {
			t.Errorf("%s: field violations %v (%s), want %q", where, fields, body, call.field)
		}
	}
	if got := resp.Header.Get("WWW-Authenticate"); got != call.challenge {
		t.Errorf("%s: WWW-Authenticate %q, want %q", where, got, call.challenge)
	}
	if retry := resp.Header.Get("Retry-After"); call.status == 429 && (retry == "" || call.retryAfter != "" && retry != call.retryAfter) {
		t.Errorf("%s: Retry-After %q, want %q", where, retry, call.retryAfter)
	}
	if _, reached := svc.reached.Load(id); reached != call.forwarded {
		t.Errorf("%s: reached the service: %v, want %v", where, reached, call.forwarded)
	}
}

// TestUnauthorizedAnswersChallenge wants a 401 to carry WWW-Authenticate on Connect's unary
// calls through both servers, the gateway's own refusals and a service's alike, and gRPC's
// answers, whose status is not 401, to carry none.
func TestUnauthorizedAnswersChallenge(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	fast := newFixtureWithKeys(t, k, 1, nil)
	slow := newFixtureWithKeys(t, k, 1, func(c *config.Config) { c.Limits.DisableFastPath = true })
	tests := []struct {
		name, path, body, authorization, contentType string
		status                                       int
		challenge                                    string
	}{
		{"no token", "/basalt.identity.v1.IdentityService/GetCurrentUser", "{}", "", "application/json", 401, "Bearer"},
		{"bad token", "/basalt.identity.v1.IdentityService/GetCurrentUser", "{}", "Bearer not-a-token", "application/json", 401, `Bearer error="invalid_token"`},
		{"basic credentials are no token", "/basalt.identity.v1.IdentityService/GetCurrentUser", "{}", "Basic dXNlcjpwYXNz", "application/json", 401, "Bearer"},
		{"the service's 401", "/basalt.auth.v1.AuthService/Login", `{"email":"a@example.com","password":"wrong"}`, "", "application/json", 401, "Bearer"},
		{"gRPC's answer is a 200", "/basalt.identity.v1.IdentityService/GetCurrentUser", "\x00\x00\x00\x00\x00", "", "application/grpc-web", 200, ""},
	}
	for _, f := range []*fixture{fast, slow} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/fast=%v", tt.name, f == fast), func(t *testing.T) {
				t.Parallel()
				h := map[string]string{"Content-Type": tt.contentType}
				if tt.authorization != "" {
					h["Authorization"] = tt.authorization
				}
				resp, body := f.do(t, http.MethodPost, tt.path, tt.body, h)
				if resp.StatusCode != tt.status || resp.Header.Get("WWW-Authenticate") != tt.challenge {
					t.Errorf("%d with WWW-Authenticate %q (%s), want %d with %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body, tt.status, tt.challenge)
				}
			})
		}
	}
}

// decodeStatus decodes a REST error body as google.rpc.Status, strictly.
func decodeStatus(t *testing.T, body string) *status.Status {
	t.Helper()
	st := &status.Status{}
	if err := protojson.Unmarshal([]byte(body), st); err != nil {
		t.Fatalf("body %s is not a google.rpc.Status: %v", body, err)
	}
	return st
}

// TestAccessLogNamesPathAndProtocol wants each request's access log line to name the method,
// the path as the client sent it, without its query, and the protocol the client used, the
// REST request's route being the procedure it was transcoded into.
func TestAccessLogNamesPathAndProtocol(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1, nil)
	token := "Bearer " + f.keys.token(t, "user-1")
	const getCurrentUser = "/basalt.identity.v1.IdentityService/GetCurrentUser"
	grpcWeb := "\x00\x00\x00\x00\x00"
	tests := []struct {
		name, method, target, body, contentType string
		h2                                      bool
		path, protocol, route                   string
	}{
		{"REST", http.MethodGet, "/v1/users?pageToken=secret-in-the-query&pageSize=3", "", "", false, "/v1/users", "rest", "/basalt.identity.v1.IdentityService/ListUsers"},
		{"REST with an escaped path", http.MethodGet, "/v1/users/a%20b?x=secret-in-the-query", "", "", false, "/v1/users/a%20b", "rest", "/basalt.identity.v1.IdentityService/GetUser"},
		{"REST, no route", http.MethodGet, "/v1/nowhere?token=secret-in-the-query", "", "", false, "/v1/nowhere", "rest", ""},
		{"Connect, fast path", http.MethodPost, getCurrentUser, "{}", "application/json", false, getCurrentUser, "connect", getCurrentUser},
		{"Connect, h2c", http.MethodPost, getCurrentUser, "{}", "application/json", true, getCurrentUser, "connect", getCurrentUser},
		{"Connect GET", http.MethodGet, getCurrentUser + "?connect=v1&encoding=json&message=%7B%7D", "", "", false, getCurrentUser, "connect", getCurrentUser},
		{"gRPC", http.MethodPost, getCurrentUser, grpcWeb, "application/grpc", true, getCurrentUser, "grpc", getCurrentUser},
		{"gRPC-Web", http.MethodPost, getCurrentUser, grpcWeb, "application/grpc-web+proto", false, getCurrentUser, "grpc-web", getCurrentUser},
		{"health", http.MethodGet, "/healthz", "", "", false, "/healthz", "http", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id := uuid.NewString()
			req, err := http.NewRequest(tt.method, f.url+tt.target, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("X-Request-Id", id)
			req.Header.Set("Authorization", token)
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			client := f.h1
			if tt.h2 {
				client = f.h2
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			var line map[string]any
			testkitEventually(t, func() bool {
				for l := range strings.Lines(f.logs.String()) {
					if strings.Contains(l, `"request_id":"`+id+`"`) && strings.Contains(l, `"msg":"request"`) {
						return json.Unmarshal([]byte(l), &line) == nil
					}
				}
				return false
			})
			want := map[string]any{"method": tt.method, "path": tt.path, "protocol": tt.protocol}
			if tt.route != "" {
				want["route"] = tt.route
			}
			for k, v := range want {
				if line[k] != v {
					t.Errorf("%s = %v, want %v (%v)", k, line[k], v, line)
				}
			}
			if raw, _ := json.Marshal(line); strings.Contains(string(raw), "secret-in-the-query") {
				t.Errorf("the line holds the query: %s", raw)
			}
		})
	}
}
