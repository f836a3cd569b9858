package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path"
	"time"

	natsjwt "github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/access"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/backend"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/files"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/infisical"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/secrets"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/settings"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/wascap"
)

// The failure names of the original service's troubleshooting guide, kept so operators can search for them.
const (
	caseAuthentication = "Authentication Failed"
	caseNotFound       = "Secret Not Found"
	caseNATS           = "NATS Connection Failed"
	caseJWT            = "JWT Validation Failed"
	caseSetting        = "Invalid Setting"
	caseUnauthorized   = "Unauthorized"
	caseXKey           = "Server XKey Mismatch"
	caseInfisical      = "Infisical Read Failed"
)

// checklist prints one line per check and counts the failures.
type checklist struct {
	w        io.Writer
	failures int
}

func (c *checklist) ok(format string, a ...any) {
	fmt.Fprintf(c.w, "[ok]   %s\n", fmt.Sprintf(format, a...))
}

// fail prints a failed check as "[FAIL] <case>: <what>" and the fix on the next line.
func (c *checklist) fail(kase, what, fix string) {
	c.failures++
	fmt.Fprintf(c.w, "[FAIL] %s: %s\n       fix: %s\n", kase, what, fix)
}

func (c *checklist) warn(what, fix string) {
	fmt.Fprintf(c.w, "[warn] %s\n       fix: %s\n", what, fix)
}

func runCheck(ctx context.Context, e *env, args []string) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	secretKey := fs.String("secret", "", "also read this secret (NAME, folder/NAME or /folder/NAME) from Infisical; the value is never printed")
	entityJWT := fs.String("entity-jwt", "", "also validate this component or provider JWT as the backend would, and whether TRUSTED_ISSUERS admits its issuer")
	timeout := fs.Duration("timeout", 15*time.Second, "overall time limit")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "Usage: infisical-secrets-provider check [--secret KEY] [--entity-jwt JWT]")
		fmt.Fprintln(e.stderr, "\nValidates every setting (from the environment, as `serve` reads them), connects to NATS, logs in")
		fmt.Fprintln(e.stderr, "to Infisical and optionally reads one secret, printing a checklist with what to fix. Exit 1 on any failure.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "check takes no arguments, got %q (did you mean --secret %s?)\n", fs.Args(), fs.Arg(0))
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c := &checklist{w: e.stdout}

	if s := checkSettings(c, e); s != nil {
		serverPub := checkKeys(c, s)
		checkNATS(ctx, c, s, serverPub)
		checkInfisical(ctx, c, s, *secretKey)
		if *entityJWT != "" {
			checkEntityJWT(c, s, *entityJWT)
		}
	}
	if c.failures > 0 {
		fmt.Fprintf(e.stdout, "%d check(s) failed\n", c.failures)
		return exitFailure
	}
	fmt.Fprintln(e.stdout, "all checks passed")
	return exitOK
}

// checkSettings loads the settings as serve does and lists every problem; nil means nothing else can be checked.
func checkSettings(c *checklist, e *env) *settings.Settings {
	s, err := settings.Load(e)
	if err != nil {
		var serr *settings.Error
		if !errors.As(err, &serr) {
			c.fail(caseSetting, err.Error(), "fix the settings named above")
			return nil
		}
		for _, p := range serr.Problems {
			c.fail(caseSetting, p.Setting+": "+p.Message,
				"set "+p.Setting+" as described (`infisical-secrets-provider settings` lists every setting and its default)")
		}
		return nil
	}
	if _, err := access.New(s.TrustedIssuers, s.AccessRules); err != nil {
		// access.New's error starts with the setting's name.
		c.fail(caseSetting, err.Error(), "fix TRUSTED_ISSUERS or ACCESS_RULES as described in docs/security.md")
		return nil
	}
	c.ok("settings are valid (Infisical %s, project %s, environment %s)", s.Infisical.BaseURL, s.Infisical.ProjectID, s.Infisical.Environment)
	return s
}

// checkKeys reports whom the backend trusts and its server xkey, returning the public xkey ("" when generated).
func checkKeys(c *checklist, s *settings.Settings) string {
	if len(s.TrustedIssuers) == 0 {
		c.warn("TRUSTED_ISSUERS is not set: every get will be answered Unauthorized",
			"set TRUSTED_ISSUERS to the account keys (A...) that sign your components and providers (wash inspect), or *")
	} else {
		c.ok("trusted issuers: %v", s.TrustedIssuers)
	}
	if s.ServerXKeySeed == "" {
		c.warn("SERVER_XKEY_SEED is not set: a new key on every start breaks hosts that cached the old one",
			"generate one with `infisical-secrets-provider xkey` and set SERVER_XKEY_SEED")
		return ""
	}
	kp, err := nkeys.FromCurveSeed([]byte(s.ServerXKeySeed))
	if err != nil {
		// settings.Load checks the seed already; this only guards against the two disagreeing.
		c.fail(caseSetting, "SERVER_XKEY_SEED is not a curve seed (SX...)", "generate one with `infisical-secrets-provider xkey`")
		return ""
	}
	pub, err := kp.PublicKey()
	if err != nil {
		c.fail(caseSetting, "SERVER_XKEY_SEED has no public key: "+err.Error(), "generate one with `infisical-secrets-provider xkey`")
		return ""
	}
	c.ok("server xkey %s", pub)
	return pub
}

func checkNATS(ctx context.Context, c *checklist, s *settings.Settings, serverPub string) {
	if s.NATSCreds != "" {
		checkNATSCreds(c, s.NATSCreds, time.Now())
	}
	nc, err := nats.Connect(s.NATSURL, natsOptions(slog.New(slog.DiscardHandler), s)...)
	if err != nil {
		c.fail(caseNATS, fmt.Sprintf("Failed to connect to NATS at %s: %v", settings.RedactURLs(s.NATSURL), err),
			"verify a NATS server runs at NATS_URL and is reachable from here; check NATS_CREDS and NATS_TLS_CA")
		return
	}
	defer nc.Close()
	c.ok("connected to NATS at %s", nc.ConnectedUrlRedacted())
	subject := secrets.NewSubjects(s.SubjectPrefix, s.APIVersion, s.BackendName).ServerXKey()
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	msg, err := nc.RequestWithContext(rctx, subject, nil)
	switch {
	case err != nil:
		c.ok("no backend answers %s yet (fine before the first start)", subject)
	case serverPub != "" && string(msg.Data) != serverPub:
		c.fail(caseXKey, fmt.Sprintf("a backend already answers %s with xkey %s, not this SERVER_XKEY_SEED's %s", subject, msg.Data, serverPub),
			"give every replica the same SERVER_XKEY_SEED, or use another BACKEND_NAME")
	default:
		c.ok("a backend answers %s with xkey %s", subject, msg.Data)
	}
}

// checkNATSCreds reads a .creds file the way the NATS client will, so that an expired or malformed one is named as
// such rather than as an opaque authorization failure from the server.
func checkNATSCreds(c *checklist, path string, now time.Time) {
	const fix = "point NATS_CREDS at a current .creds file for the NATS account the hosts' control connection uses (nsc generate creds)"
	raw, err := files.Read(path)
	if err != nil {
		c.fail(caseNATS, "NATS_CREDS cannot be read: "+err.Error(), fix)
		return
	}
	token, err := natsjwt.ParseDecoratedJWT(raw)
	if err == nil {
		_, err = natsjwt.ParseDecoratedUserNKey(raw) // checks the seed is there; it is never printed
	}
	if err != nil {
		c.fail(caseNATS, "NATS_CREDS is not a NATS credentials file (a user JWT and seed): "+err.Error(), fix)
		return
	}
	claims, err := natsjwt.DecodeUserClaims(token)
	if err != nil {
		c.fail(caseNATS, "NATS_CREDS holds no valid user JWT: "+err.Error(), fix)
		return
	}
	if claims.Expires > 0 && now.Unix() > claims.Expires {
		c.fail(caseNATS, fmt.Sprintf("NATS_CREDS user %q expired at %s", claims.Name, time.Unix(claims.Expires, 0).UTC().Format(time.RFC3339)), fix)
		return
	}
	account := claims.IssuerAccount // set when a signing key issued the user
	if account == "" {
		account = claims.Issuer
	}
	c.ok("NATS credentials for user %q (%s) of account %s", claims.Name, claims.Subject, account)
}

func checkInfisical(ctx context.Context, c *checklist, s *settings.Settings, key string) {
	client, err := backend.NewClient(s.Infisical, s.UpstreamTimeout, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		c.fail(caseAuthentication, "cannot set up the Infisical client: "+err.Error(),
			"fix the INFISICAL_* settings named above")
		return
	}
	defer client.Close()
	if err := client.Login(ctx); err != nil {
		c.fail(caseAuthentication, fmt.Sprintf("Failed to authenticate with Infisical at %s: %v", s.Infisical.BaseURL, err),
			"verify INFISICAL_CLIENT_ID and INFISICAL_CLIENT_SECRET (or the settings of INFISICAL_AUTH_METHOD) and INFISICAL_BASE_URL, "+
				"and that the identity has access to project INFISICAL_PROJECT_ID")
		return
	}
	c.ok("logged in to Infisical at %s", s.Infisical.BaseURL)
	if key == "" {
		return
	}
	ref, err := backend.ResolveRef(s.Infisical, key)
	if err != nil {
		c.fail(caseNotFound, fmt.Sprintf("secret key %q: %v", key, err), "use NAME, folder/NAME or /folder/NAME")
		return
	}
	full := path.Join(ref.Path, ref.Name)
	sec, err := client.GetSecret(ctx, ref)
	switch {
	case errors.Is(err, infisical.ErrNotFound):
		c.fail(caseNotFound, fmt.Sprintf("Secret '%s' not found in project %s, environment %s, folder %s", ref.Name, ref.ProjectID, ref.Environment, ref.Path),
			"verify the secret exists in that project, environment (INFISICAL_ENVIRONMENT) and folder (INFISICAL_SECRET_PATH), and check the spelling")
	case err != nil:
		c.fail(caseInfisical, fmt.Sprintf("reading secret %s failed: %v", full, err),
			"check that the identity may read this project and environment, and that Infisical is reachable")
	default:
		c.ok("read secret %s (version %d; value not shown)", full, sec.Version)
	}
}

// checkEntityJWT verifies a component or provider JWT as the backend does, and whether its issuer is trusted.
func checkEntityJWT(c *checklist, s *settings.Settings, tok string) {
	claims, err := wascap.ParseEntity(tok, time.Now())
	if err != nil {
		c.fail(caseJWT, err.Error(),
			"check the system clock, and that the component or provider is signed (wash build) and not expired (wash inspect shows its dates)")
		return
	}
	c.ok("entity JWT valid: %s %q (subject %s, issuer %s)", claims.Kind, claims.Name, claims.Subject, claims.Issuer)
	trust, err := access.New(s.TrustedIssuers, "")
	if err != nil {
		return // checkSettings reported it
	}
	if ok, reason := trust.Check(access.Subject{Issuer: claims.Issuer}); !ok {
		c.fail(caseUnauthorized, reason, fmt.Sprintf("add %s to TRUSTED_ISSUERS if it may read secrets", claims.Issuer))
	}
}
