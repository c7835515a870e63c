// Package index answers permission checks from memory: the roles and bindings of the authz
// service's database, loaded whole and swapped atomically on every change, so a check costs a
// few map lookups and no database round trip.
//
// Matching rules. A granted permission matches a requested one when it is "*", when it is
// equal, or when it ends in ".*" and the requested permission starts with what comes before
// the star ("blog.*" grants "blog.posts.create"; "blog.posts.*" grants "blog.posts.delete").
// A binding without a resource applies everywhere; a binding on a resource applies to checks
// on that resource and on anything below it ("blog" covers "blog/post/123"); a check without
// a resource counts only bindings that apply everywhere.
package index

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
)

// Binding is a role held by a subject, everywhere (Resource "") or on one resource.
type Binding struct {
	Role     string
	Resource string
}

// Snapshot is the index's content at one revision.
type Snapshot struct {
	Revision int64
	// Roles maps role names to the permissions they grant.
	Roles map[string][]string
	// Subjects maps subjects to their bindings.
	Subjects map[string][]Binding
}

// Index holds the current snapshot.
type Index struct {
	snap atomic.Pointer[Snapshot]
}

// New returns an empty index at revision 0.
func New() *Index {
	ix := &Index{}
	ix.snap.Store(&Snapshot{Roles: map[string][]string{}, Subjects: map[string][]Binding{}})
	return ix
}

// Replace swaps in s unless the index already holds a later revision, and reports whether it
// did: loads racing each other can never move the index backwards.
func (ix *Index) Replace(s *Snapshot) bool {
	for {
		cur := ix.snap.Load()
		if cur.Revision > s.Revision {
			return false
		}
		if ix.snap.CompareAndSwap(cur, s) {
			return true
		}
	}
}

// Revision returns the revision the index reflects.
func (ix *Index) Revision() int64 { return ix.snap.Load().Revision }

// Check reports whether subject holds permission on resource ("" for everywhere).
func (ix *Index) Check(subject, permission, resource string) bool {
	s := ix.snap.Load()
	for _, b := range s.Subjects[subject] {
		if !covers(b.Resource, resource) {
			continue
		}
		for _, granted := range s.Roles[b.Role] {
			if Matches(granted, permission) {
				return true
			}
		}
	}
	return false
}

// Allowed is Check with the kernel's Checker signature, so the authz service checks its own
// methods' permissions against its index.
func (ix *Index) Allowed(_ context.Context, subject, permission, resource string) (bool, error) {
	return ix.Check(subject, permission, resource), nil
}

// Grant is one effective permission of a subject.
type Grant struct {
	Permission string
	Resource   string
	Role       string
}

// Grants lists what subject's bindings grant, sorted by permission, resource and role.
func (ix *Index) Grants(subject string) []Grant {
	s := ix.snap.Load()
	var out []Grant
	for _, b := range s.Subjects[subject] {
		for _, p := range s.Roles[b.Role] {
			out = append(out, Grant{Permission: p, Resource: b.Resource, Role: b.Role})
		}
	}
	slices.SortFunc(out, func(a, b Grant) int {
		if c := strings.Compare(a.Permission, b.Permission); c != 0 {
			return c
		}
		if c := strings.Compare(a.Resource, b.Resource); c != 0 {
			return c
		}
		return strings.Compare(a.Role, b.Role)
	})
	return out
}

// Matches reports whether a granted permission (possibly a wildcard) grants a requested one.
func Matches(granted, requested string) bool {
	switch {
	case granted == "*" || granted == requested:
		return true
	case strings.HasSuffix(granted, ".*"):
		return strings.HasPrefix(requested, granted[:len(granted)-1])
	}
	return false
}

// covers reports whether a binding on bound applies to a check on resource.
func covers(bound, resource string) bool {
	switch {
	case bound == "":
		return true
	case resource == "":
		return false
	}
	return resource == bound || strings.HasPrefix(resource, bound+"/")
}

var (
	segment        = `[a-z][a-z0-9_-]{0,62}`
	grantedPattern = regexp.MustCompile(`^(\*|` + segment + `\.\*|` + segment + `\.` + segment + `\.\*|` + segment + `\.` + segment + `\.` + segment + `)$`)
	checkedPattern = regexp.MustCompile(`^` + segment + `\.` + segment + `\.` + segment + `$`)
)

// ValidGrant reports whether p can be granted: "*", "svc.*", "svc.res.*" or "svc.res.verb".
func ValidGrant(p string) bool { return grantedPattern.MatchString(p) }

// ValidCheck reports whether p can be checked: "svc.res.verb", without wildcards.
func ValidCheck(p string) bool { return checkedPattern.MatchString(p) }
