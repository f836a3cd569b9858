package wascap

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
)

// Attacks on Verifier: the remembered answer must be the full parse's answer, claims and error text alike, for every
// token, kind and time, in any order, from any number of goroutines; and what one caller does with its claims must
// not reach another.

// verifierCorpus is tokens of every kind and time shape, with the variants of one text that verify alike (padding on
// the signature) and ones that do not (tampered, wrong subject, wrong kind).
func verifierCorpus(t *testing.T) []string {
	t.Helper()
	acct := newAccount(t)
	iss, _ := acct.PublicKey()
	m, v := newKey(t, PrefixModule), newKey(t, PrefixService)
	server, _ := nkeys.CreateServer()
	n, _ := server.PublicKey()
	base := testNow.Unix()
	sign := func(c map[string]any) string {
		t.Helper()
		c["jti"], c["iat"], c["iss"] = "j", base-100, iss
		tok, err := Sign(c, acct)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	comp := map[string]any{"hash": "AB", "name": "echo"}
	prov := map[string]any{"vendor": "acme", "target_hashes": map[string]string{"x": "y"}, "name": "kv"}
	host := map[string]any{"name": "quiet-sea", "labels": map[string]string{"a": "b"}}
	toks := []string{
		realComponentJWT, realHostJWT, realOldJWT,
		sign(map[string]any{"sub": m, "wascap": comp}),
		sign(map[string]any{"sub": v, "wascap": prov}),
		sign(map[string]any{"sub": n, "wascap": host}),
		sign(map[string]any{"sub": m, "wascap": comp, "exp": base + 30}),
		sign(map[string]any{"sub": m, "wascap": comp, "exp": base}),     // expires at the second testNow is in
		sign(map[string]any{"sub": m, "wascap": comp, "nbf": base + 3}), // within the leeway at testNow
		sign(map[string]any{"sub": m, "wascap": comp, "nbf": base + 60}),
		sign(map[string]any{"sub": v, "wascap": prov, "exp": base + 10, "nbf": base - 10}),
		sign(map[string]any{"sub": n, "wascap": host, "exp": base + 20}),
		sign(map[string]any{"sub": m, "wascap": comp, "nbf": 0}),
		sign(map[string]any{"sub": v, "wascap": comp}), // a component with a provider's key
		sign(map[string]any{"sub": m, "wascap": prov}), // a provider with a module key
		sign(map[string]any{"sub": n, "wascap": comp}), // a component whose subject is a host key
		sign(map[string]any{"sub": m}),                 // no metadata: only a host
	}
	for _, tok := range toks[:6] {
		toks = append(toks, tok+"=", tok+"==", tok[:len(tok)-2]+"AA")
	}
	return toks
}

// agree fails unless got and gotErr are exactly what want and wantErr are, error text included.
func agree(t *testing.T, what string, got *Claims, gotErr error, want *Claims, wantErr error) {
	t.Helper()
	if (gotErr == nil) != (wantErr == nil) || (gotErr != nil && gotErr.Error() != wantErr.Error()) {
		t.Fatalf("%s: verifier err = %v, full parse err = %v", what, gotErr, wantErr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: verifier claims = %+v, full parse = %+v", what, got, want)
	}
}

// Every token, asked as an entity and as a host at times in any order (before, at and after its exp and nbf, and
// back again), is answered as the full parse answers it at that time.
func TestAttackVerifierAgreesWithFullParseAtEveryTime(t *testing.T) {
	toks := verifierCorpus(t)
	var times []time.Time
	for _, d := range []int64{-3600, -61, -60, -6, -5, -4, -1, 0, 1, 3, 4, 9, 10, 11, 20, 21, 30, 31} {
		times = append(times, testNow.Add(time.Duration(d)*time.Second))
	}
	for _, d := range []int64{-6, -1, 0, 10, 30} { // within the second of a boundary
		times = append(times, testNow.Add(time.Duration(d)*time.Second+999*time.Millisecond))
	}
	type asked struct {
		tok, at int
		host    bool
	}
	type answer struct {
		c   *Claims
		err error
	}
	full := map[asked]answer{} // the full parse's answers, the same in every round
	fullParse := func(a asked) answer {
		if ans, ok := full[a]; ok {
			return ans
		}
		parse := ParseEntity
		if a.host {
			parse = ParseHost
		}
		c, err := parse(toks[a.tok], times[a.at])
		full[a] = answer{c, err}
		return full[a]
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 2 {
		v := NewVerifier(len(toks) * 2)
		order := rng.Perm(len(times))
		if round == 0 { // once in order, then shuffled: forwards and backwards across every boundary
			for i := range order {
				order[i] = i
			}
		}
		for _, ti := range order {
			now := times[ti]
			for i, tok := range toks {
				what := fmt.Sprintf("round %d token %d at %+ds", round, i, now.Unix()-testNow.Unix())
				got, gotErr := v.ParseEntity(tok, now)
				want := fullParse(asked{i, ti, false})
				agree(t, what+" as entity", got, gotErr, want.c, want.err)
				got, gotErr = v.ParseHost(tok, now)
				want = fullParse(asked{i, ti, true})
				agree(t, what+" as host", got, gotErr, want.c, want.err)
			}
		}
	}
}

// A token whose exp or nbf is 0 is answered as the full parse answers it whatever the clock said when it was first
// verified: 0 is a time the token states, not an absent one. (A clock at or before the epoch, then set right, must not
// turn exp 0 into "never expires".)
func TestAttackVerifierZeroTimesAreTimes(t *testing.T) {
	acct := newAccount(t)
	iss, _ := acct.PublicKey()
	m := newKey(t, PrefixModule)
	expZero, err := Sign(map[string]any{"jti": "j", "iat": 0, "iss": iss, "sub": m, "exp": 0,
		"wascap": map[string]any{"hash": "AB"}}, acct)
	if err != nil {
		t.Fatal(err)
	}
	nbfZero, err := Sign(map[string]any{"jti": "j", "iat": 0, "iss": iss, "sub": m, "nbf": 0,
		"wascap": map[string]any{"hash": "AB"}}, acct)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name        string
		tok         string
		first, then time.Time
	}{
		{"exp 0, first seen at the epoch", expZero, time.Unix(0, 0), testNow},
		{"nbf 0, first seen now, asked before the epoch", nbfZero, testNow, time.Unix(-3600, 0)},
	} {
		v := NewVerifier(8)
		got, gotErr := v.ParseEntity(tc.tok, tc.first)
		want, wantErr := ParseEntity(tc.tok, tc.first)
		agree(t, tc.name+" (first)", got, gotErr, want, wantErr)
		got, gotErr = v.ParseEntity(tc.tok, tc.then)
		want, wantErr = ParseEntity(tc.tok, tc.then)
		agree(t, tc.name+" (then)", got, gotErr, want, wantErr)
	}
}

// Claims handed to one caller are that caller's: changing them, metadata bytes included, changes neither what the
// verifier remembers nor what another caller gets.
func TestAttackVerifierClaimsAreNotShared(t *testing.T) {
	v := NewVerifier(8)
	want, err := ParseEntity(realComponentJWT, testNow)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 { // the first call (full parse, then remembered) and remembered ones
		c, err := v.ParseEntity(realComponentJWT, testNow)
		if err != nil {
			t.Fatal(err)
		}
		agree(t, fmt.Sprintf("call %d", i), c, nil, want, nil)
		c.Subject, c.Name, c.Kind = "MEVIL", "evil", KindProvider
		for j := range c.Metadata {
			c.Metadata[j] = ' '
		}
		copy(c.Metadata, `{"hash":"EVIL"}`)
	}
	c, err := v.ParseEntity(realComponentJWT, testNow)
	if err != nil {
		t.Fatal(err)
	}
	agree(t, "after callers changed theirs", c, nil, want, nil)
	if !bytes.Contains(c.Metadata, []byte("http-hello-world")) {
		t.Fatalf("metadata changed by another caller: %s", c.Metadata)
	}
}

// Many goroutines verifying more distinct tokens than the verifier holds, at moving times: every answer is the full
// parse's, and the memory never holds more than its bound (run with -race).
func TestAttackVerifierConcurrentAndBounded(t *testing.T) {
	toks := verifierCorpus(t)
	const bound = 5
	v := NewVerifier(bound)
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for range 60 {
				tok := toks[rng.IntN(len(toks))]
				now := testNow.Add(time.Duration(rng.IntN(140)-70) * time.Second)
				var got, want *Claims
				var gotErr, wantErr error
				if rng.IntN(2) == 0 {
					got, gotErr = v.ParseEntity(tok, now)
					want, wantErr = ParseEntity(tok, now)
				} else {
					got, gotErr = v.ParseHost(tok, now)
					want, wantErr = ParseHost(tok, now)
				}
				if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) || !reflect.DeepEqual(got, want) {
					errs <- fmt.Sprintf("at %s: verifier %+v, %v; full parse %+v, %v", now, got, gotErr, want, wantErr)
					return
				}
				if n := v.Len(); n > bound {
					errs <- fmt.Sprintf("verifier holds %d tokens, over its bound %d", n, bound)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// A token one byte over MaxRememberedToken is verified in full every time, and one at the limit is remembered; a
// remembered token that fails (expired) is forgotten, so an attacker's expired tokens do not occupy the memory.
func TestAttackVerifierSizeLimitAndForgetting(t *testing.T) {
	acct := newAccount(t)
	iss, _ := acct.PublicKey()
	m := newKey(t, PrefixModule)
	sign := func(pad int) string {
		t.Helper()
		tok, err := Sign(map[string]any{"jti": "j", "iat": testNow.Unix(), "iss": iss, "sub": m, "exp": testNow.Unix() + 60,
			"wascap": map[string]any{"hash": "AB", "name": strings.Repeat("n", pad)}}, acct)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	sized := func(size int) string { // the shortest token of at least size bytes
		t.Helper()
		pad := max((size-len(sign(0)))*3/4-8, 0) // base64: 4 characters per 3 bytes
		for ; pad < size; pad++ {
			if tok := sign(pad); len(tok) >= size {
				return tok
			}
		}
		t.Fatalf("no token of %d bytes", size)
		return ""
	}
	v := NewVerifier(8)
	over := sized(MaxRememberedToken + 1)
	if _, err := v.ParseEntity(over, testNow); err != nil {
		t.Fatal(err)
	}
	if v.Len() != 0 {
		t.Fatalf("a %d-byte token was remembered", len(over))
	}
	for _, tok := range []string{realComponentJWT, realOldJWT} {
		if _, err := v.ParseEntity(tok, testNow); err != nil {
			t.Fatal(err)
		}
	}
	expiring := sized(200)
	if _, err := v.ParseEntity(expiring, testNow); err != nil {
		t.Fatal(err)
	}
	if v.Len() != 3 {
		t.Fatalf("remembered %d tokens, want 3", v.Len())
	}
	if _, err := v.ParseEntity(expiring, testNow.Add(2*time.Minute)); err == nil {
		t.Fatal("an expired remembered token was accepted")
	}
	if v.Len() != 2 {
		t.Fatalf("remembered %d tokens after one expired, want 2", v.Len())
	}
}
