package gateway

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"connectrpc.com/connect"
	"connectrpc.com/vanguard"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/basaltplatform/basalt/gateway/internal/proxy"
	"github.com/basaltplatform/basalt/gateway/internal/routes"
)

// REST errors. Every error a REST client gets is google.rpc.Status in JSON, as grpc-gateway and
// Google's APIs answer: {"code": 3, "message": "...", "details": [{"@type":
// "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [...]}]}, with
// Content-Type application/json and the HTTP status of the code. The transcoder (vanguard)
// writes most of them, in three ways (its codec's JSON, text for the HTTP errors of its
// routing, and a fixed text when its codec cannot encode the details); restWriter holds back
// whatever error it writes and writeRESTError writes the answer, the one place that does.

// statusResolver resolves the types of the details of the statuses restWriter holds back:
// the google.rpc error details, which this package links in (invalidParameter makes
// BadRequest details itself) and so registers, and the contracts' types. The transcoder's codec
// resolves through the same registry (vanguard's resolver falls back to it for Any).
var statusResolver = protoregistry.GlobalTypes

// marshalStatus appends st as JSON, as google.rpc.Status is written by protojson but for
// "details", which is there when empty too, and its details' unset fields, which are left out.
// A detail whose type res does not know is left out, since it cannot be written as JSON: an
// answer without it beats no answer.
func marshalStatus(b []byte, st *status.Status, res vanguard.TypeResolver) []byte {
	b = strconv.AppendInt(append(b, `{"code":`...), int64(st.GetCode()), 10)
	msg, _ := json.Marshal(st.GetMessage())
	b = append(append(append(b, `,"message":`...), msg...), `,"details":[`...)
	out := bytes.NewBuffer(b)
	first := true
	for _, d := range st.GetDetails() {
		detail, err := protojson.MarshalOptions{Resolver: res}.Marshal(d)
		if err != nil {
			continue
		}
		if !first {
			out.WriteByte(',')
		}
		// protojson varies its whitespace; an answer is the same for the same error.
		_ = json.Compact(out, detail)
		first = false
	}
	out.WriteString("]}")
	return out.Bytes()
}

// restJSON is vanguard's JSON codec, REST's, with two changes: a body that does not decode is
// the client's mistake, so it is invalid_argument (HTTP 400) rather than the unknown error
// (HTTP 500) vanguard reports for codec failures, and its message names neither a Go nor a
// proto type; and an error status is always encoded (see marshalStatus), where vanguard's
// codec fails for a detail of a type it cannot resolve and vanguard then answers with a fixed
// internal error.
type restJSON struct {
	*vanguard.JSONCodec
	res vanguard.TypeResolver
}

var _ vanguard.RESTCodec = restJSON{}

func newRESTJSON(res vanguard.TypeResolver) vanguard.Codec {
	return restJSON{vanguard.NewJSONCodec(res), res}
}

func (c restJSON) MarshalAppend(b []byte, msg proto.Message) ([]byte, error) {
	if st, ok := msg.(*status.Status); ok {
		return marshalStatus(b, st, c.res), nil
	}
	return c.JSONCodec.MarshalAppend(b, msg)
}

func (c restJSON) Unmarshal(data []byte, msg proto.Message) error {
	return invalidBody(c.JSONCodec.Unmarshal(data, msg))
}

func (c restJSON) UnmarshalField(data []byte, msg proto.Message, field protoreflect.FieldDescriptor) error {
	return invalidBody(c.JSONCodec.UnmarshalField(data, msg, field))
}

func invalidBody(err error) error {
	if err == nil {
		return nil
	}
	var cerr *connect.Error
	if errors.As(err, &cerr) {
		return err
	}
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("the request body is not valid: %s", decodeErrorText(err)))
}

// decodeErrorText is the text of a protobuf decoding error without protobuf-go's "proto:"
// prefix, which says nothing to a client. protobuf-go separates it from the text by a space or
// a no-break space, at random, so that no one compares error texts; both are taken off.
func decodeErrorText(err error) string {
	s := err.Error()
	if rest, ok := strings.CutPrefix(s, "proto:"); ok {
		return strings.TrimLeft(rest, " \u00a0")
	}
	return s
}

// restProto is the codec of the calls the transcoder makes upstream (binary protobuf). The
// message it encodes holds what the client sent in the path, the query and the body, so a
// message that does not encode is the client's mistake: a path or query value that is not
// UTF-8 in a string field, which JSON cannot carry but a URL can. That is invalid_argument
// naming the field, where vanguard's own codec gives an internal error. It is not a
// vanguard.StableCodec, so the transcoder always posts the call upstream instead of moving the
// message into a Connect GET's URL: the request is then decoded while the gateway reads the
// body it forwards, after the gateway has checked the call (restCheck), and never before.
type restProto struct{ res vanguard.TypeResolver }

func newRESTProto(res vanguard.TypeResolver) vanguard.Codec { return restProto{res} }

func (restProto) Name() string { return vanguard.CodecProto }

func (restProto) MarshalAppend(b []byte, msg proto.Message) ([]byte, error) {
	out, err := proto.MarshalOptions{}.MarshalAppend(b, msg)
	if err != nil {
		return nil, unencodable(msg, err)
	}
	return out, nil
}

func (c restProto) Unmarshal(data []byte, msg proto.Message) error {
	return proto.UnmarshalOptions{Resolver: c.res}.Unmarshal(data, msg)
}

// unencodable is the error of a request message that did not encode: invalid_argument naming
// the first string field that is not UTF-8, or, if none is, saying what protobuf said.
func unencodable(msg proto.Message, err error) error {
	field := invalidUTF8(msg.ProtoReflect(), "")
	if field == "" {
		return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("the request cannot be encoded: %s", decodeErrorText(err)))
	}
	return invalidParameter(field, "is not valid UTF-8")
}

// invalidUTF8 returns the path of the first string field of m, at any depth, that holds a
// value that is not UTF-8 ("post.title", "tags[2]"), or "" when there is none.
func invalidUTF8(m protoreflect.Message, prefix string) string {
	found := ""
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name := prefix + string(fd.Name())
		switch {
		case fd.IsList():
			l := v.List()
			for i := range l.Len() {
				if found = invalidValue(fd, l.Get(i), fmt.Sprintf("%s[%d]", name, i)); found != "" {
					return false
				}
			}
		case fd.IsMap():
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				if !utf8.ValidString(k.String()) {
					found = name
				} else {
					found = invalidValue(fd.MapValue(), mv, fmt.Sprintf("%s[%q]", name, k.String()))
				}
				return found == ""
			})
		default:
			found = invalidValue(fd, v, name)
		}
		return found == ""
	})
	return found
}

func invalidValue(fd protoreflect.FieldDescriptor, v protoreflect.Value, name string) string {
	switch fd.Kind() {
	case protoreflect.StringKind:
		if !utf8.ValidString(v.String()) {
			return name
		}
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return invalidUTF8(v.Message(), name+".")
	}
	return ""
}

// invalidParameter is invalid_argument for one parameter of a REST request, with the
// violation as a BadRequest detail, as the services report invalid fields.
func invalidParameter(field, description string) error {
	err := connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("%s: %s", field, description))
	if d, derr := connect.NewErrorDetail(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
		{Field: field, Description: description},
	}}); derr == nil {
		err.AddDetail(d)
	}
	return err
}

// restRequest is what the gateway keeps of a REST request before the transcoder rewrites it
// into the Connect call it forwards.
type restRequest struct {
	// query is the request's query as it came.
	query string
	// body says whether the request has a body.
	body bool
}

// bodyless reports, by route index, the methods whose REST bindings take no body.
func bodyless(table *routes.Table) []bool {
	out := make([]bool, len(table.Routes()))
	for _, r := range table.Routes() {
		if r.Method == nil {
			continue
		}
		rule, _ := proto.GetExtension(r.Method.Options(), annotations.E_Http).(*annotations.HttpRule)
		if rule == nil {
			continue
		}
		out[r.Index] = rule.GetBody() == ""
		for _, b := range rule.GetAdditionalBindings() {
			out[r.Index] = out[r.Index] && b.GetBody() == ""
		}
	}
	return out
}

// restCheck refuses what the transcoder would refuse with an error that names no parameter,
// names the request's proto type or quotes the value (which would then reach the access log):
// a body for a method whose binding takes none; a query that is not escaped properly; a query
// parameter that names no field of the method's request, or one the query cannot set; and a
// value its field cannot take. The path's values are strings, whose UTF-8 restProto checks.
func (g *Gateway) restCheck(route *routes.Route, req restRequest) error {
	if req.body && g.bodyless[route.Index] {
		return connect.NewError(connect.CodeInvalidArgument, errors.New("this method takes no request body"))
	}
	if req.query == "" {
		return nil
	}
	values, err := url.ParseQuery(req.query)
	if err != nil {
		return connect.NewError(connect.CodeInvalidArgument, errors.New("the query is not properly escaped (RFC 3986)"))
	}
	for _, key := range slices.Sorted(maps.Keys(values)) {
		fd, why := queryField(route.Method.Input(), key)
		for _, v := range values[key] {
			if why != "" {
				break
			}
			why = queryValue(fd, v)
		}
		if why != "" {
			return invalidParameter(key, why)
		}
	}
	return nil
}

// queryField returns the field the query parameter key sets in a message of md, or says why it
// cannot, by the rules the transcoder follows: a path of fields, each by JSON or proto name,
// through singular messages, to a field that is not a map and, when a message, one of the
// well-known types written as a JSON scalar (Timestamp, Duration, FieldMask, the wrappers).
func queryField(md protoreflect.MessageDescriptor, key string) (protoreflect.FieldDescriptor, string) {
	parts := strings.Split(key, ".")
	for i, part := range parts {
		fd := md.Fields().ByJSONName(part)
		if fd == nil {
			fd = md.Fields().ByName(protoreflect.Name(part))
		}
		if fd == nil {
			return nil, "is not a parameter of this method"
		}
		if i == len(parts)-1 {
			if fd.IsMap() || fd.Message() != nil && !scalarWellKnown(fd.Message()) {
				return nil, "cannot be set in the query"
			}
			return fd, ""
		}
		if fd.IsList() || fd.IsMap() || fd.Message() == nil {
			return nil, "is not a parameter of this method: " + part + " has no fields"
		}
		md = fd.Message()
	}
	return nil, "is not a parameter of this method"
}

// queryValue says why v cannot be a value of fd, as the transcoder decodes query values, or
// returns "". The reason never quotes the value.
func queryValue(fd protoreflect.FieldDescriptor, v string) string {
	if !utf8.ValidString(v) {
		return "is not valid UTF-8"
	}
	switch fd.Kind() {
	case protoreflect.BoolKind:
		if v != "true" && v != "false" {
			return "must be true or false"
		}
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return integer(strconv.ParseInt(v, 10, 32))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return integer(strconv.ParseInt(v, 10, 64))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return integer(strconv.ParseUint(v, 10, 32))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return integer(strconv.ParseUint(v, 10, 64))
	case protoreflect.FloatKind:
		return float(v, 32)
	case protoreflect.DoubleKind:
		return float(v, 64)
	case protoreflect.BytesKind:
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
			if _, err := enc.DecodeString(v); err == nil {
				return ""
			}
		}
		return "must be base64"
	case protoreflect.EnumKind:
		values := fd.Enum().Values()
		if _, err := strconv.ParseInt(v, 10, 32); err == nil || values.ByName(protoreflect.Name(v)) != nil {
			return ""
		}
		names := make([]string, values.Len())
		for i := range values.Len() {
			names[i] = string(values.Get(i).Name())
		}
		return "must be one of " + strings.Join(names, ", ")
	case protoreflect.MessageKind:
		return wellKnownValue(fd.Message(), v)
	}
	return ""
}

func integer[T int64 | uint64](_ T, err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, strconv.ErrRange):
		return "is out of range"
	default:
		return "must be an integer"
	}
}

func float(v string, bits int) string {
	if v == "NaN" || v == "Infinity" || v == "-Infinity" {
		return ""
	}
	if _, err := strconv.ParseFloat(v, bits); err != nil {
		return "must be a number"
	}
	return ""
}

// wellKnownValue says why v cannot be a value of the well-known type md, decoding it as the
// transcoder does: the JSON of a string for the types JSON writes as one, the JSON scalar
// otherwise.
func wellKnownValue(md protoreflect.MessageDescriptor, v string) string {
	switch md.Name() {
	case "DoubleValue":
		return float(v, 64)
	case "FloatValue":
		return float(v, 32)
	}
	data, what := v, "is not valid"
	switch md.Name() {
	case "Timestamp", "Duration", "BytesValue", "StringValue", "FieldMask":
		if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
			data = strconv.Quote(v)
		}
		switch md.Name() {
		case "Timestamp":
			what = "must be a time in RFC 3339 format"
		case "Duration":
			what = "must be a duration in seconds, such as 1.5s"
		case "FieldMask":
			what = "must be field names separated by commas"
		}
	}
	if protojson.Unmarshal([]byte(data), dynamicpb.NewMessage(md)) != nil {
		return what
	}
	return ""
}

// scalarWellKnown reports the well-known types that JSON writes as a scalar.
func scalarWellKnown(md protoreflect.MessageDescriptor) bool {
	if md.ParentFile().Package() != "google.protobuf" {
		return false
	}
	switch md.Name() {
	case "BoolValue", "BytesValue", "DoubleValue", "Duration", "Empty", "FieldMask", "FloatValue",
		"Int32Value", "Int64Value", "StringValue", "Timestamp", "UInt32Value", "UInt64Value":
		return true
	}
	return false
}

// refusableBody is a REST request's body as the transcoder turns it into the Connect call's.
// When the transcoder cannot decode the request it answers the client itself and ends the body
// as if it were whole; this body then fails instead, so that the gateway never forwards the
// call.
type refusableBody struct {
	io.ReadCloser
	c *call
}

var errRefused = errors.New("gateway: the transcoder refused the request")

func (b refusableBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && b.c.refused {
		err = errRefused
	}
	return n, err
}

// maxErrorBody bounds the error body restWriter holds: the transcoder's are a status of a
// few hundred bytes, a service's a little more with its details.
const maxErrorBody = 64 << 10

// restWriter is the writer of a REST request's answer. It passes a successful answer through
// and holds an error back, for writeRESTError to write when the transcoder is done.
type restWriter struct {
	*responseWriter
	c *call
	// status is the status of the error held back (0: none), body what was written after it.
	status int
	body   bytes.Buffer
}

func (w *restWriter) WriteHeader(code int) {
	switch {
	case w.status != 0:
	case code >= http.StatusBadRequest:
		w.status = code
		w.c.refused = true
	default:
		w.responseWriter.WriteHeader(code)
	}
}

func (w *restWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		return w.responseWriter.Write(b)
	}
	w.body.Write(b[:min(len(b), max(maxErrorBody-w.body.Len(), 0))])
	return len(b), nil
}

// Flush flushes a successful answer; an error is written whole by finish.
func (w *restWriter) Flush() {
	if w.status == 0 {
		w.responseWriter.Flush()
	}
}

func (w *restWriter) FlushError() error {
	if w.status == 0 {
		return w.responseWriter.FlushError()
	}
	return nil
}

// finish writes the error held back, if any, as a status: the transcoder's own JSON, decoded,
// or, for the answers of its routing, which it writes as text, one made from the HTTP status.
func (w *restWriter) finish(r *http.Request) {
	if w.status == 0 {
		return
	}
	st := heldStatus(w.body.Bytes())
	if st == nil {
		st = routingStatus(w.status, w.Header().Get("Allow"), r.Method, w.body.String())
	}
	code := connect.Code(st.GetCode())
	if code == 0 {
		code = connect.CodeUnknown
		st.Code = int32(code)
	}
	// The log says why the transcoder refused a request; a service's error is the service's
	// to log, as on the other protocols.
	if !w.c.coded && w.c.cause == nil || errors.Is(w.c.cause, errRefused) {
		w.c.cause = errors.New(st.GetMessage())
	}
	w.c.code, w.c.coded = code, true
	httpStatus := restStatus(w.c, code)
	if w.status == http.StatusMethodNotAllowed || w.status == http.StatusUnsupportedMediaType {
		httpStatus = w.status
	}
	writeRESTError(w.responseWriter, httpStatus, st)
}

// heldStatus decodes the status the transcoder wrote as JSON, or returns nil when it wrote
// something else. Its details are those of the error detail types and the contracts'; a
// status with one of a type unknown here (a schema not linked in) is taken without details.
func heldStatus(body []byte) *status.Status {
	if len(body) == 0 || body[0] != '{' {
		return nil
	}
	st := &status.Status{}
	if (protojson.UnmarshalOptions{Resolver: statusResolver, DiscardUnknown: true}).Unmarshal(body, st) == nil {
		return st
	}
	var bare struct {
		Code    int32  `json:"code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &bare) != nil || bare.Code == 0 {
		return nil
	}
	return &status.Status{Code: bare.Code, Message: bare.Message}
}

// routingStatus is the status of an answer the transcoder wrote as text (what its routing
// answers, text its message): 405 for a method the path is not bound to (unimplemented, as
// grpc-gateway says it), 415 for a body that is not JSON, and the code of the HTTP status
// otherwise.
func routingStatus(httpStatus int, allow, method, text string) *status.Status {
	switch httpStatus {
	case http.StatusMethodNotAllowed:
		return &status.Status{Code: int32(connect.CodeUnimplemented), Message: fmt.Sprintf("%s is not allowed on this path; it allows %s", method, strings.ReplaceAll(allow, ",", ", "))}
	case http.StatusUnsupportedMediaType:
		return &status.Status{Code: int32(connect.CodeInvalidArgument), Message: "the request body must be JSON, sent as Content-Type: application/json"}
	}
	code := proxy.CodeOf(httpStatus, "")
	if code == 0 || code == connect.CodeUnknown {
		code = connect.CodeInternal
	}
	if text = strings.TrimSpace(text); text == "" {
		text = strings.ToLower(http.StatusText(httpStatus))
	}
	return &status.Status{Code: int32(code), Message: text}
}

// writeRESTError writes a REST error answer: st as JSON, with httpStatus. A 401 gets its
// WWW-Authenticate from the responseWriter underneath (see challengeUnauthorized).
func writeRESTError(w http.ResponseWriter, httpStatus int, st *status.Status) {
	body := marshalStatus(nil, st, statusResolver)
	h := w.Header()
	delete(h, "Content-Length")
	delete(h, "Content-Encoding")
	delete(h, "X-Content-Type-Options")
	h["Content-Type"] = jsonContentType
	w.WriteHeader(httpStatus)
	_, _ = w.Write(body)
}

var jsonContentType = []string{"application/json"}

// statusOfError is err as a google.rpc.Status, its details included.
func statusOfError(err error) *status.Status {
	st := &status.Status{Code: int32(connect.CodeOf(err)), Message: err.Error()}
	var cerr *connect.Error
	if errors.As(err, &cerr) {
		st.Message = cerr.Message()
		for _, d := range cerr.Details() {
			st.Details = append(st.Details, &anypb.Any{TypeUrl: "type.googleapis.com/" + d.Type(), Value: d.Bytes()})
		}
	}
	return st
}

// failREST answers a request the gateway takes for a REST one with err, before or without the
// transcoder, and records the outcome.
func (g *Gateway) failREST(w http.ResponseWriter, c *call, err error) {
	c.failed(err)
	writeRESTError(w, restStatus(c, connect.CodeOf(err)), statusOfError(err))
}

// restStatus is the HTTP status of a REST answer with code: the code's (proxy.StatusOf), but
// 413 rather than 429 for a request refused as too large, since resource_exhausted says both.
func restStatus(c *call, code connect.Code) int {
	if code == connect.CodeResourceExhausted && c != nil && c.tooLarge {
		return http.StatusRequestEntityTooLarge
	}
	return proxy.StatusOf(code)
}
