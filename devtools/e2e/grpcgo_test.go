package e2e_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/anypb"

	authv1 "github.com/basaltplatform/basalt/gen/go/basalt/auth/v1"
	blogv1 "github.com/basaltplatform/basalt/gen/go/basalt/blog/v1"
	identityv1 "github.com/basaltplatform/basalt/gen/go/basalt/identity/v1"
)

// grpcGoClient calls the gateway as a Go team that uses grpc-go would: the grpc-go stubs of
// gen/go on a grpc.NewClient connection with insecure credentials (HTTP/2 without TLS), the
// access token in the metadata, and the errors' details read with status.FromError.
func grpcGoClient(t *testing.T, p *platform) {
	conn, err := grpc.NewClient(strings.TrimPrefix(p.url("gateway"), "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	// The scenario has its own client address, so its own rate-limit buckets.
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-forwarded-for", nextClientIP())
	auth := authv1.NewAuthServiceClient(conn)
	identity := identityv1.NewIdentityServiceClient(conn)
	blog := blogv1.NewBlogServiceClient(conn)

	// Public methods need no token.
	reg, err := auth.Register(ctx, &authv1.RegisterRequest{Email: "grpc-go@example.com", Password: "a grpc-go password", DisplayName: "Gopher"})
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	var header metadata.MD
	login, err := auth.Login(ctx, &authv1.LoginRequest{Email: "grpc-go@example.com", Password: "a grpc-go password"}, grpc.Header(&header))
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	if len(header.Get("x-request-id")) == 0 {
		t.Error("no x-request-id in Login's response metadata")
	}

	// Authenticated methods take the token as the authorization metadata.
	authed := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+login.GetTokens().GetAccessToken())
	me, err := identity.GetCurrentUser(authed, &identityv1.GetCurrentUserRequest{})
	if err != nil || me.GetUser().GetId() != reg.GetUser().GetId() {
		t.Fatalf("GetCurrentUser with the token = %v, %v; want user %s", me, err, reg.GetUser().GetId())
	}
	if _, err := identity.GetCurrentUser(ctx, &identityv1.GetCurrentUserRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("GetCurrentUser without a token = %v, want Unauthenticated", err)
	}

	// An invalid post: InvalidArgument with a BadRequest naming the field.
	_, err = blog.CreatePost(authed, &blogv1.CreatePostRequest{Body: "a post without a title"})
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.InvalidArgument {
		t.Fatalf("CreatePost without a title = %v, want InvalidArgument", err)
	}
	var fields []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	if !slices.Contains(fields, "title") {
		t.Fatalf("the error's BadRequest names %v (details %v), want title", fields, st.Details())
	}

	// A client without the error details' Go types (grpcurl, buf curl) decodes them with the
	// descriptors the gateway's reflection gives.
	if got := decodeWithReflection(t, conn, st.Proto().GetDetails()); !slices.Contains(got, "title") {
		t.Fatalf("decoded through reflection, the BadRequest names %v, want title", got)
	}
}

// decodeWithReflection decodes the BadRequest among details with the descriptor of
// google.rpc.BadRequest that server reflection returns, and returns the fields it names.
func decodeWithReflection(t *testing.T, conn *grpc.ClientConn, details []*anypb.Any) []string {
	t.Helper()
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stream.CloseSend() }()
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "google.rpc.BadRequest"},
	}); err != nil {
		t.Fatal(err)
	}
	res, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if e := res.GetErrorResponse(); e != nil {
		t.Fatalf("reflection for google.rpc.BadRequest: %s", e.GetErrorMessage())
	}
	set := &descriptorpb.FileDescriptorSet{}
	for _, b := range res.GetFileDescriptorResponse().GetFileDescriptorProto() {
		fd := &descriptorpb.FileDescriptorProto{}
		if err := proto.Unmarshal(b, fd); err != nil {
			t.Fatal(err)
		}
		set.File = append(set.File, fd)
	}
	files, err := protodesc.NewFiles(set)
	if err != nil {
		t.Fatalf("the files reflection returned: %v", err)
	}
	desc, err := files.FindDescriptorByName("google.rpc.BadRequest")
	if err != nil {
		t.Fatal(err)
	}
	md := desc.(protoreflect.MessageDescriptor)
	var fields []string
	for _, d := range details {
		if d.GetTypeUrl() != "type.googleapis.com/"+string(md.FullName()) {
			continue
		}
		msg := dynamicpb.NewMessage(md)
		if err := proto.Unmarshal(d.GetValue(), msg); err != nil {
			t.Fatal(err)
		}
		violations := msg.Get(md.Fields().ByName("field_violations")).List()
		for i := range violations.Len() {
			v := violations.Get(i).Message()
			fields = append(fields, v.Get(v.Descriptor().Fields().ByName("field")).String())
		}
	}
	return fields
}
