package engine

import (
	"bytes"
	"encoding/json"
	"testing"
)

// appendJSON must write what encoding/json writes (without HTML escaping), since stored
// resources are compared byte for byte with new ones.
func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, v := range []any{
		nil, "", "plain", "quote\" back\\slash", "ctl\x00\x01\x1f\n\r\t", "bad utf8 \xff\xfe end", "é ü 漢字 \u2028",
		true, 0, -12, int64(1) << 53, uint64(18446744073709551615), 1.5, 1e21, 1e-7, 0.000001, 123456789.125,
		map[string]any{"b": 1, "a": []any{"x", map[string]any{"z": nil, "y": false}}, "": "empty key"},
		[]any{}, map[string]any{}, map[string]string{"k": "v"},
	} {
		got, err := marshalJSON(v)
		if err != nil {
			t.Fatalf("%v: %v", v, err)
		}
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			t.Fatal(err)
		}
		if w := bytes.TrimSuffix(want.Bytes(), []byte("\n")); !bytes.Equal(got, w) {
			t.Errorf("%#v:\n got  %s\n want %s", v, got, w)
		}
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "a\"b", "\x00\xff", "漢字", "<&>", "\f\b", "\u2028"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := appendJSONString(nil, s)
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(s)
		if w := bytes.TrimSuffix(want.Bytes(), []byte("\n")); !bytes.Equal(got, w) {
			t.Fatalf("%q: got %s want %s", s, got, w)
		}
	})
}
