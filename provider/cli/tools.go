package cli

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/files"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/secrets"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/settings"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/wascap"
)

func runXKey(_ context.Context, e *env, args []string) int {
	fs := flag.NewFlagSet("xkey", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	public := fs.String("public", "", "print the public key of this seed (SX...) instead of generating one")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "Usage: infisical-secrets-provider xkey [--public SEED]")
		fmt.Fprintln(e.stderr, "\nGenerates a server xkey seed for SERVER_XKEY_SEED (seed on stdout, public key on stderr),")
		fmt.Fprintln(e.stderr, "or with --public prints the public key (X...) that server_xkey will answer for a seed.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "xkey takes no arguments, got %q (to print a seed's public key: xkey --public SEED)\n", fs.Args())
		return exitUsage
	}
	if *public != "" {
		kp, err := nkeys.FromCurveSeed([]byte(strings.TrimSpace(*public)))
		if err != nil {
			fmt.Fprintf(e.stderr, "not a curve seed (SX...): %v\n", err)
			return exitFailure
		}
		pub, err := kp.PublicKey()
		if err != nil {
			fmt.Fprintf(e.stderr, "public key of the seed: %v\n", err)
			return exitFailure
		}
		fmt.Fprintln(e.stdout, pub)
		return exitOK
	}
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		fmt.Fprintf(e.stderr, "generate xkey: %v\n", err)
		return exitFailure
	}
	seed, err := kp.Seed()
	if err != nil {
		fmt.Fprintf(e.stderr, "generate xkey: %v\n", err)
		return exitFailure
	}
	pub, err := kp.PublicKey()
	if err != nil {
		fmt.Fprintf(e.stderr, "generate xkey: %v\n", err)
		return exitFailure
	}
	fmt.Fprintln(e.stdout, string(seed))
	fmt.Fprintf(e.stderr, "public key: %s\nSet SERVER_XKEY_SEED to the seed above (keep it secret; give every replica the same one).\n", pub)
	return exitOK
}

func flagExit(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	return exitUsage
}

// multiFlag collects a repeatable flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// setting reads one setting from the environment with its documented default, for tools that need only a few.
func setting(e *env, name string) string {
	if v, ok := e.lookupEnv(name); ok && v != "" {
		return v
	}
	for _, sp := range settings.Specs() {
		if sp.Name == name {
			return sp.Default
		}
	}
	return ""
}

// getOptions are get's flags and its KEY.
type getOptions struct {
	key, field, version, application string
	props                            map[string]string // --policy k=v
	entityJWT, hostJWT, issuerSeed   string
	name                             string // wascap name of the throwaway entity JWT
	asJSON                           bool
	out                              string
	timeout                          time.Duration
}

// toolError ends a tool with its exit code and what to print on stderr ("" when that was printed already; for
// --help, whose exit code is exitOK, flag printed the help).
type toolError struct {
	code int
	msg  string
}

func (e *toolError) Error() string { return e.msg }

func usageError(format string, a ...any) error {
	return &toolError{code: exitUsage, msg: fmt.Sprintf(format, a...)}
}

func failure(format string, a ...any) error {
	return &toolError{code: exitFailure, msg: fmt.Sprintf(format, a...)}
}

// exitCode prints err on stderr and returns the exit code it calls for (exitOK for nil).
func exitCode(e *env, err error) int {
	if err == nil {
		return exitOK
	}
	te, ok := errors.AsType[*toolError](err)
	if !ok {
		te = &toolError{code: exitFailure, msg: err.Error()}
	}
	if te.msg != "" {
		fmt.Fprintln(e.stderr, te.msg)
	}
	return te.code
}

func runGet(ctx context.Context, e *env, args []string) int {
	return exitCode(e, get(ctx, e, args))
}

// get asks a running backend for one key exactly as a host would, and prints what it answered.
func get(ctx context.Context, e *env, args []string) error {
	o, err := parseGetArgs(e, args)
	if err != nil {
		return err
	}
	req, err := o.request(time.Now())
	if err != nil {
		return err
	}
	nc, err := connectAsTool(e)
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	sec, err := askBackend(ctx, e, nc, req, o.asJSON)
	if err != nil {
		return err
	}
	return o.print(e, sec)
}

// parseGetArgs reads get's KEY and flags; --help and flag errors come back as a toolError with nothing left to print.
func parseGetArgs(e *env, args []string) (*getOptions, error) {
	fs := flag.NewFlagSet("get", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	o := &getOptions{props: map[string]string{}}
	fs.StringVar(&o.field, "field", "", "member of a JSON-object secret to return")
	fs.StringVar(&o.version, "version", "", "Infisical version of the secret (positive integer)")
	var policy multiFlag
	fs.Var(&policy, "policy", "policy property k=v, as a wadm secret policy would send (repeatable)")
	fs.StringVar(&o.application, "application", "", "application name the host would send (the wadm manifest name)")
	fs.StringVar(&o.entityJWT, "entity-jwt", "", "entity JWT to send (default: a throwaway component JWT)")
	fs.StringVar(&o.hostJWT, "host-jwt", "", "host JWT to send (default: a throwaway self-signed host JWT)")
	fs.StringVar(&o.issuerSeed, "issuer-seed", "", "account seed (SA...) or a file holding one, to sign the throwaway entity JWT so TRUSTED_ISSUERS can admit it")
	fs.StringVar(&o.name, "name", "infisical-secrets-get", "wascap name of the throwaway entity JWT")
	fs.BoolVar(&o.asJSON, "json", false, "print the decoded reply as JSON")
	fs.StringVar(&o.out, "out", "", "write the value, raw, to this file instead of stdout")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "how long to wait, like the host's 10 s")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "Usage: infisical-secrets-provider get KEY [flags]")
		fmt.Fprintln(e.stderr, "\nAsks a running backend for KEY exactly as a wasmCloud host would (server_xkey, then a sealed get).")
		fmt.Fprintln(e.stderr, "Uses NATS_URL, NATS_CREDS, NATS_TLS_CA, NATS_SUBJECT_PREFIX and BACKEND_NAME. The value goes to stdout")
		fmt.Fprintln(e.stderr, "(binary values as hex unless --out); errors print the wire variant and the host's wording.")
		fs.PrintDefaults()
	}
	key, rest := splitFirstArg(args)
	if err := fs.Parse(rest); err != nil {
		return nil, &toolError{code: flagExit(err)} // flag printed the problem, or the help
	}
	extra := fs.Args()
	if key == "" && len(extra) > 0 {
		key, extra = extra[0], extra[1:]
	}
	if key == "" {
		fmt.Fprintln(e.stderr, "get needs a KEY")
		fs.Usage()
		return nil, &toolError{code: exitUsage}
	}
	if len(extra) > 0 {
		return nil, usageError("get takes one KEY, got also %q (flags go before or after KEY)", extra)
	}
	o.key = key
	for _, p := range policy {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, usageError("--policy %q is not k=v", p)
		}
		o.props[k] = v
	}
	return o, nil
}

// request builds the get a host would send, with throwaway JWTs where none were given.
func (o *getOptions) request(now time.Time) (*secrets.Request, error) {
	policy, err := json.Marshal(map[string]any{"type": "properties.secret.wasmcloud.dev/v1alpha1", "properties": o.props})
	if err != nil {
		return nil, failure("encode the policy: %v", err)
	}
	entityJWT, hostJWT := o.entityJWT, o.hostJWT
	if entityJWT == "" {
		if entityJWT, err = o.throwawayEntityJWT(now); err != nil {
			return nil, err
		}
	}
	if hostJWT == "" {
		if hostJWT, err = throwawayHostJWT(now); err != nil {
			return nil, failure("mint host JWT: %v", err)
		}
	}
	req := &secrets.Request{Key: o.key, Context: secrets.RequestContext{
		EntityJWT: entityJWT, HostJWT: hostJWT,
		Application: &secrets.Application{Policy: string(policy)},
	}}
	if o.field != "" {
		req.Field = &o.field
	}
	if o.version != "" {
		req.Version = &o.version
	}
	if o.application != "" {
		req.Context.Application.Name = &o.application
	}
	return req, nil
}

// throwawayEntityJWT mints a component JWT signed by --issuer-seed's account, or by a new one.
func (o *getOptions) throwawayEntityJWT(now time.Time) (string, error) {
	issuer, err := loadIssuer(o.issuerSeed)
	if err != nil {
		return "", usageError("--issuer-seed: %v", err)
	}
	sub, err := wascap.NewPublicKey(wascap.PrefixModule)
	if err != nil {
		return "", failure("mint entity JWT: %v", err)
	}
	jwt, err := wascap.MintComponent(issuer, sub, o.name, now)
	if err != nil {
		return "", failure("mint entity JWT: %v", err)
	}
	return jwt, nil
}

// throwawayHostJWT mints a host JWT for a new host key, signed by a new account.
func throwawayHostJWT(now time.Time) (string, error) {
	issuer, err := nkeys.CreateAccount()
	if err != nil {
		return "", err
	}
	host, err := nkeys.CreateServer()
	if err != nil {
		return "", err
	}
	hostID, err := host.PublicKey()
	if err != nil {
		return "", err
	}
	return wascap.MintHost(issuer, hostID, "infisical-secrets-get", now)
}

// connectAsTool connects to NATS with NATS_URL, NATS_CREDS and NATS_TLS_CA from the environment.
func connectAsTool(e *env) (*nats.Conn, error) {
	url := setting(e, "NATS_URL")
	opts := []nats.Option{nats.Name("infisical-secrets-provider get"), nats.Timeout(5 * time.Second)}
	opts = append(opts, natsFileOptions(setting(e, "NATS_CREDS"), setting(e, "NATS_TLS_CA"))...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, failure("NATS Connection Failed: Failed to connect to NATS at %s: %v\n"+
			"fix: verify a NATS server runs at NATS_URL and is reachable from here; check NATS_CREDS and NATS_TLS_CA",
			settings.RedactURLs(url), err)
	}
	return nc, nil
}

// askBackend sends req as a host does (server_xkey, then a sealed get). A wire error is explained on stderr as the
// host would show it, and with --json also printed as the reply on stdout.
func askBackend(ctx context.Context, e *env, nc *nats.Conn, req *secrets.Request, asJSON bool) (*secrets.Secret, error) {
	prefix, backendName := setting(e, "NATS_SUBJECT_PREFIX"), setting(e, "BACKEND_NAME")
	client := secrets.NewClient(nc, prefix, backendName)
	if _, err := client.ServerXKey(ctx); err != nil {
		// err already reads "failed to fetch server xkey: ...", the host's own words.
		return nil, failure("%v\nhost would say: failed to create secrets client (nothing answers %s.%s.%s.server_xkey)\n"+
			"fix: start the backend on this NATS account, and make BACKEND_NAME and NATS_SUBJECT_PREFIX match the backend's and the policy's `backend`",
			err, prefix, secrets.DefaultAPIVersion, backendName)
	}
	sec, err := client.Get(ctx, req)
	var werr *secrets.Error
	switch {
	case errors.As(err, &werr):
		return nil, wireFailure(e, werr, asJSON)
	case err != nil:
		return nil, failure("get failed: %v", err)
	}
	return sec, nil
}

// wireFailure explains a wire error the backend answered: its variant, what the host would say and the usual cause.
func wireFailure(e *env, werr *secrets.Error, asJSON bool) error {
	if asJSON {
		if err := json.NewEncoder(e.stdout).Encode(secrets.Response{Error: werr}); err != nil {
			return failure("print the error reply: %v", err)
		}
	}
	msg := fmt.Sprintf("error variant: %s\nhost would say: Unable to fetch requested secrets: server error: %s", werr.Kind, werr.Error())
	if hint := variantHints[werr.Kind]; hint != "" {
		msg += "\ncause: " + hint
	}
	return failure("%s", msg)
}

// print writes the secret: the reply as JSON, the raw value to --out, or the value on stdout (binary as hex).
func (o *getOptions) print(e *env, sec *secrets.Secret) error {
	if o.asJSON {
		if err := json.NewEncoder(e.stdout).Encode(secrets.Response{Secret: sec}); err != nil {
			return failure("encode reply: %v", err)
		}
		return nil
	}
	var value []byte
	binary := false
	switch {
	case sec.StringSecret != nil:
		value = []byte(*sec.StringSecret)
	case sec.BinarySecret != nil:
		value, binary = sec.BinarySecret, true
	default:
		return failure("secret %s did not contain a value", o.key)
	}
	if o.out != "" {
		if err := writePrivate(o.out, value); err != nil {
			return failure("write %s: %v", o.out, err)
		}
		fmt.Fprintf(e.stderr, "wrote %d bytes (version %s) to %s\n", len(value), sec.Version, o.out)
		return nil
	}
	text := string(value)
	if binary {
		text = hex.EncodeToString(value)
	}
	if _, err := fmt.Fprintln(e.stdout, text); err != nil {
		return failure("write the value to stdout: %v", err)
	}
	return nil
}

// splitFirstArg lets the key come before the flags (`get KEY --field x`), as the usage line shows.
func splitFirstArg(args []string) (string, []string) {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return args[0], args[1:]
	}
	return "", args
}

// loadIssuer returns the account that signs the throwaway entity JWT: a new one, or the seed given inline or in a
// file. Errors never quote the seed.
func loadIssuer(v string) (nkeys.KeyPair, error) {
	if v == "" {
		return nkeys.CreateAccount()
	}
	seed := strings.TrimSpace(v)
	if _, err := nkeys.FromSeed([]byte(seed)); err != nil {
		b, rerr := files.Read(v)
		if rerr != nil {
			if strings.HasPrefix(seed, "S") {
				return nil, fmt.Errorf("not an nkey seed: %w", err)
			}
			return nil, fmt.Errorf("neither an account seed (SA...) nor a readable file: %w", rerr)
		}
		seed = strings.TrimSpace(string(b))
	}
	kp, err := nkeys.FromSeed([]byte(seed))
	if err != nil {
		return nil, fmt.Errorf("not an nkey seed: %w", err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("public key of the seed: %w", err)
	}
	if !strings.HasPrefix(pub, "A") {
		return nil, errors.New("not an account seed (SA...)")
	}
	return kp, nil
}

// variantHints name the usual cause of each error variant, as the troubleshooting table of docs/operations.md does.
var variantHints = map[secrets.ErrorKind]string{
	secrets.KindSecretNotFound:   "no such secret, folder, version or field in that project and environment (confirm with `check --secret KEY`)",
	secrets.KindUnauthorized:     "the entity's issuer is not in TRUSTED_ISSUERS, or no ACCESS_RULES rule matches the secret, a reference it expands or the folder it is imported from (the backend logs the reason at WARN; sign with --issuer-seed)",
	secrets.KindInvalidEntityJWT: "the entity JWT is malformed, badly signed, expired or not yet valid (confirm with `check --entity-jwt JWT`; check the clock)",
	secrets.KindInvalidHostJWT:   "the host JWT is malformed, badly signed, expired or not yet valid",
	secrets.KindUpstreamError:    "Infisical failed or refused the backend and nothing usable was cached (confirm with `check`)",
	secrets.KindPolicyError:      "a secret policy property has a bad value, or moves the read where POLICY_OVERRIDES does not allow; the message names it",
	secrets.KindInvalidRequest:   "the key is empty or holds ':' or a control character, the version is not a positive integer, or the operation is unknown",
	secrets.KindDecryptionError:  "the backend could not open the request: hosts and replicas disagree on the server xkey (set one SERVER_XKEY_SEED everywhere)",
	secrets.KindEncryptionError:  "the backend could not seal its reply to the request's xkey",
	secrets.KindInvalidXKey:      "the request's WasmCloud-Host-Xkey header is not a curve public key",
	secrets.KindInvalidPayload:   "the backend could not decode the request",
	secrets.KindInvalidHeaders:   "the request lacks the WasmCloud-Host-Xkey header",
}

// writePrivate writes a secret value readable by its owner only, also when the file already exists. It refuses to
// write through a symbolic link: one planted at name would send the value wherever it points.
func writePrivate(name string, value []byte) (err error) {
	if fi, err := os.Lstat(name); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		return fmt.Errorf("%s is a symbolic link; not writing a secret through it (remove it, or name the file itself)", name)
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|oNoFollow, 0o600)
	if err != nil {
		if fi, lerr := os.Lstat(name); lerr == nil && fi.Mode()&os.ModeSymlink != 0 {
			return fmt.Errorf("%s became a symbolic link; not writing a secret through it", name)
		}
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("restrict permissions: %w", err)
	}
	_, err = f.Write(value)
	return err
}
