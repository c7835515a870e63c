package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/basaltplatform/basalt/kernel/config"
	"github.com/basaltplatform/basalt/kernel/discovery"
	"github.com/basaltplatform/basalt/kernel/errs"
	"github.com/basaltplatform/basalt/kernel/internal/echo"
	"github.com/basaltplatform/basalt/kernel/server"
	"github.com/basaltplatform/basalt/kernel/telemetry"
	"github.com/basaltplatform/basalt/kernel/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m, testkit.CheckLeaks()) }

func httpConfig() config.HTTP { return echo.HTTPConfig() }

func start(t *testing.T, cfg config.HTTP, unary echo.UnaryFunc, opts ...server.Option) echo.Running {
	t.Helper()
	return echo.Start(t, cfg, unary, opts...)
}

// protocols are the client configurations every scenario runs through: Connect with JSON and
// with protobuf over HTTP/1.1, gRPC over h2c, and gRPC-Web over HTTP/1.1.
var protocols = []struct {
	name string
	h2c  bool
	opts []connect.ClientOption
}{
	{"connect+json", false, []connect.ClientOption{connect.WithProtoJSON()}},
	{"connect+proto", false, nil},
	{"grpc", true, []connect.ClientOption{connect.WithGRPC()}},
	{"grpc-web", false, []connect.ClientOption{connect.WithGRPCWeb()}},
}

func httpClient(t *testing.T, h2c bool) *http.Client {
	t.Helper()
	if h2c {
		return testkit.H2CClient(t)
	}
	return testkit.HTTP1Client(t)
}

func grpcConn(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestEveryProtocolOnOnePort(t *testing.T) {
	t.Parallel()
	srv := start(t, httpConfig(), nil)
	ctx := context.Background()
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			client := echo.NewClient(httpClient(t, p.h2c), srv.URL(), p.opts...)
			res, err := client.Echo(ctx, connect.NewRequest(wrapperspb.String("hi")))
			if err != nil || res.Msg.GetValue() != "hi" {
				t.Fatalf("Echo = %v, %v", res, err)
			}
			stream, err := client.Count(ctx, connect.NewRequest(wrapperspb.Int64(3)))
			if err != nil {
				t.Fatal(err)
			}
			var got []int64
			for stream.Receive() {
				got = append(got, stream.Msg().GetValue())
			}
			if err := stream.Err(); err != nil || len(got) != 3 || got[2] != 3 {
				t.Fatalf("Count = %v, %v", got, err)
			}
			health := grpchealth.NewClient(httpClient(t, p.h2c), srv.URL(), p.opts...)
			hres, err := health.Check(ctx, &grpchealth.CheckRequest{Service: echo.Service})
			if err != nil || hres.Status != grpchealth.StatusServing {
				t.Fatalf("health = %v, %v", hres, err)
			}
		})
	}

	t.Run("grpc-go", func(t *testing.T) {
		conn := grpcConn(t, srv.Addr().String())
		out := &wrapperspb.StringValue{}
		if err := conn.Invoke(ctx, echo.UnaryProcedure, wrapperspb.String("hi"), out); err != nil || out.GetValue() != "hi" {
			t.Fatalf("Invoke = %v, %v", out, err)
		}
		hres, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil || hres.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health = %v, %v", hres, err)
		}
		refl, err := reflectpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := refl.Send(&reflectpb.ServerReflectionRequest{MessageRequest: &reflectpb.ServerReflectionRequest_ListServices{}}); err != nil {
			t.Fatal(err)
		}
		rres, err := refl.Recv()
		if err != nil {
			t.Fatal(err)
		}
		_ = refl.CloseSend()
		var names []string
		for _, s := range rres.GetListServicesResponse().GetService() {
			names = append(names, s.GetName())
		}
		if !strings.Contains(strings.Join(names, ","), echo.Service) {
			t.Fatalf("reflection lists %v, want %s", names, echo.Service)
		}
	})
}

// TestReflectionDescribesTheErrorDetails asks, as grpcurl does before it decodes an error's
// details, for the files of google.rpc.Status and of the details the server sends.
func TestReflectionDescribesTheErrorDetails(t *testing.T) {
	t.Parallel()
	srv := start(t, httpConfig(), nil)
	stream := grpcreflect.NewClient(testkit.H2CClient(t), srv.URL()).NewStream(context.Background())
	defer stream.Close()
	bySymbol := func(name string) ([]*descriptorpb.FileDescriptorProto, error) {
		return stream.FileContainingSymbol(protoreflect.FullName(name))
	}
	tests := []struct {
		ask  string
		by   func(string) ([]*descriptorpb.FileDescriptorProto, error)
		want string
	}{
		{"google.rpc.BadRequest", bySymbol, "google/rpc/error_details.proto"},
		{"google.rpc.RetryInfo", bySymbol, "google/rpc/error_details.proto"},
		{"google/rpc/status.proto", stream.FileByFilename, "google/rpc/status.proto"},
	}
	for _, tt := range tests {
		fds, err := tt.by(tt.ask)
		if err != nil {
			t.Errorf("%s: %v", tt.ask, err)
			continue
		}
		if fds[0].GetName() != tt.want {
			t.Errorf("%s: reflection answers %s first, want %s", tt.ask, fds[0].GetName(), tt.want)
		}
	}
}

func TestErrorsReachClientsWithTheRightCodeAndNothingInternal(t *testing.T) {
	t.Parallel()
	const secret = "pq: password for admin is hunter2"
	tests := []struct {
		name       string
		err        error
		code       connect.Code
		message    string
		fields     int
		retryAfter string
	}{
		{"invalid argument with fields", func() error {
			var v errs.Violations
			v.Add("email", "must be an address")
			v.Add("password", "too short")
			return v.Err()
		}(), connect.CodeInvalidArgument, "email: must be an address (and 1 more)", 2, ""},
		{"not found", errs.NotFound("user %q not found", "u1"), connect.CodeNotFound, `user "u1" not found`, 0, ""},
		{"already exists", errs.AlreadyExists("email taken"), connect.CodeAlreadyExists, "email taken", 0, ""},
		{"permission denied", errs.PermissionDenied("missing blog.posts.update"), connect.CodePermissionDenied, "missing blog.posts.update", 0, ""},
		{"unauthenticated", errs.Unauthenticated("token expired"), connect.CodeUnauthenticated, "token expired", 0, ""},
		{"resource exhausted", errs.ResourceExhausted(1500*time.Millisecond, "too many attempts"), connect.CodeResourceExhausted, "too many attempts", 0, "2"},
		{"unavailable keeps its message but not the cause", errs.Unavailable(errors.New(secret), "the database is unavailable"), connect.CodeUnavailable, "the database is unavailable", 0, ""},
		{"unknown error is internal", errors.New(secret), connect.CodeInternal, "internal error (request id ", 0, ""},
		{"internal connect error is sanitised", connect.NewError(connect.CodeInternal, errors.New(secret)), connect.CodeInternal, "internal error (request id ", 0, ""},
		{"unavailable connect error is sanitised", connect.NewError(connect.CodeUnavailable, errors.New("dial tcp 10.0.0.7:5432: "+secret)), connect.CodeUnavailable, "the service is temporarily unavailable; retry later", 0, ""},
		{"deadline", context.DeadlineExceeded, connect.CodeDeadlineExceeded, "the deadline was exceeded", 0, ""},
	}
	handler := func(_ context.Context, req *connect.Request[wrapperspb.StringValue]) (*connect.Response[wrapperspb.StringValue], error) {
		for _, tt := range tests {
			if tt.name == req.Msg.GetValue() {
				return nil, tt.err
			}
		}
		panic("handler bug: " + secret)
	}
	srv := start(t, httpConfig(), handler)
	ctx := context.Background()
	for _, p := range protocols {
		client := echo.NewClient(httpClient(t, p.h2c), srv.URL(), p.opts...)
		for _, tt := range tests {
			t.Run(p.name+"/"+tt.name, func(t *testing.T) {
				_, err := client.Echo(ctx, connect.NewRequest(wrapperspb.String(tt.name)))
				var cerr *connect.Error
				if !errors.As(err, &cerr) {
					t.Fatalf("error %v is not a connect error", err)
				}
				if cerr.Code() != tt.code || !strings.HasPrefix(cerr.Message(), tt.message) {
					t.Fatalf("got %v %q, want %v %q", cerr.Code(), cerr.Message(), tt.code, tt.message)
				}
				if strings.Contains(cerr.Error(), "hunter2") || strings.Contains(cerr.Error(), "10.0.0.7") {
					t.Fatalf("internal detail leaked: %q", cerr.Error())
				}
				var fields int
				for _, d := range cerr.Details() {
					if v, err := d.Value(); err == nil {
						if br, ok := v.(*errdetails.BadRequest); ok {
							fields = len(br.GetFieldViolations())
						}
					}
				}
				if fields != tt.fields {
					t.Fatalf("%d field violations in details, want %d", fields, tt.fields)
				}
				if tt.retryAfter != "" && cerr.Meta().Get("Retry-After") != tt.retryAfter {
					t.Fatalf("Retry-After = %q, want %q", cerr.Meta().Get("Retry-After"), tt.retryAfter)
				}
			})
		}
		t.Run(p.name+"/panic", func(t *testing.T) {
			_, err := client.Echo(ctx, connect.NewRequest(wrapperspb.String("panic")))
			if connect.CodeOf(err) != connect.CodeInternal || strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("panic answered %v", err)
			}
		})
	}

	t.Run("grpc-go", func(t *testing.T) {
		conn := grpcConn(t, srv.Addr().String())
		err := conn.Invoke(ctx, echo.UnaryProcedure, wrapperspb.String("not found"), &wrapperspb.StringValue{})
		if st := status.Convert(err); st.Code() != codes.NotFound || st.Message() != `user "u1" not found` {
			t.Fatalf("grpc-go got %v", err)
		}
		err = conn.Invoke(ctx, echo.UnaryProcedure, wrapperspb.String("panic"), &wrapperspb.StringValue{})
		if st := status.Convert(err); st.Code() != codes.Internal || strings.Contains(st.Message(), "hunter2") {
			t.Fatalf("grpc-go panic got %v", err)
		}
	})
}

// TestJSONDecodeErrorsNameTheFieldNotGoTypes sends JSON that does not decode, over Connect's
// unary protocol and gRPC-Web's JSON, and wants invalid_argument saying which field was wrong
// and how, without the Go type the server decodes into or protobuf-go's "proto:" prefix.
func TestJSONDecodeErrorsNameTheFieldNotGoTypes(t *testing.T) {
	t.Parallel()
	srv := start(t, httpConfig(), nil)
	client := testkit.HTTP1Client(t)
	envelope := func(b string) string { return string([]byte{0, 0, 0, 0, byte(len(b))}) + b }
	tests := []struct {
		name, contentType, body, want string
	}{
		{"connect, wrong type", "application/json", `5`, "invalid value for string field value: 5"},
		{"connect, not JSON", "application/json", `"unfinished`, "unexpected EOF"},
		{"connect, empty", "application/json", ``, "a message without fields is {}"},
		{"grpc-web, wrong type", "application/grpc-web+json", envelope(`true`), "invalid value for string field value: true"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequest(http.MethodPost, srv.URL()+echo.UnaryProcedure, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", tt.contentType)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			code, msg := resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Message")
			if code == "" {
				// gRPC-Web puts its status in a trailer message at the end of the body.
				code, msg = trailerField(string(body), "grpc-status"), trailerField(string(body), "grpc-message")
			}
			if tt.contentType == "application/json" {
				var e struct{ Code, Message string }
				if err := json.Unmarshal(body, &e); err != nil {
					t.Fatalf("body %q: %v", body, err)
				}
				code, msg = e.Code, e.Message
			}
			if code != "invalid_argument" && code != "3" {
				t.Errorf("code %q (%s), want invalid_argument", code, body)
			}
			if decoded, err := url.PathUnescape(msg); err == nil {
				msg = decoded
			}
			if !strings.Contains(msg, tt.want) {
				t.Errorf("message %q, want it to say %q", msg, tt.want)
			}
			for _, internal := range []string{"wrapperspb", "StringValue", "*", "proto:", "\u00a0"} {
				if strings.Contains(msg, internal) {
					t.Errorf("message %q names %q", msg, internal)
				}
			}
		})
	}
}

// trailerField returns the value of a field in a gRPC-Web trailer message within body.
func trailerField(body, name string) string {
	for line := range strings.SplitSeq(body, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(strings.ToLower(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func TestMessageSizeLimit(t *testing.T) {
	t.Parallel()
	cfg := httpConfig()
	cfg.MaxMessageBytes = 1 << 10
	srv := start(t, cfg, nil)
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			client := echo.NewClient(httpClient(t, p.h2c), srv.URL(), append(p.opts, connect.WithSendCompression(""))...)
			_, err := client.Echo(context.Background(), connect.NewRequest(wrapperspb.String(strings.Repeat("x", 4<<10))))
			if connect.CodeOf(err) != connect.CodeResourceExhausted {
				t.Fatalf("oversized message: %v, want resource_exhausted", err)
			}
		})
	}
}

func TestDeadlineAndRequestIDReachTheHandler(t *testing.T) {
	t.Parallel()
	type seen struct {
		deadline time.Duration
		id       string
	}
	got := make(chan seen, 8)
	handler := func(ctx context.Context, req *connect.Request[wrapperspb.StringValue]) (*connect.Response[wrapperspb.StringValue], error) {
		dl, ok := ctx.Deadline()
		if !ok {
			return nil, errs.FailedPrecondition("no deadline")
		}
		got <- seen{time.Until(dl), req.Header().Get("X-Request-Id")}
		return connect.NewResponse(req.Msg), nil
	}
	srv := start(t, httpConfig(), handler)
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			client := echo.NewClient(httpClient(t, p.h2c), srv.URL(), p.opts...)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			req := connect.NewRequest(wrapperspb.String("x"))
			req.Header().Set("X-Request-Id", "abc-123")
			res, err := client.Echo(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			s := <-got
			if s.deadline <= 0 || s.deadline > 30*time.Second {
				t.Fatalf("handler deadline %s, want within the client's 30s", s.deadline)
			}
			// The caller's id reaches the handler; the answer does not repeat what the caller knows.
			if s.id != "abc-123" || res.Header().Get("X-Request-Id") != "" {
				t.Fatalf("request id: handler %q, response %q", s.id, res.Header().Get("X-Request-Id"))
			}

			// Without an id, or with one too long to trust, the server makes its own and says so.
			req = connect.NewRequest(wrapperspb.String("x"))
			req.Header().Set("X-Request-Id", strings.Repeat("a", 500))
			res, err = client.Echo(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			s = <-got
			if len(s.id) != 32 || res.Header().Get("X-Request-Id") != s.id {
				t.Fatalf("generated request id %q, response %q", s.id, res.Header().Get("X-Request-Id"))
			}
		})
	}
}

// TestCallsStartTheirOwnTraceWithoutTraceContext calls a server with the telemetry every
// service runs with and no exporter: a call without trace context gets a trace of its own, so
// its log lines carry a trace id even when the gateway, which sends none unless it traces
// (ADR-0043), is in front; a call with trace context joins the caller's trace.
func TestCallsStartTheirOwnTraceWithoutTraceContext(t *testing.T) {
	t.Parallel()
	tel, err := telemetry.New(context.Background(), "echo", "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	got := make(chan trace.SpanContext, 8)
	handler := func(ctx context.Context, req *connect.Request[wrapperspb.StringValue]) (*connect.Response[wrapperspb.StringValue], error) {
		got <- trace.SpanContextFromContext(ctx)
		return connect.NewResponse(req.Msg), nil
	}
	srv := start(t, httpConfig(), handler, server.WithTelemetry(tel))
	const callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			client := echo.NewClient(httpClient(t, p.h2c), srv.URL(), p.opts...)
			if _, err := client.Echo(context.Background(), connect.NewRequest(wrapperspb.String("x"))); err != nil {
				t.Fatal(err)
			}
			if sc := <-got; !sc.IsValid() || sc.TraceID().String() == callerTrace {
				t.Errorf("without trace context the handler saw %v, want a trace of its own", sc.TraceID())
			}
			req := connect.NewRequest(wrapperspb.String("x"))
			req.Header().Set("Traceparent", "00-"+callerTrace+"-00f067aa0ba902b7-01")
			if _, err := client.Echo(context.Background(), req); err != nil {
				t.Fatal(err)
			}
			if sc := <-got; sc.TraceID().String() != callerTrace {
				t.Errorf("with the caller's trace context the handler saw trace %v, want %s", sc.TraceID(), callerTrace)
			}
		})
	}
}

func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	var dbDown sync.Mutex
	down := false
	srv := start(t, httpConfig(), nil, server.WithReadinessCheck("database", func(context.Context) error {
		dbDown.Lock()
		defer dbDown.Unlock()
		if down {
			return errors.New("connection refused")
		}
		return nil
	}))
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d", code)
	}
	if code, _ := get("/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz = %d", code)
	}
	dbDown.Lock()
	down = true
	dbDown.Unlock()
	code, body := get("/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"database"`) || strings.Contains(body, "refused") {
		t.Fatalf("/readyz with the database down = %d %s", code, body)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Fatalf("liveness must not depend on dependencies: /healthz = %d", code)
	}
}

func TestServesOnTheInheritedSocket(t *testing.T) {
	t.Parallel()
	cfg := httpConfig()
	cfg.ListenAddr, cfg.Inherited = testkit.InheritedSocket(t)
	srv := start(t, cfg, nil)
	if want := "http://" + cfg.ListenAddr; srv.URL() != want {
		t.Fatalf("serving at %s, want %s", srv.URL(), want)
	}
	resp, err := http.Get(srv.URL() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz = %d", resp.StatusCode)
	}
}

func TestSlowHeadersAreCutOff(t *testing.T) {
	t.Parallel()
	cfg := httpConfig()
	cfg.ReadHeaderTimeout = 200 * time.Millisecond
	srv := start(t, cfg, nil)
	conn, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("POST " + echo.UnaryProcedure + " HTTP/1.1\r\nHost: x\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = bufio.NewReader(conn).ReadString('\n')
	if err == nil {
		// The server may answer 408 before closing; either way it must not wait for us.
		return
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the server kept a client that never finished its headers")
	}
}

func TestGracefulShutdownDeregistersFirstThenDrains(t *testing.T) {
	t.Parallel()
	consul, err := discovery.NewConsul(testkit.Consul(t), discovery.WithCheck(time.Second, 500*time.Millisecond, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer consul.Close()
	entered := make(chan struct{})
	release := make(chan struct{})
	handler := func(_ context.Context, req *connect.Request[wrapperspb.StringValue]) (*connect.Response[wrapperspb.StringValue], error) {
		if req.Msg.GetValue() == "slow" {
			close(entered)
			<-release
		}
		return connect.NewResponse(req.Msg), nil
	}
	srv := start(t, httpConfig(), handler, server.WithRegistrar(consul))
	ctx := context.Background()
	registered := func() bool {
		entries, _, err := consul.Client().Health().Service("echo", "", false, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Service.ID == srv.Instance().ID {
				return true
			}
		}
		return false
	}
	if !registered() {
		t.Fatal("the instance is not registered while serving")
	}

	client := echo.NewClient(httpClient(t, true), srv.URL(), connect.WithGRPC())
	inflight := make(chan error, 1)
	go func() {
		_, err := client.Echo(ctx, connect.NewRequest(wrapperspb.String("slow")))
		inflight <- err
	}()
	<-entered
	stopped := make(chan error, 1)
	go func() { stopped <- srv.Stop() }()

	// The in-flight call still holds the server open, and the instance is already gone from
	// Consul: callers stop choosing it before it stops answering.
	testkit.Eventually(t, 10*time.Second, "the draining instance is deregistered", func() bool { return !registered() })
	select {
	case err := <-stopped:
		t.Fatalf("Run returned (%v) with a call still in flight", err)
	default:
	}
	close(release)
	if err := <-inflight; err != nil {
		t.Fatalf("the in-flight call failed during the drain: %v", err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if _, err := client.Echo(ctx, connect.NewRequest(wrapperspb.String("late"))); connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("a call after shutdown = %v, want unavailable", err)
	}
}

func TestShutdownTimeoutBoundsTheDrain(t *testing.T) {
	t.Parallel()
	cfg := httpConfig()
	cfg.ShutdownTimeout = 200 * time.Millisecond
	entered := make(chan struct{})
	handler := func(ctx context.Context, req *connect.Request[wrapperspb.StringValue]) (*connect.Response[wrapperspb.StringValue], error) {
		close(entered)
		<-ctx.Done() // never finishes on its own
		return nil, ctx.Err()
	}
	srv := start(t, cfg, handler)
	client := echo.NewClient(httpClient(t, true), srv.URL(), connect.WithGRPC())
	inflight := make(chan error, 1)
	go func() {
		_, err := client.Echo(context.Background(), connect.NewRequest(wrapperspb.String("stuck")))
		inflight <- err
	}()
	<-entered
	if err := srv.Stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if err := <-inflight; err == nil {
		t.Fatal("a call cut off by the drain timeout reported success")
	}
}

func TestGRPCGoMetadataAndTrailers(t *testing.T) {
	t.Parallel()
	seen := make(chan string, 2)
	handler := func(_ context.Context, req *connect.Request[wrapperspb.StringValue]) (*connect.Response[wrapperspb.StringValue], error) {
		seen <- req.Header().Get("X-Request-Id")
		return connect.NewResponse(req.Msg), nil
	}
	srv := start(t, httpConfig(), handler)
	conn := grpcConn(t, srv.Addr().String())
	// A grpc-go client's metadata reaches the handler; the answer does not repeat its id.
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-request-id", "grpc-go-1")
	var header metadata.MD
	out := &wrapperspb.StringValue{}
	if err := conn.Invoke(ctx, echo.UnaryProcedure, wrapperspb.String("m"), out, grpc.Header(&header)); err != nil {
		t.Fatal(err)
	}
	if id, got := <-seen, header.Get("x-request-id"); id != "grpc-go-1" || len(got) != 0 {
		t.Fatalf("the handler saw request id %q, the client got x-request-id %v", id, got)
	}
	// Without one, the id the server made reaches the client as header metadata.
	if err := conn.Invoke(context.Background(), echo.UnaryProcedure, wrapperspb.String("m"), out, grpc.Header(&header)); err != nil {
		t.Fatal(err)
	}
	if id, got := <-seen, header.Get("x-request-id"); len(id) != 32 || len(got) != 1 || got[0] != id {
		t.Fatalf("the handler saw request id %q, the client got x-request-id %v", id, got)
	}
}

// TestAnInstanceRemovedWhileCriticalComesBackWhenReady makes an instance critical for longer
// than Consul's deregistration period (one minute, Consul's minimum; its reaper runs every 30
// s), as a database outage does: Consul removes it, the server registers it again as critical,
// and it is passing again once its dependency is back, with no restart.
func TestAnInstanceRemovedWhileCriticalComesBackWhenReady(t *testing.T) {
	t.Parallel()
	agent := testkit.StartConsulAgent(t)
	consul, err := discovery.NewConsul(agent.Addr(), discovery.WithCheck(500*time.Millisecond, 400*time.Millisecond, time.Minute), discovery.WithMaxBackoff(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer consul.Close()
	var down atomic.Bool
	srv := start(t, httpConfig(), nil, server.WithRegistrar(consul), server.WithReadinessCheck("database", func(context.Context) error {
		if down.Load() {
			return errors.New("connection refused")
		}
		return nil
	}))
	inst := srv.Instance()
	// status is the instance's check status in the catalogue ("" while it is not registered)
	// and the catalogue index its registration was made at, which a new registration changes.
	status := func() (string, uint64) {
		entries, _, err := consul.Client().Health().Service("echo", "", false, nil)
		if err != nil {
			return "unknown", 0
		}
		for _, e := range entries {
			for _, c := range e.Checks {
				if e.Service.ID == inst.ID && c.CheckID == discovery.CheckID(inst) {
					return c.Status, e.Service.CreateIndex
				}
			}
		}
		return "", 0
	}
	first, created := status()
	if first != "passing" {
		t.Fatalf("a new instance is %q, want passing", first)
	}
	down.Store(true)
	testkit.Eventually(t, 10*time.Second, "the instance turns critical", func() bool { s, _ := status(); return s == "critical" })
	// Consul removes it after a minute critical, at its next reap; the server notices and
	// registers it again, still critical, so no caller is sent to it.
	testkit.Eventually(t, 150*time.Second, "Consul removes the instance and the server registers it again as critical", func() bool {
		s, index := status()
		return s == "critical" && index != created
	})
	down.Store(false)
	testkit.Eventually(t, 15*time.Second, "the instance is passing once its dependency is back", func() bool { s, _ := status(); return s == "passing" })
}
