package infisical

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/fakeinfisical"
)

func TestListSecrets(t *testing.T) {
	t.Parallel()
	fake := newFake(t)
	fake.SetSecret(project, "dev", "/app/db", "USER", "bob")
	fake.SetSecret(project, "prod", "/shared", "IMPORTED", "from-prod")
	fake.AddImport(project, "dev", "/app/db", "prod", "/shared")
	c := newClient(t, fake.URL, nil)
	folder := FolderRef{ProjectID: project, Environment: "dev", Path: "/app/db"}

	l, err := c.ListSecrets(ctxWithin(t, 5*time.Second), folder, "")
	if err != nil {
		t.Fatalf("ListSecrets: %v", err)
	}
	want := map[string]Secret{
		"PASSWORD": {Name: "PASSWORD", Value: "new", Path: "/app/db", Environment: "dev", Version: 2},
		"USER":     {Name: "USER", Value: "bob", Path: "/app/db", Environment: "dev", Version: 1},
	}
	if len(l.Secrets) != len(want) || l.Secrets["PASSWORD"] != want["PASSWORD"] || l.Secrets["USER"] != want["USER"] {
		t.Fatalf("Secrets = %+v; want %+v", l.Secrets, want)
	}
	if !l.Complete || len(l.Unsure) != 0 || l.ETag == "" {
		t.Fatalf("Complete %v, Unsure %v, ETag %q; want a complete listing with an ETag", l.Complete, l.Unsure, l.ETag)
	}
	if fake.Lists() != 1 || fake.Reads() != 0 {
		t.Fatalf("%d lists and %d reads; want one list", fake.Lists(), fake.Reads())
	}

	// Unchanged: a 304, told apart from every other answer.
	if _, err := c.ListSecrets(ctxWithin(t, 5*time.Second), folder, l.ETag); !errors.Is(err, ErrNotModified) {
		t.Fatalf("same ETag: %v; want ErrNotModified", err)
	}
	reqs := fake.Requests()
	if last := reqs[len(reqs)-1]; last.IfNoneMatch != l.ETag || last.Status != http.StatusNotModified {
		t.Fatalf("revalidation sent If-None-Match %q and got %d; want the ETag and 304", last.IfNoneMatch, last.Status)
	}
	// Changed: a new listing with a new ETag.
	fake.SetSecret(project, "dev", "/app/db", "USER", "alice")
	l2, err := c.ListSecrets(ctxWithin(t, 5*time.Second), folder, l.ETag)
	if err != nil || l2.Secrets["USER"].Value != "alice" || l2.ETag == l.ETag {
		t.Fatalf("after a change: %+v, %v; want the new value and a new ETag", l2, err)
	}

	// Imports: an imported value says where it lives.
	folder.IncludeImports = true
	l3, err := c.ListSecrets(ctxWithin(t, 5*time.Second), folder, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := l3.Secrets["IMPORTED"]; got.Value != "from-prod" || got.Path != "/shared" || got.Environment != "prod" {
		t.Fatalf("imported secret = %+v; want its own folder and environment", got)
	}

	// A missing folder is not found, like a missing secret.
	_, err = c.ListSecrets(ctxWithin(t, 5*time.Second), FolderRef{ProjectID: project, Environment: "dev", Path: "/nope"}, "")
	if !errors.Is(err, ErrNotFound) || !IsFinal(err) {
		t.Fatalf("missing folder: %v; want ErrNotFound", err)
	}
}

// A listing that hid a value, or answered nothing, cannot prove a key absent: the caller must read exactly.
func TestListSecretsThatMayHaveHiddenSomething(t *testing.T) {
	t.Parallel()
	fake := newFake(t)
	fake.SetSecret(project, "dev", "/locked", "OPEN", "open")
	fake.SetSecret(project, "dev", "/locked", "SHUT", "shut")
	fake.HideValue(project, "dev", "/locked", "SHUT")
	fake.AddFolder(project, "dev", "/empty")
	c := newClient(t, fake.URL, nil)

	l, err := c.ListSecrets(ctxWithin(t, 5*time.Second), FolderRef{ProjectID: project, Environment: "dev", Path: "/locked"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if l.Complete || !l.Unsure["SHUT"] || l.Secrets["OPEN"].Value != "open" {
		t.Fatalf("listing with a hidden value: %+v; want OPEN served, SHUT unsure, not complete", l)
	}
	if _, ok := l.Secrets["SHUT"]; ok {
		t.Fatal("the hidden mask was listed as a value")
	}
	// An empty answer looks the same as one the SDK could not decode: never proof that a key is absent.
	l, err = c.ListSecrets(ctxWithin(t, 5*time.Second), FolderRef{ProjectID: project, Environment: "dev", Path: "/empty"}, "")
	if err != nil || l.Complete || len(l.Secrets) != 0 {
		t.Fatalf("empty folder: %+v, %v; want an incomplete, empty listing", l, err)
	}
}

func TestListSecretsRetriesAndPauses(t *testing.T) {
	t.Parallel()
	fake := newFake(t)
	c := newClient(t, fake.URL, nil)
	mustLogin(t, c)
	folder := FolderRef{ProjectID: project, Environment: "dev", Path: "/"}
	fake.FailNext(fakeinfisical.RouteListSecrets, 1, 503, "busy", nil)
	if l, err := c.ListSecrets(ctxWithin(t, 5*time.Second), folder, ""); err != nil || l.Secrets["ROOT"].Value != "root-value" {
		t.Fatalf("after a 503: %+v, %v", l, err)
	}
	if fake.Lists() != 2 {
		t.Fatalf("%d lists; want the 503 and its retry", fake.Lists())
	}
	fake.FailNext(fakeinfisical.RouteListSecrets, 1, 429, "Rate limit exceeded. Please try again in 40 seconds", nil)
	_, err := c.ListSecrets(ctxWithin(t, 2*time.Second), folder, "")
	wantKind(t, err, KindRateLimited, "try again in 40 seconds")
	_, err = c.GetSecret(ctxWithin(t, 2*time.Second), rootRef("ROOT"))
	if !errors.Is(err, ErrPaused) {
		t.Fatalf("a read after a list's 429: %v; want ErrPaused", err)
	}
	if fake.Lists() != 3 || fake.Reads() != 0 {
		t.Fatalf("%d lists and %d reads; want 3 lists and no read during the pause", fake.Lists(), fake.Reads())
	}
}
