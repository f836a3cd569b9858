package infisical

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	sdk "github.com/infisical/go-sdk"
)

// ErrNotFound is wrapped by every error that means "no such secret": a missing secret, version, folder or
// environment. Test with errors.Is.
var ErrNotFound = errors.New("secret not found in Infisical")

// ErrorKind sorts upstream failures by what the caller can do about them.
type ErrorKind int

// The kinds of *Error. The zero value is not used.
const (
	KindAuth        ErrorKind = iota + 1 // logging in failed or the token was refused: fix the credentials
	KindPermission                       // the identity may not read this: fix its project access
	KindRateLimited                      // Infisical asked us to slow down
	KindUnavailable                      // network trouble, 5xx, or too many calls still in flight
	KindTLS                              // the server certificate is not trusted
	KindBadRequest                       // Infisical (or we) rejected the request as malformed
	KindTimeout                          // no answer within the deadline
)

func (k ErrorKind) String() string {
	switch k {
	case KindAuth:
		return "auth"
	case KindPermission:
		return "permission"
	case KindRateLimited:
		return "rate-limited"
	case KindUnavailable:
		return "unavailable"
	case KindTLS:
		return "tls"
	case KindBadRequest:
		return "bad-request"
	case KindTimeout:
		return "timeout"
	default:
		return "unknown"
	}
}

// Error is an upstream failure. Its text says what failed, with Infisical's own message and request id; it never
// holds a token or a secret value.
type Error struct {
	Kind       ErrorKind
	Status     int           // HTTP status, 0 when no response arrived
	RequestID  string        // Infisical's reqId, for its support and logs
	Message    string        // Infisical's message, or what went wrong on the way
	RetryAfter time.Duration // when Infisical named a wait (429), or how long logins are paused
	Err        error         // the cause (e.g. the SDK's *APIError, context.DeadlineExceeded)
}

func (e *Error) Error() string {
	var b strings.Builder
	switch e.Kind {
	case KindAuth:
		b.WriteString("authentication to Infisical failed")
	case KindPermission:
		b.WriteString("Infisical denied access")
	case KindRateLimited:
		b.WriteString("Infisical is rate limiting requests")
	case KindUnavailable:
		b.WriteString("Infisical is unavailable")
	case KindTLS:
		b.WriteString("certificate problem on the TLS connection to Infisical")
	case KindBadRequest:
		b.WriteString("Infisical rejected the request")
	case KindTimeout:
		b.WriteString("Infisical did not answer in time")
	default:
		b.WriteString("Infisical call failed")
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	var details []string
	if e.Status != 0 {
		details = append(details, "HTTP "+strconv.Itoa(e.Status))
	}
	if e.RequestID != "" {
		details = append(details, "reqId "+e.RequestID)
	}
	if e.RetryAfter > 0 {
		details = append(details, "retry in "+e.RetryAfter.Round(time.Second).String())
	}
	if len(details) > 0 {
		b.WriteString(" (" + strings.Join(details, ", ") + ")")
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// tokenRejected reports whether Infisical refused the access token itself (expired, revoked, foreign), which a new
// login cures, as opposed to refusing the identity's permissions.
func (e *Error) tokenRejected() bool {
	var ae *sdk.APIError
	if !errors.As(e.Err, &ae) {
		return false
	}
	switch ae.StatusCode {
	case http.StatusUnauthorized:
		return true
	case http.StatusForbidden:
		// The SDK drops the body's "error" name, so TokenError is told apart from PermissionDenied by its messages
		// ("Your token has expired...", "invalid signature", "jwt malformed", "...access token is malformed").
		m := strings.ToLower(ae.ErrorMessage)
		for _, w := range []string{"token", "re-authenticate", "signature", "jwt"} {
			if strings.Contains(m, w) {
				return true
			}
		}
	}
	return false
}

// retryable reports whether another attempt may succeed without anyone changing anything: a 5xx or a network
// error (not a full in-flight bound, which a retry would only make fuller).
func (e *Error) retryable() bool {
	var re *sdk.RequestError
	return e.Kind == KindUnavailable && (e.Status >= 500 || errors.As(e.Err, &re))
}

// IsFinal reports whether err proves that a value read before may no longer be served, even stale: the secret is
// gone (ErrNotFound), the identity lost access to it (KindPermission), or Infisical rejects the credentials
// (KindAuth: a failed login, or a token refused again after the one re-login). Only Infisical's own answer proves
// that (an HTTP status with its request id): a token file that cannot be read, a cloud metadata endpoint that does
// not answer, or a proxy's 401 is an outage of ours, during which cached values should still be served. Outages,
// timeouts and rate limits are not final.
func IsFinal(err error) bool {
	if errors.Is(err, ErrNotFound) {
		return true
	}
	e, ok := asError(err)
	return ok && (e.Kind == KindPermission || e.Kind == KindAuth) && e.Status != 0 && e.RequestID != ""
}

var (
	errBusy        = errors.New("too many Infisical calls in flight")
	tryAgainInSecs = regexp.MustCompile(`(?i)try again in (\d+) second`)
	// Infisical's own not-found messages: "Secret with name 'X' not found", "Folder with path '/a' in environment
	// with slug 'dev' not found", "Environment with slug 'qa' not found", "Secret version not found", ...
	infisicalNotFound = regexp.MustCompile(`(?i)^(secret|folder|environment|project|workspace|version)\b.*\bnot found\b`)
	// Infisical's answer for an API path it does not serve: a wrong base URL or an old Infisical.
	routeNotFound = regexp.MustCompile(`^Route \S+ not found`)
)

// op says which SDK call an error came from, because a plain (non-HTTP) error means different things for each.
type op int

const (
	opRead op = iota
	opLogin
)

// classify turns an SDK error into an *Error, or an error wrapping ErrNotFound for a 404 on a read. Its hints name
// configuration with names.
func classify(err error, o op, names namer) error {
	var ae *sdk.APIError
	if errors.As(err, &ae) {
		return classifyAPI(ae, o, names)
	}
	var re *sdk.RequestError
	if errors.As(err, &re) {
		msg := re.Error()
		// The SDK keeps only the text of the transport's errors. These two are not retried: the same server would
		// send the same answer again.
		if strings.Contains(msg, ErrTooLarge.Error()) {
			return &Error{Kind: KindUnavailable, Message: ErrTooLarge.Error(), Err: ErrTooLarge}
		}
		if strings.Contains(msg, errEncoded.Error()) {
			return &Error{Kind: KindUnavailable, Message: errEncoded.Error() + " " + names.notInfisical(), Err: errEncoded}
		}
		if strings.Contains(msg, "x509:") || strings.Contains(msg, "certificate") {
			return &Error{Kind: KindTLS, Err: err,
				Message: msg + "; if Infisical uses a private CA, set " + names.of(FieldCACert) + " to its certificate"}
		}
		return &Error{Kind: KindUnavailable, Message: msg, Err: err}
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	if o == opLogin {
		// Reading a token file, fetching cloud credentials or a metadata token: the login could not even be sent.
		return &Error{Kind: KindAuth, Message: err.Error(), Err: err}
	}
	return &Error{Kind: KindBadRequest, Message: err.Error(), Err: err}
}

func classifyAPI(ae *sdk.APIError, o op, names namer) error {
	msg := ae.ErrorMessage
	if msg == "" {
		msg = http.StatusText(ae.StatusCode)
	}
	e := &Error{Status: ae.StatusCode, RequestID: ae.ReqId, Message: msg, Err: ae}
	switch {
	case ae.StatusCode == http.StatusNotFound && o == opRead && secretNotFound(ae):
		if ae.ReqId != "" {
			return fmt.Errorf("%w: %s (reqId %s)", ErrNotFound, msg, ae.ReqId)
		}
		return fmt.Errorf("%w: %s", ErrNotFound, msg)
	case ae.StatusCode == http.StatusNotFound && o == opRead:
		// A 404 that is not Infisical's "no such secret" (a load balancer's default backend, a proxy path mistake)
		// says nothing about the secret: an outage, not a reason to forget a cached value.
		e.Kind = KindUnavailable
		e.Message = msg + "; the answer did not come from Infisical's secret lookup " + names.notInfisical()
	case ae.StatusCode == http.StatusUnauthorized:
		e.Kind = KindAuth
	case ae.StatusCode == http.StatusForbidden:
		e.Kind = KindPermission
		if e.tokenRejected() || o == opLogin {
			e.Kind = KindAuth
		}
	case ae.StatusCode == http.StatusTooManyRequests:
		e.Kind = KindRateLimited
		if m := tryAgainInSecs.FindStringSubmatch(msg); m != nil {
			if n, err := strconv.Atoi(m[1]); err == nil {
				e.RetryAfter = time.Duration(n) * time.Second
			}
		}
	case ae.StatusCode >= 500:
		e.Kind = KindUnavailable
	case o == opLogin:
		e.Kind = KindAuth // e.g. 400/404/422 on a login: the identity or its auth method is misconfigured
	default:
		e.Kind = KindBadRequest
	}
	return e
}

// secretNotFound reports whether a 404 is Infisical saying the secret, version, folder or environment does not
// exist. Infisical puts a reqId in every error body; a proxy's or load balancer's 404 has none.
func secretNotFound(ae *sdk.APIError) bool {
	if routeNotFound.MatchString(ae.ErrorMessage) {
		return false
	}
	return ae.ReqId != "" || infisicalNotFound.MatchString(ae.ErrorMessage)
}

// asError returns err's *Error, if any.
func asError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
