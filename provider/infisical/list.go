package infisical

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"

	sdk "github.com/infisical/go-sdk"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// ErrNotModified is returned by ListSecrets when the folder still has the ETag given (Infisical answered 304).
var ErrNotModified = errors.New("folder not modified since its ETag")

// FolderRef names one folder to list, with the options its values are read with.
type FolderRef struct {
	ProjectID, Environment string
	Path                   string // "" = "/"
	ExpandReferences       bool
	IncludeImports         bool
}

// Listing is one folder as Infisical listed it: one call for every secret in it.
type Listing struct {
	Secrets map[string]Secret // values that may be served, by name
	// Unsure names listed secrets whose value cannot be served from the listing: Infisical hid the value, or (with
	// imports) did not say which folder it came from. Read them exactly.
	Unsure map[string]bool
	// Complete says that a name missing from Secrets and Unsure does not exist: false when Infisical hid values
	// here (an identity with partial rights may also have secrets left out of the listing) or listed nothing at all
	// (which also is what an undecodable answer looks like).
	Complete bool
	ETag     string // revalidate with it; "" when Infisical sent none
}

// ListSecrets lists a folder, sending etag as If-None-Match when it is not empty: ErrNotModified then means the
// listing the caller holds is still current. It retries like GetSecret; a missing folder or environment wraps
// ErrNotFound.
func (c *Client) ListSecrets(ctx context.Context, ref FolderRef, etag string) (Listing, error) {
	opts, err := ref.options()
	if err != nil {
		return Listing{}, err
	}
	opts.IfNoneMatch = etag
	return retrying(c, ctx, "list", func(s *session, attempt int) (Listing, error) {
		return c.list(ctx, s, opts, attempt)
	})
}

func (c *Client) list(ctx context.Context, s *session, opts sdk.ListSecretsOptions, attempt int) (Listing, error) {
	ctx, span := c.tel.tracer.Start(ctx, "infisical.list_secrets", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.Int("infisical.attempt", attempt)))
	defer span.End()

	res, callErr := call(c, ctx, routeList, func() (sdk.ListSecretsResult, error) { return s.client.Secrets().ListSecrets(opts) })
	var nm *sdk.NotModifiedError
	if errors.As(callErr, &nm) {
		span.SetAttributes(attribute.Int("http.response.status_code", 304))
		c.tel.calls.Add(ctx, 1, metric.WithAttributes(routeList.attr(), attribute.String("status", "304")))
		return Listing{}, ErrNotModified
	}
	var err error
	if callErr != nil {
		err = classify(callErr, opRead, c.names)
		if e, ok := asError(err); ok && errors.Is(e, ErrTooLarge) {
			e.Message += "; a folder this large cannot be listed, only read a secret at a time"
		}
		var ae *sdk.APIError
		if errors.As(callErr, &ae) {
			span.SetAttributes(attribute.Int("http.response.status_code", ae.StatusCode))
			if ae.ReqId != "" {
				span.SetAttributes(attribute.String("infisical.request_id", ae.ReqId))
			}
		}
	}
	if errors.Is(err, ErrPaused) {
		return Listing{}, err // not sent: nothing to record
	}
	var l Listing
	if err == nil {
		l, err = listing(res, opts, c.names)
	}
	c.record(ctx, span, routeList, err)
	if err != nil {
		return Listing{}, err
	}
	span.SetAttributes(attribute.Int("infisical.listed", len(l.Secrets)))
	return l, nil
}

// listing sorts what Infisical listed into values to serve and names to read exactly.
func listing(res sdk.ListSecretsResult, opts sdk.ListSecretsOptions, names namer) (Listing, error) {
	l := Listing{Secrets: make(map[string]Secret, len(res.Secrets)), Unsure: map[string]bool{}, ETag: res.ETag,
		Complete: len(res.Secrets) > 0}
	for _, raw := range res.Secrets {
		name := raw.SecretKey
		if name == "" {
			// The SDK decodes nothing, without an error, when a 2xx answer is not JSON (e.g. a proxy's page).
			return Listing{}, &Error{Kind: KindUnavailable, Message: "Infisical listed a secret without a name " + names.notInfisical()}
		}
		if _, seen := l.Secrets[name]; seen || l.Unsure[name] {
			continue // the SDK puts local secrets before imported ones: the first wins, as in a single read
		}
		if raw.SecretValue == hiddenValue {
			l.Unsure[name] = true
			l.Complete = false
			continue
		}
		path, env := raw.SecretPath, raw.Environment
		if !opts.IncludeImports {
			// Without imports every listed secret lives in the folder asked for.
			path, env = cmp.Or(path, opts.SecretPath), cmp.Or(env, opts.Environment)
		}
		if path == "" || env == "" {
			// An imported value whose origin Infisical did not give cannot be checked against the access rules
			// here: the exact read decides.
			l.Unsure[name] = true
			continue
		}
		l.Secrets[name] = Secret{Name: name, Value: raw.SecretValue, Path: path, Environment: env, Version: raw.Version}
	}
	return l, nil
}

func (r FolderRef) options() (sdk.ListSecretsOptions, error) {
	bad := func(msg string) (sdk.ListSecretsOptions, error) {
		return sdk.ListSecretsOptions{}, &Error{Kind: KindBadRequest, Message: msg}
	}
	switch {
	case r.ProjectID == "":
		return bad("no project id")
	case r.Environment == "":
		return bad("no environment")
	}
	path := r.Path
	if path == "" {
		path = "/"
	}
	if !strings.HasPrefix(path, "/") {
		return bad(fmt.Sprintf("secret path %q must start with '/'", path))
	}
	return sdk.ListSecretsOptions{
		ProjectID:              r.ProjectID,
		Environment:            r.Environment,
		SecretPath:             path,
		ExpandSecretReferences: r.ExpandReferences,
		IncludeImports:         r.IncludeImports,
	}, nil
}
