package fakeinfisical

import (
	"testing"

	infisical "github.com/infisical/go-sdk"
)

func TestIssueToken(t *testing.T) {
	t.Parallel()
	srv := New(t)
	srv.SetSecret("p1", "dev", "/", "K", "v")
	srv.AddMethodIdentity(MethodJWT, "id-jwt", "", "p1")
	token := srv.IssueToken("id-jwt")

	c := newSDK(t, srv.URL, "")
	c.Auth().SetAccessToken(token)
	opts := infisical.RetrieveSecretOptions{SecretKey: "K", ProjectID: "p1", Environment: "dev"}
	if got, err := c.Secrets().Retrieve(opts); err != nil || got.SecretValue != "v" {
		t.Fatalf("Retrieve with an issued token: %+v, %v", got, err)
	}
	if n := srv.Logins(); n != 0 {
		t.Fatalf("IssueToken made %d logins; want 0", n)
	}
	reqs := srv.Requests()
	if last := reqs[len(reqs)-1]; last.Identity != "id-jwt" {
		t.Fatalf("the read came from identity %q; want id-jwt", last.Identity)
	}

	srv.ExpireTokens()
	_, err := c.Secrets().Retrieve(opts)
	if ae := apiError(t, err); ae.StatusCode != 403 || ae.ErrorMessage != MsgTokenExpired {
		t.Fatalf("after ExpireTokens: %d %q; want 403 %q", ae.StatusCode, ae.ErrorMessage, MsgTokenExpired)
	}
}
