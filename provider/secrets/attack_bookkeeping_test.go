package secrets

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/wascap"
)

// Attacks on the server's bookkeeping per request (log line, span, metrics): a handler that goes on annotating after
// the timeout reply left, or after it returned; a request with more attributes than the fixed buffers hold; and
// outcomes the server has never seen.

// A handler still annotating, from goroutines of its own, while the server writes the line of a request the timeout
// reply answered, and after: no data race (run with -race), and the line is the timeout's, with the annotations made
// before the handler returned.
func TestAttackLateAnnotationsDoNotRace(t *testing.T) {
	installTelemetry(t) // a recording span, so that the span attributes are built too
	logs := &logBuffer{}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	replied := make(chan struct{}) // closed once the test has the timeout reply
	h := HandlerFunc(func(ctx context.Context, v *Verified) (*Secret, error) {
		for i := range 12 { // past the annotations' inline array
			Annotate(ctx, slog.Int(fmt.Sprintf("before_%d", i), i))
		}
		<-ctx.Done() // the handler's deadline, 100ms before the timeout reply
		<-replied
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					Annotate(ctx, slog.Int(fmt.Sprintf("late_%d_%d", g, i%64), i))
				}
			}()
		}
		return &Secret{Version: "1", StringSecret: strp("late-value")}, nil
	})
	f := newFixture(t, h, func(c *ServerConfig) {
		c.Budget = 400 * time.Millisecond
		c.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	release := sync.OnceFunc(func() { close(replied) })
	t.Cleanup(release) // a request that failed must not leave the handler waiting
	hdr, data, _ := f.seal(f.id.request("db", ""))
	reply := f.raw(f.subject("get"), hdr, data)
	release()
	if !strings.Contains(string(reply.Data), "timed out") {
		t.Fatalf("reply %s, want the timeout reply", reply.Data)
	}
	if err := f.srv.Shutdown(testCtx(t)); err != nil { // the worker has written the line
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	recs := logs.records(t, "secrets get")
	if len(recs) != 1 {
		t.Fatalf("%d lines, want 1:\n%s", len(recs), logs)
	}
	rec := recs[0]
	if rec["outcome"] != "UpstreamError" || rec["level"] != "WARN" ||
		!strings.Contains(fmt.Sprint(rec["reason"]), "the late result (ok) was dropped") {
		t.Errorf("line = %v", rec)
	}
	for i := range 12 {
		if _, ok := rec[fmt.Sprintf("before_%d", i)]; !ok {
			t.Errorf("annotation before_%d missing: %v", i, rec)
		}
	}
	if strings.Contains(logs.String(), "late-value") {
		t.Errorf("the late value was logged")
	}
}

// A request with every optional field and more annotations than the log line's and the annotations' inline buffers
// hold loses none of them, on the line and on the span; the value appears on neither.
func TestAttackLogLineKeepsEveryField(t *testing.T) {
	spans, _ := installTelemetry(t)
	logs := &logBuffer{}
	const annotations = 40
	h := HandlerFunc(func(ctx context.Context, v *Verified) (*Secret, error) {
		for i := range annotations {
			Annotate(ctx, slog.String(fmt.Sprintf("a%02d", i), fmt.Sprint(i)))
		}
		if v.Request.Key == "fail" {
			return nil, NewError(KindSecretNotFound, "")
		}
		return &Secret{Version: "7", StringSecret: strp("s3cr3t-value")}, nil
	})
	f := newFixture(t, h, func(c *ServerConfig) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	for _, key := range []string{"db", "fail"} {
		req := f.id.request(key, "")
		req.Field, req.Version = strp("user"), strp("7")
		hdr, data, _ := f.seal(req)
		f.raw(f.subject("get"), hdr, data)
	}
	if err := f.srv.Shutdown(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "s3cr3t-value") {
		t.Fatalf("secret value logged:\n%s", logs)
	}
	recs := logs.records(t, "secrets get")
	if len(recs) != 2 {
		t.Fatalf("%d lines, want 2:\n%s", len(recs), logs)
	}
	for _, rec := range recs {
		want := map[string]any{"op": "get", "backend": "infisical", "entity": f.id.entitySub, "entity_name": "counter",
			"entity_kind": "component", "issuer": mustPub(t, f.id), "host": f.id.hostSub, "application": "my-app",
			"field": "user", "version": "7"}
		if rec["outcome"] == "ok" {
			want["key"] = "db"
		} else {
			want["key"], want["outcome"], want["reason"] = "fail", "SecretNotFound", "Secret not found"
		}
		for i := range annotations {
			want[fmt.Sprintf("a%02d", i)] = fmt.Sprint(i)
		}
		for k, v := range want {
			if rec[k] != v {
				t.Errorf("line %v: %s = %v, want %v", rec["key"], k, rec[k], v)
			}
		}
		if _, ok := rec["latency"]; !ok {
			t.Errorf("line %v without latency", rec["key"])
		}
	}
	for _, s := range spans.GetSpans() {
		if s.Name != "secrets get" {
			continue
		}
		got := map[string]bool{}
		for _, kv := range s.Attributes {
			got[string(kv.Key)] = true
			if strings.Contains(kv.Value.String(), "s3cr3t-value") {
				t.Errorf("span attribute %s holds the value", kv.Key)
			}
		}
		for i := range annotations {
			if !got[fmt.Sprintf("a%02d", i)] {
				t.Errorf("span without annotation a%02d", i)
			}
		}
	}
}

// Outcomes a handler makes up (an *Error of a kind the host does not know, sent as Other) do not grow the server's
// memory of metric attribute sets without bound.
func TestAttackMetricSetsStayBounded(t *testing.T) {
	h := HandlerFunc(func(ctx context.Context, v *Verified) (*Secret, error) {
		return nil, &Error{Kind: ErrorKind("Made" + v.Request.Key), Message: "m"}
	})
	f := newFixture(t, h)
	for i := range maxMetricSets + 20 {
		hdr, data, _ := f.seal(f.id.request(fmt.Sprint(i), ""))
		if reply := f.raw(f.subject("get"), hdr, data); !strings.Contains(string(reply.Data), `"Other"`) {
			t.Fatalf("reply %s, want Other", reply.Data)
		}
	}
	f.srv.metricMu.RLock()
	n := len(f.srv.metricSets)
	f.srv.metricMu.RUnlock()
	if n > maxMetricSets {
		t.Fatalf("the server keeps %d metric attribute sets, over %d", n, maxMetricSets)
	}
}

// Requests from many entities and hosts at once, with the verifier remembering their tokens, each reach the handler
// with their own claims; a handler that changes the claims it got (metadata bytes included) changes nothing for the
// next request carrying the same tokens.
func TestAttackConcurrentRequestsGetTheirOwnClaims(t *testing.T) {
	h := HandlerFunc(func(ctx context.Context, v *Verified) (*Secret, error) {
		got := v.Entity.Subject + "/" + v.Host.Subject + "/" + v.Entity.Kind.String() + "/" + string(v.Entity.Metadata)
		v.Entity.Subject, v.Host.Subject, v.Entity.Kind = "MEVIL", "NEVIL", wascap.KindProvider
		for i := range v.Entity.Metadata {
			v.Entity.Metadata[i] = ' '
		}
		return &Secret{Version: "1", StringSecret: &got}, nil
	})
	f := newFixture(t, h, func(c *ServerConfig) { c.VerifiedTokens = 4 }) // fewer than the tokens: evictions too
	ids := make([]*identity, 5)
	for i := range ids {
		ids[i] = mintIdentity(t)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for g := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				id := ids[(g+i)%len(ids)]
				sec, err := f.client().Get(testCtx(t), id.request("k", ""))
				if err != nil {
					errs <- err
					return
				}
				if want := id.entitySub + "/" + id.hostSub + "/component/" + string(id.entityMeta(t)); *sec.StringSecret != want {
					errs <- fmt.Errorf("handler saw %s, want %s", *sec.StringSecret, want)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := f.srv.tokens.Len(); n > 4 {
		t.Errorf("the server remembers %d tokens, over its bound 4", n)
	}
}

// entityMeta is the wascap metadata of id's entity JWT, as a full parse gives it.
func (id *identity) entityMeta(t testing.TB) []byte {
	c, err := wascap.ParseEntity(id.entityJWT, time.Now())
	if err != nil {
		t.Error(err)
		return nil
	}
	return c.Metadata
}
