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
		pub, _ := kp.PublicKey()
		fmt.Fprintln(e.stdout, pub)
		return exitOK
	}
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		fmt.Fprintf(e.stderr, "generate xkey: %v\n", err)
		return exitFailure
	}
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
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

func runGet(ctx context.Context, e *env, args []string) int {
	fs := flag.NewFlagSet("get", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	field := fs.String("field", "", "member of a JSON-object secret to return")
	version := fs.String("version", "", "Infisical version of the secret (positive integer)")
	var policy multiFlag
	fs.Var(&policy, "policy", "policy property k=v, as a wadm secret policy would send (repeatable)")
	application := fs.String("application", "", "application name the host would send (the wadm manifest name)")
	entityJWT := fs.String("entity-jwt", "", "entity JWT to send (default: a throwaway component JWT)")
	hostJWT := fs.String("host-jwt", "", "host JWT to send (default: a throwaway self-signed host JWT)")
	issuerSeed := fs.String("issuer-seed", "", "account seed (SA...) or a file holding one, to sign the throwaway entity JWT so TRUSTED_ISSUERS can admit it")
	name := fs.String("name", "infisical-secrets-get", "wascap name of the throwaway entity JWT")
	asJSON := fs.Bool("json", false, "print the decoded reply as JSON")
	out := fs.String("out", "", "write the value, raw, to this file instead of stdout")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait, like the host's 10 s")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "Usage: infisical-secrets-provider get KEY [flags]")
		fmt.Fprintln(e.stderr, "\nAsks a running backend for KEY exactly as a wasmCloud host would (server_xkey, then a sealed get).")
		fmt.Fprintln(e.stderr, "Uses NATS_URL, NATS_CREDS, NATS_TLS_CA, NATS_SUBJECT_PREFIX and BACKEND_NAME. The value goes to stdout")
		fmt.Fprintln(e.stderr, "(binary values as hex unless --out); errors print the wire variant and the host's wording.")
		fs.PrintDefaults()
	}
	key, rest := splitFirstArg(args)
	if err := fs.Parse(rest); err != nil {
		return flagExit(err)
	}
	extra := fs.Args()
	if key == "" && len(extra) > 0 {
		key, extra = extra[0], extra[1:]
	}
	if key == "" {
		fmt.Fprintln(e.stderr, "get needs a KEY")
		fs.Usage()
		return exitUsage
	}
	if len(extra) > 0 {
		fmt.Fprintf(e.stderr, "get takes one KEY, got also %q (flags go before or after KEY)\n", extra)
		return exitUsage
	}
	props := map[string]string{}
	for _, p := range policy {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			fmt.Fprintf(e.stderr, "--policy %q is not k=v\n", p)
			return exitUsage
		}
		props[k] = v
	}
	policyJSON, _ := json.Marshal(map[string]any{"type": "properties.secret.wasmcloud.dev/v1alpha1", "properties": props})

	now := time.Now()
	if *entityJWT == "" {
		issuer, err := loadIssuer(*issuerSeed)
		if err != nil {
			fmt.Fprintf(e.stderr, "--issuer-seed: %v\n", err)
			return exitUsage
		}
		sub, err := wascap.NewPublicKey(wascap.PrefixModule)
		if err == nil {
			*entityJWT, err = wascap.MintComponent(issuer, sub, *name, now)
		}
		if err != nil {
			fmt.Fprintf(e.stderr, "mint entity JWT: %v\n", err)
			return exitFailure
		}
	}
	if *hostJWT == "" {
		hostIssuer, _ := nkeys.CreateAccount()
		hostKey, _ := nkeys.CreateServer()
		hostID, _ := hostKey.PublicKey()
		var err error
		if *hostJWT, err = wascap.MintHost(hostIssuer, hostID, "infisical-secrets-get", now); err != nil {
			fmt.Fprintf(e.stderr, "mint host JWT: %v\n", err)
			return exitFailure
		}
	}
	req := &secrets.Request{Key: key, Context: secrets.RequestContext{
		EntityJWT: *entityJWT, HostJWT: *hostJWT,
		Application: &secrets.Application{Policy: string(policyJSON)},
	}}
	if *field != "" {
		req.Field = field
	}
	if *version != "" {
		req.Version = version
	}
	if *application != "" {
		req.Context.Application.Name = application
	}

	url := setting(e, "NATS_URL")
	opts := []nats.Option{nats.Name("infisical-secrets-provider get"), nats.Timeout(5 * time.Second)}
	opts = append(opts, natsFileOptions(setting(e, "NATS_CREDS"), setting(e, "NATS_TLS_CA"))...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		fmt.Fprintf(e.stderr, "NATS Connection Failed: Failed to connect to NATS at %s: %v\n"+
			"fix: verify a NATS server runs at NATS_URL and is reachable from here; check NATS_CREDS and NATS_TLS_CA\n", settings.RedactURLs(url), err)
		return exitFailure
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	prefix, backendName := setting(e, "NATS_SUBJECT_PREFIX"), setting(e, "BACKEND_NAME")
	client := secrets.NewClient(nc, prefix, backendName)
	if _, err := client.ServerXKey(ctx); err != nil {
		// err already reads "failed to fetch server xkey: ...", the host's own words.
		fmt.Fprintf(e.stderr, "%v\nhost would say: failed to create secrets client (nothing answers %s.%s.%s.server_xkey)\n"+
			"fix: start the backend on this NATS account, and make BACKEND_NAME and NATS_SUBJECT_PREFIX match the backend's and the policy's `backend`\n",
			err, prefix, secrets.DefaultAPIVersion, backendName)
		return exitFailure
	}
	sec, err := client.Get(ctx, req)
	if err != nil {
		var werr *secrets.Error
		if errors.As(err, &werr) {
			if *asJSON {
				_ = json.NewEncoder(e.stdout).Encode(secrets.Response{Error: werr})
			}
			fmt.Fprintf(e.stderr, "error variant: %s\nhost would say: Unable to fetch requested secrets: server error: %s\n", werr.Kind, werr.Error())
			if hint := variantHints[werr.Kind]; hint != "" {
				fmt.Fprintf(e.stderr, "cause: %s\n", hint)
			}
			return exitFailure
		}
		fmt.Fprintf(e.stderr, "get failed: %v\n", err)
		return exitFailure
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		if err := enc.Encode(secrets.Response{Secret: sec}); err != nil {
			fmt.Fprintf(e.stderr, "encode reply: %v\n", err)
			return exitFailure
		}
		return exitOK
	}
	var value []byte
	binary := false
	switch {
	case sec.StringSecret != nil:
		value = []byte(*sec.StringSecret)
	case sec.BinarySecret != nil:
		value, binary = sec.BinarySecret, true
	default:
		fmt.Fprintf(e.stderr, "secret %s did not contain a value\n", key)
		return exitFailure
	}
	if *out != "" {
		if err := writePrivate(*out, value); err != nil {
			fmt.Fprintf(e.stderr, "write %s: %v\n", *out, err)
			return exitFailure
		}
		fmt.Fprintf(e.stderr, "wrote %d bytes (version %s) to %s\n", len(value), sec.Version, *out)
		return exitOK
	}
	if binary {
		fmt.Fprintln(e.stdout, hex.EncodeToString(value))
	} else {
		fmt.Fprintln(e.stdout, string(value))
	}
	return exitOK
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
	if pub, _ := kp.PublicKey(); !strings.HasPrefix(pub, "A") {
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
