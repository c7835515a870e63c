package e2e_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/basaltplatform/basalt/gen/go/openapi"
)

// restRouter finds the operations of the OpenAPI document the gateway serves at /openapi.json
// (gen/go/openapi, generated from the contracts).
var restRouter = sync.OnceValues(func() (routers.Router, error) {
	doc, err := openapi3.NewLoader().LoadFromData(openapi.JSON)
	if err != nil {
		return nil, err
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, err
	}
	return gorillamux.NewRouter(doc)
})

// checkREST validates one REST exchange with the gateway against the OpenAPI document, so a
// contract and its document cannot drift apart: the route must be in the document; the
// response, error or not, must be one the document describes (errors are google.rpc.Status);
// and a request the document refuses must be refused by the gateway too (401 for missing
// credentials, 400 for anything else).
func checkREST(t *testing.T, method, url string, header http.Header, body []byte, status int, respHeader http.Header, respBody []byte) {
	t.Helper()
	router, err := restRouter()
	if err != nil {
		t.Fatalf("the OpenAPI document: %v", err)
	}
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header.Clone()
	route, params, err := router.FindRoute(req)
	if err != nil {
		t.Errorf("%s %s: the OpenAPI document has no such operation: %v", method, req.URL.Path, err)
		return
	}
	in := &openapi3filter.RequestValidationInput{
		Request:    req,
		PathParams: params,
		Route:      route,
		Options:    &openapi3filter.Options{AuthenticationFunc: bearerPresent, MultiError: true},
	}
	if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
		want := http.StatusBadRequest
		if securityOnly(err) {
			want = http.StatusUnauthorized
		}
		if status != want {
			t.Errorf("%s %s: the OpenAPI document refuses the request (%v), but the gateway answered %d, want %d", method, req.URL.Path, err, status, want)
		}
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 status,
		Header:                 respHeader,
		Body:                   io.NopCloser(bytes.NewReader(respBody)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Errorf("%s %s: the answer %d %s does not match the OpenAPI document: %v", method, req.URL.Path, status, respBody, err)
	}
}

// bearerPresent is the document's bearerAuth as a client sees it: the request carries
// Authorization: Bearer <token>. (Whether the token is good is the gateway's to say.)
func bearerPresent(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	s := in.SecurityScheme
	if s.Type != "http" || !strings.EqualFold(s.Scheme, "bearer") {
		return fmt.Errorf("unexpected security scheme %s %s", s.Type, s.Scheme)
	}
	if h := in.RequestValidationInput.Request.Header.Get("Authorization"); !strings.HasPrefix(h, "Bearer ") {
		return errors.New("no bearer token")
	}
	return nil
}

// securityOnly reports whether every error of a request's validation is a missing credential.
func securityOnly(err error) bool {
	var multi openapi3.MultiError
	if errors.As(err, &multi) {
		for _, e := range multi {
			if !securityOnly(e) {
				return false
			}
		}
		return len(multi) > 0
	}
	var sec *openapi3filter.SecurityRequirementsError
	return errors.As(err, &sec)
}
