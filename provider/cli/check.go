package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/backend"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/infisical"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/settings"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/wascap"
)

// checklist prints one line per check and remembers whether any failed.
type checklist struct {
	w      io.Writer
	failed bool
}

func (c *checklist) ok(format string, a ...any) {
	fmt.Fprintf(c.w, "[ok]   %s\n", fmt.Sprintf(format, a...))
}

func (c *checklist) fail(what, fix string) {
	c.failed = true
	fmt.Fprintf(c.w, "[FAIL] %s\n       fix: %s\n", what, fix)
}

func (c *checklist) warn(what, fix string) {
	fmt.Fprintf(c.w, "[warn] %s\n       fix: %s\n", what, fix)
}

func runCheck(ctx context.Context, e *env, args []string) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	secretKey := fs.String("secret", "", "also read this secret (NAME, folder/NAME or /folder/NAME) from Infisical")
	entityJWT := fs.String("entity-jwt", "", "also validate this component or provider JWT (as the backend would)")
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
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c := &checklist{w: e.stdout}

	s, err := settings.Load(e)
	if err != nil {
		var serr *settings.Error
		if errors.As(err, &serr) {
			for _, p := range serr.Problems {
				c.fail(fmt.Sprintf("setting %s: %s", p.Setting, p.Message), "set "+p.Setting+" as described above (see `infisical-secrets-provider settings`)")
			}
		} else {
			c.fail("settings: "+err.Error(), "fix the settings named above")
		}
		return exitFailure
	}
	c.ok("settings are valid (Infisical %s, project %s, environment %s)", s.Infisical.BaseURL, s.Infisical.ProjectID, s.Infisical.Environment)

	if len(s.TrustedIssuers) == 0 {
		c.warn("TRUSTED_ISSUERS is not set: every get will be answered Unauthorized",
			"set TRUSTED_ISSUERS to the account keys (A...) that sign your components and providers (wash inspect), or *")
	} else {
		c.ok("trusted issuers: %v", s.TrustedIssuers)
	}
	var serverPub string
	if s.ServerXKeySeed == "" {
		c.warn("SERVER_XKEY_SEED is not set: a new key on every start breaks hosts that cached the old one",
			"generate one with `infisical-secrets-provider xkey` and set SERVER_XKEY_SEED")
	} else if kp, err := nkeys.FromCurveSeed([]byte(s.ServerXKeySeed)); err == nil {
		serverPub, _ = kp.PublicKey()
		c.ok("server xkey %s", serverPub)
	}

	checkNATS(ctx, c, s, serverPub)
	checkInfisical(ctx, c, s, *secretKey)
	if *entityJWT != "" {
		if claims, err := wascap.ParseEntity(*entityJWT, time.Now()); err != nil {
			c.fail("JWT validation failed: "+err.Error(),
				"check the system clock and that the component or provider was signed (wash build / wash inspect) and has not expired")
		} else {
			c.ok("entity JWT valid: %s %q (subject %s, issuer %s)", claims.Kind, claims.Name, claims.Subject, claims.Issuer)
		}
	}
	if c.failed {
		return exitFailure
	}
	fmt.Fprintln(e.stdout, "all checks passed")
	return exitOK
}

func checkNATS(ctx context.Context, c *checklist, s *settings.Settings, serverPub string) {
	nc, err := nats.Connect(s.NATSURL, natsOptions(slog.New(slog.DiscardHandler), s)...)
	if err != nil {
		c.fail(fmt.Sprintf("NATS connection failed (%s): %v", s.NATSURL, err),
			"verify a NATS server runs at NATS_URL and is reachable; check NATS_CREDS and NATS_TLS_CA")
		return
	}
	defer nc.Close()
	c.ok("connected to NATS at %s", nc.ConnectedUrlRedacted())
	subject := fmt.Sprintf("%s.%s.%s.server_xkey", s.SubjectPrefix, s.APIVersion, s.BackendName)
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	msg, err := nc.RequestWithContext(rctx, subject, nil)
	switch {
	case err != nil:
		c.ok("no backend answers %s yet (fine before the first start)", subject)
	case serverPub != "" && string(msg.Data) != serverPub:
		c.fail(fmt.Sprintf("a backend already answers %s with xkey %s, not this SERVER_XKEY_SEED's %s", subject, msg.Data, serverPub),
			"give every replica the same SERVER_XKEY_SEED, or use another BACKEND_NAME")
	default:
		c.ok("a backend answers %s with xkey %s", subject, msg.Data)
	}
}

func checkInfisical(ctx context.Context, c *checklist, s *settings.Settings, key string) {
	client, err := infisical.New(backend.InfisicalConfig(s.Infisical, s.UpstreamTimeout, slog.New(slog.DiscardHandler)))
	if err != nil {
		c.fail("Infisical client: "+err.Error(), "fix the Infisical settings named above")
		return
	}
	defer client.Close()
	if err := client.Login(ctx); err != nil {
		c.fail("Failed to authenticate with Infisical: "+err.Error(),
			"verify INFISICAL_CLIENT_ID and INFISICAL_CLIENT_SECRET (or the settings of INFISICAL_AUTH_METHOD), INFISICAL_BASE_URL, and that the identity has access to the project")
		return
	}
	c.ok("logged in to Infisical at %s", s.Infisical.BaseURL)
	if key == "" {
		return
	}
	ref, err := backend.ResolveRef(s.Infisical, key)
	if err != nil {
		c.fail(fmt.Sprintf("secret key %q: %v", key, err), "use NAME, folder/NAME or /folder/NAME")
		return
	}
	sec, err := client.GetSecret(ctx, ref)
	switch {
	case errors.Is(err, infisical.ErrNotFound):
		c.fail(fmt.Sprintf("Secret '%s' not found in project %s, environment %s, folder %s", ref.Name, ref.ProjectID, ref.Environment, ref.Path),
			"verify the secret exists in that project, environment and folder, and check the spelling")
	case err != nil:
		c.fail("reading the secret failed: "+err.Error(), "check that the identity may read this project and environment")
	default:
		c.ok("read secret %s%s (version %d, %d bytes; value not shown)", ref.Path, "/"+ref.Name, sec.Version, len(sec.Value))
	}
}
