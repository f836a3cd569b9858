package infisical

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"time"
	"unsafe"

	"github.com/go-resty/resty/v2"
	sdk "github.com/infisical/go-sdk"
)

// Bounds on every exchange with an Infisical server. The base URL may be a tenant's own server, so these hold
// against a hostile one too.
const (
	// MaxResponseBytes bounds the body of one answer, after decompression. A secret's value is sent to a host in a
	// reply of at most 1 MiB, so a larger answer holds nothing servable but a big folder's listing.
	MaxResponseBytes = 4 << 20
	// maxResponseHeaderBytes bounds an answer's header (Go's default is 10 MiB).
	maxResponseHeaderBytes = 256 << 10
	// lateGrace is how long an exchange may go on after the caller gave up on it (UpstreamTimeout): the transport
	// then ends it, so an abandoned call frees its in-flight slot and stops reading.
	lateGrace = 5 * time.Second
)

// ErrTooLarge ends the read of an answer larger than MaxResponseBytes; the *Error of such a call wraps it. The SDK
// keeps only the text of transport errors, so classify recognises it by its text.
var ErrTooLarge = fmt.Errorf("the answer is larger than %d MiB, the most the provider reads from Infisical", MaxResponseBytes>>20)

// errEncoded refuses an answer in a content encoding the transport did not decode (the SDK would gunzip it without
// any bound).
var errEncoded = errors.New("the answer has a content encoding the provider did not ask for")

// errNoPEM refuses a Config.CACert that holds no certificate.
var errNoPEM = errors.New("holds no PEM certificate")

// newTransport returns the HTTP transport of one Client's SDK clients: the system's proxies and roots plus caPEM, a
// bound on each step (dial, TLS handshake, response header), and bounded answers.
func newTransport(caPEM string, upstreamTimeout time.Duration) (*http.Transport, http.RoundTripper, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	step := upstreamTimeout + lateGrace
	t.DialContext = (&net.Dialer{Timeout: step, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = step
	t.ResponseHeaderTimeout = step
	t.ExpectContinueTimeout = time.Second
	t.MaxResponseHeaderBytes = maxResponseHeaderBytes
	if caPEM != "" {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool() // no system roots here: trust the given CA alone
		}
		if !pool.AppendCertsFromPEM([]byte(caPEM)) {
			return nil, nil, errNoPEM
		}
		t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return t, boundedTransport{base: t, max: MaxResponseBytes}, nil
}

// boundedTransport refuses answers larger than max, reading no more than max+1 bytes of any.
type boundedTransport struct {
	base http.RoundTripper
	max  int64
}

func (b boundedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := b.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if enc := resp.Header.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "identity") {
		resp.Body.Close()
		return nil, errEncoded
	}
	if resp.ContentLength > b.max {
		resp.Body.Close()
		return nil, ErrTooLarge
	}
	resp.Body = &boundedBody{ReadCloser: resp.Body, left: b.max}
	return resp, nil
}

// boundedBody reads at most left bytes, and fails with ErrTooLarge when there are more.
type boundedBody struct {
	io.ReadCloser
	left int64
}

func (b *boundedBody) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if b.left <= 0 {
		// One byte more tells an answer of exactly the bound from a longer one.
		var one [1]byte
		n, err := b.ReadCloser.Read(one[:])
		if n > 0 {
			return 0, ErrTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}

// useTransport makes an SDK client send its requests through rt, each exchange bounded by timeout whole (body
// included). The go-sdk (v0.8.0) has no option for its HTTP client: its resty client is an unexported field, reached
// here by reflection. An SDK whose client is not where this expects fails New rather than call Infisical unbounded;
// TestSDKClientUsesOurTransport catches it on an upgrade.
func useTransport(client sdk.InfisicalClientInterface, rt http.RoundTripper, timeout time.Duration) error {
	rc := restyOf(client)
	if rc == nil {
		return errors.New("cannot reach the HTTP client inside the Infisical go-sdk (an SDK version this provider " +
			"was not built for?): refusing to call Infisical without bounds on its answers")
	}
	rc.SetTransport(rt).SetTimeout(timeout)
	return nil
}

func restyOf(client sdk.InfisicalClientInterface) *resty.Client {
	ic, ok := client.(*sdk.InfisicalClient)
	if !ok || ic == nil {
		return nil
	}
	f := reflect.ValueOf(ic).Elem().FieldByName("httpClient")
	if !f.IsValid() || f.Type() != reflect.TypeFor[*resty.Client]() {
		return nil
	}
	return *(**resty.Client)(unsafe.Pointer(f.UnsafeAddr()))
}
