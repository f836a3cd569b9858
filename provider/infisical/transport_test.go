package infisical

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The SDK's HTTP client is ours: bounded answers and exchanges. Fails when an SDK upgrade moves its client.
func TestSDKClientUsesOurTransport(t *testing.T) {
	t.Parallel()
	c := newClient(t, "https://infisical.example", func(cfg *Config) { cfg.UpstreamTimeout = 3 * time.Second })
	client, err := c.newSDK()
	if err != nil {
		t.Fatal(err)
	}
	rc := restyOf(client)
	if rc == nil {
		t.Fatal("the SDK's resty client is not where useTransport looks")
	}
	hc := rc.GetClient()
	if _, ok := hc.Transport.(boundedTransport); !ok {
		t.Fatalf("the SDK sends through %T, not the bounded transport", hc.Transport)
	}
	if hc.Timeout != 3*time.Second+lateGrace {
		t.Fatalf("exchange timeout %v; want UpstreamTimeout + %v", hc.Timeout, lateGrace)
	}
}

// hostile is a server that answers the secrets routes with answer (and everything else with 404), counts requests,
// and reports when each handler has returned, i.e. when the provider stopped reading.
func hostile(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) (url string, requests *atomic.Int32, ended chan struct{}) {
	t.Helper()
	requests = &atomic.Int32{}
	ended = make(chan struct{}, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/api/v3/secrets/raw") {
			http.NotFound(w, r)
			return
		}
		requests.Add(1)
		defer func() { ended <- struct{}{} }()
		answer(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, requests, ended
}

func tokenClient(t *testing.T, url string, timeout time.Duration) *Client {
	t.Helper()
	return newClient(t, url, func(cfg *Config) {
		cfg.Auth = Credentials{Method: MethodToken, AccessToken: "token"}
		cfg.UpstreamTimeout = timeout
	})
}

func waitEnded(t *testing.T, ended chan struct{}, within time.Duration) {
	t.Helper()
	select {
	case <-ended:
	case <-time.After(within):
		t.Fatalf("the server was still sending %s after the call returned", within)
	}
}

// A server (a tenant's INFISICAL_BASE_URL may be anyone's) cannot make the provider read more than MaxResponseBytes
// of one answer, however it sends it; the answer is an error that names the bound, and is not asked for again.
func TestAnswersAreBounded(t *testing.T) {
	t.Parallel()
	const prefix = `{"secrets":[{"secretKey":"K","environment":"dev","secretPath":"/","secretValue":"`
	var bomb bytes.Buffer
	gz := gzip.NewWriter(&bomb)
	_, _ = io.WriteString(gz, prefix)
	_, _ = gz.Write(bytes.Repeat([]byte("A"), 4*MaxResponseBytes))
	_, _ = io.WriteString(gz, `"}]}`)
	_ = gz.Close()

	tests := []struct {
		name   string
		answer func(w http.ResponseWriter, r *http.Request)
	}{
		{name: "endless", answer: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, prefix)
			chunk := bytes.Repeat([]byte("A"), 64<<10)
			for r.Context().Err() == nil {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}},
		{name: "declared too large", answer: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(MaxResponseBytes+1))
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}},
		{name: "gzip bomb", answer: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Encoding", "gzip")
			_, _ = w.Write(bomb.Bytes())
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			url, requests, ended := hostile(t, tt.answer)
			c := tokenClient(t, url, 4*time.Second)
			_, err := c.ListSecrets(ctxWithin(t, 8*time.Second), FolderRef{ProjectID: project, Environment: "dev"}, "")
			wantKind(t, err, KindUnavailable, "the answer is larger than 4 MiB")
			if !strings.Contains(err.Error(), "cannot be listed") || !errors.Is(err, ErrTooLarge) {
				t.Errorf("%v does not say that a folder this large cannot be listed", err)
			}
			waitEnded(t, ended, 10*time.Second)
			if n := requests.Load(); n != 1 {
				t.Fatalf("%d requests; want 1 (an answer too large is not asked for again)", n)
			}
		})
	}

	t.Run("exactly the bound", func(t *testing.T) {
		t.Parallel()
		suffix := `"}]}`
		value := strings.Repeat("A", MaxResponseBytes-len(prefix)-len(suffix))
		url, _, _ := hostile(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, prefix+value+suffix)
		})
		l, err := tokenClient(t, url, 4*time.Second).ListSecrets(ctxWithin(t, 8*time.Second),
			FolderRef{ProjectID: project, Environment: "dev"}, "")
		if err != nil || len(l.Secrets["K"].Value) != len(value) {
			t.Fatalf("an answer of exactly %d bytes: %v", MaxResponseBytes, err)
		}
	})
}

// An answer that trickles in is given up at UpstreamTimeout, and the exchange itself ends lateGrace later: an
// abandoned call neither keeps reading nor keeps its in-flight slot.
func TestSlow_AbandonedExchangesEnd(t *testing.T) {
	t.Parallel()
	url, _, ended := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
				if _, err := io.WriteString(w, " "); err != nil {
					return
				}
				w.(http.Flusher).Flush()
			}
		}
	})
	c := tokenClient(t, url, 200*time.Millisecond)
	_, err := c.ListSecrets(ctxWithin(t, 5*time.Second), FolderRef{ProjectID: project, Environment: "dev"}, "")
	wantKind(t, err, KindTimeout, "no answer within 200ms")
	waitEnded(t, ended, lateGrace+5*time.Second)
}

// The transport decodes only the gzip it asked for (within the bound); an answer in another encoding is refused
// rather than decoded by the SDK without one.
func TestUnaskedEncodingIsRefused(t *testing.T) {
	t.Parallel()
	url, _, _ := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Encoding", "br")
		_, _ = io.WriteString(w, `{"secrets":[]}`)
	})
	_, err := tokenClient(t, url, 4*time.Second).ListSecrets(ctxWithin(t, 8*time.Second),
		FolderRef{ProjectID: project, Environment: "dev"}, "")
	wantKind(t, err, KindUnavailable, "content encoding the provider did not ask for")
}
