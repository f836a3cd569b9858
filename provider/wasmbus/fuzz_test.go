package wasmbus

import (
	"testing"
)

func FuzzDecodeHostData(f *testing.F) {
	f.Add([]byte(b64(example192) + "\r\n"))
	f.Add([]byte(b64(`{"lattice_rpc_url":"u","lattice_rpc_prefix":"l","provider_key":"p","secrets":{"a":{"kind":"Bytes","value":[1]}}}`)))
	f.Add([]byte(b64(`{"link_definitions":[{"source_secrets":"AQI="}]}`)))
	f.Add([]byte(b64(`{"secrets":{"a":{"kind":"String","value":null}}}`)))
	f.Add([]byte("\r\n"))
	f.Add([]byte("%%%"))
	f.Fuzz(func(t *testing.T, line []byte) {
		hd, err := DecodeHostData(line)
		if err != nil {
			if hd != nil {
				t.Fatal("host data returned with an error")
			}
			return
		}
		if hd.LatticeRPCURL == "" || hd.ProviderKey == "" || hd.LatticeRPCPrefix == "" {
			t.Fatalf("accepted host data without a required field: %v", hd.LogValue())
		}
		for name, s := range hd.Secrets {
			if s.Kind != KindString && s.Kind != KindBytes {
				t.Fatalf("secret %q decoded with kind %q", name, s.Kind)
			}
		}
		// Whatever decodes must encode and decode again.
		again, err := EncodeHostData(hd)
		if err != nil {
			t.Fatalf("EncodeHostData: %v", err)
		}
		if _, err := DecodeHostData([]byte(again)); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
	})
}

func FuzzDecryptLinkSecrets(f *testing.F) {
	k := newTestKeys(f)
	valid, err := SealLinkSecrets(map[string]SecretValue{"a": StringSecret("x"), "b": BytesSecret([]byte{7})}, k.host, k.providerPub)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(*valid, []byte(`{"a":{"kind":"String","value":"x"}}`))
	f.Add([]byte("xkv1"), []byte(`{"a":{"kind":"Bytes","value":[1,2,300]}}`))
	f.Add([]byte{}, []byte(`null`))
	f.Add([]byte("xkv1xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"), []byte(`{"a":{"kind":"Json"}}`))
	f.Fuzz(func(t *testing.T, sealed, plain []byte) {
		// Arbitrary bytes as the sealed box.
		if got, err := DecryptLinkSecrets(&sealed, k.provider, k.hostPub); err == nil && got == nil {
			t.Fatal("nil map without error")
		}
		// Arbitrary plaintext in a genuine box, to reach the JSON decoding.
		box, err := k.host.Seal(plain, k.providerPub)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecryptLinkSecrets(&box, k.provider, k.hostPub)
		if err != nil {
			return
		}
		if got == nil {
			t.Fatal("nil map without error")
		}
		for name, s := range got {
			if s.Kind != KindString && s.Kind != KindBytes {
				t.Fatalf("secret %q decoded with kind %q", name, s.Kind)
			}
		}
	})
}
