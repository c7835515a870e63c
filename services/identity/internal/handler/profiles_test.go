package handler_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"

	identityv1 "github.com/basaltplatform/basalt/gen/go/basalt/identity/v1"
	"github.com/basaltplatform/basalt/kernel/testkit"
)

// create makes a user with a display name of one's choosing, as an administrator would.
func (e *env) create(t *testing.T, email, name string) *identityv1.User {
	t.Helper()
	res, err := e.as(t, e.admin(t)).CreateUser(context.Background(), connect.NewRequest(&identityv1.CreateUserRequest{
		Email: email, Password: "a long enough password", DisplayName: name,
	}))
	if err != nil {
		t.Fatalf("CreateUser(%s): %v", email, err)
	}
	return res.Msg.GetUser()
}

type profile struct{ id, name string }

func profilesOf(res *connect.Response[identityv1.LookupProfilesResponse]) []profile {
	var out []profile
	for _, p := range res.Msg.GetProfiles() {
		out = append(out, profile{p.GetUserId(), p.GetDisplayName()})
	}
	return out
}

// TestLookupProfilesNamesTheUsersThatExistToAnyone: anyone, with a token or without, gets the
// id and display name of each user named that exists (disabled ones too, since their posts
// stay), once, in the order first named; unknown and deleted users are absent, and a rename
// shows in the next answer.
func TestLookupProfilesNamesTheUsersThatExistToAnyone(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := context.Background()
	admin := e.as(t, e.admin(t))
	ada := e.create(t, "ada@example.com", "Ada Lovelace")
	bob := e.create(t, "bob@example.com", "Bob")
	carol := e.create(t, "carol@example.com", "Carol")
	dave := e.create(t, "dave@example.com", "Dave")
	if _, err := admin.DisableUser(ctx, connect.NewRequest(&identityv1.DisableUserRequest{UserId: carol.GetId()})); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.DeleteUser(ctx, connect.NewRequest(&identityv1.DeleteUserRequest{UserId: dave.GetId()})); err != nil {
		t.Fatal(err)
	}
	const unknown = "0193e6c4-7d43-7b5e-9f3a-3c1d2e4f5a6b"
	ids := []string{bob.GetId(), unknown, ada.GetId(), bob.GetId(), dave.GetId(), carol.GetId()}
	callers := map[string]string{"anonymous": "", "another user": e.auth.Token(t, bob.GetId())}
	for name, opts := range protocols {
		for who, token := range callers {
			t.Run(name+"/"+who, func(t *testing.T) {
				res, err := e.as(t, token, opts...).LookupProfiles(ctx, connect.NewRequest(&identityv1.LookupProfilesRequest{UserIds: ids}))
				if err != nil {
					t.Fatal(err)
				}
				want := []profile{{bob.GetId(), "Bob"}, {ada.GetId(), "Ada Lovelace"}, {carol.GetId(), "Carol"}}
				if got := profilesOf(res); !slices.Equal(got, want) {
					t.Fatalf("LookupProfiles = %v, want %v", got, want)
				}
			})
		}
	}

	// A rename shows at once: nothing stands between the call and the users table.
	adaTok := e.auth.Token(t, ada.GetId())
	for name, opts := range protocols {
		t.Run("rename/"+name, func(t *testing.T) {
			renamed := "Augusta Ada King " + name
			if _, err := e.as(t, adaTok, opts...).UpdateUser(ctx, connect.NewRequest(&identityv1.UpdateUserRequest{UserId: ada.GetId(), DisplayName: &renamed})); err != nil {
				t.Fatal(err)
			}
			res, err := e.as(t, "", opts...).LookupProfiles(ctx, connect.NewRequest(&identityv1.LookupProfilesRequest{UserIds: []string{ada.GetId()}}))
			if err != nil {
				t.Fatal(err)
			}
			if got := profilesOf(res); !slices.Equal(got, []profile{{ada.GetId(), renamed}}) {
				t.Fatalf("after the rename: %v, want %q", got, renamed)
			}
		})
	}
}

// TestLookupProfilesAnswersOnlyThePublicProfile reads the answer as bytes on the wire, so that
// a field added to Profile later (or a handler that fills the wrong one) cannot carry the
// email, the status or the times to anonymous callers.
func TestLookupProfilesAnswersOnlyThePublicProfile(t *testing.T) {
	t.Parallel()
	e := start(t)
	u := e.create(t, "grace.hopper@example.com", "Grace")
	body := fmt.Sprintf(`{"userIds":[%q]}`, u.GetId())
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, e.url+"/basalt.identity.v1.IdentityService/LookupProfiles", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := testkit.H2CClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("an anonymous LookupProfiles: HTTP %d %s", resp.StatusCode, raw)
	}
	var got map[string][]map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatalf("answer %s: %v", raw, err)
	}
	want := map[string][]map[string]any{"profiles": {{"userId": u.GetId(), "displayName": "Grace"}}}
	if fmt.Sprint(got) != fmt.Sprint(want) || strings.Contains(string(raw), "grace.hopper") {
		t.Fatalf("answer %s; want exactly the id and display name", raw)
	}
}

func TestLookupProfilesBoundsTheBatch(t *testing.T) {
	t.Parallel()
	e := start(t)
	u := e.create(t, "ada@example.com", "Ada")
	unknown := func(n int) []string {
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("0193e6c4-7d43-7b5e-9f3a-%012x", i)
		}
		return ids
	}
	tests := []struct {
		name  string
		ids   []string
		field string // "" when the call succeeds
		found int
	}{
		{"no ids", nil, "user_ids", 0},
		{"101 ids", unknown(101), "user_ids", 0},
		{"100 ids", append(unknown(99), u.GetId()), "", 1},
		{"a malformed id", []string{u.GetId(), "nope"}, "user_ids[1]", 0},
		{"an upper-case id", []string{strings.ToUpper(u.GetId())}, "user_ids[0]", 0},
	}
	for name, opts := range protocols {
		for _, tt := range tests {
			t.Run(name+"/"+tt.name, func(t *testing.T) {
				res, err := e.as(t, "", opts...).LookupProfiles(context.Background(), connect.NewRequest(&identityv1.LookupProfilesRequest{UserIds: tt.ids}))
				if tt.field == "" {
					if err != nil || len(res.Msg.GetProfiles()) != tt.found {
						t.Fatalf("LookupProfiles = %v, %v; want %d profiles", res, err, tt.found)
					}
					return
				}
				if connect.CodeOf(err) != connect.CodeInvalidArgument || fieldViolation(err) != tt.field {
					t.Fatalf("got %v (field %q), want invalid_argument on %s", err, fieldViolation(err), tt.field)
				}
			})
		}
	}
}
