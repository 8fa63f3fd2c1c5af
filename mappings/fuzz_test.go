package mappings

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferryhealth/ferry/hl7"
)

// FuzzApply runs every shipped mapping over arbitrary messages: whatever a sender puts in the
// fields, a mapping returns output or an *Error, and never panics. Seeds: the shipped tests'
// messages, Ferry's own fixtures and, in CI, the shared corpus's orders.
func FuzzApply(f *testing.F) {
	s := shippedSet(f)
	if files, err := LoadTests(Shipped()); err == nil {
		for _, tf := range files {
			for _, tc := range tf.Tests {
				f.Add([]byte(tc.Message))
			}
		}
	}
	own, _ := filepath.Glob(filepath.Join(ownDir, "*.hl7"))
	shared, _ := filepath.Glob(filepath.Join(corpusDir, "*", "*O*.hl7"))
	for _, p := range append(own, shared...) {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	all := s.Mappings()
	f.Fuzz(func(t *testing.T, raw []byte) {
		msg, err := hl7.Parse(raw)
		if err != nil {
			return
		}
		for _, m := range all {
			out, err := m.Apply(msg)
			if err == nil && out == nil {
				t.Fatalf("%s: nil output without an error", m.Name)
			}
			if err != nil {
				if _, ok := err.(*Error); !ok {
					t.Fatalf("%s: error of type %T, want *Error: %v", m.Name, err, err)
				}
			}
		}
	})
}

// FuzzRender renders the shipped oru_r01 with arbitrary report text, conclusion, patient
// identifier, name and control ID: the message always parses with hl7.Parse, keeps MSH-10, and
// gives back every line of the text and the identifier, decoded, where they were written. The
// only error is a control ID MSH-10 cannot hold: empty, too long, or with a CRLF (escaped as the
// line break \.br\, which reads back as LF).
func FuzzRender(f *testing.F) {
	s := shippedSet(f)
	o := s.Outbound("STMARYS", "oru_r01")
	base := resources(f, "report-amended.json")
	f.Add("FINDINGS:\nNo acute abnormality.\n", "Normal.", "000123", "DOE", "F1")
	f.Add("a|b^c~d\\e&f\r\ng\rh\n\n\\.br\\ \\X0D\\ \\F\\", "x\ny", "12|3^4~5\\6&7", "O'Brien^Jr", "ctl|^~\\&")
	f.Add("Größe 结节 ½ \x00 \xff\xfe", "", "", "", strings.Repeat("9", 20))
	f.Add("\uFEFFbom first\r\r\r", "bom first", "\n", "\r", "")
	f.Fuzz(func(t *testing.T, text, conclusion, mrn, family, controlID string) {
		res := map[string]any{}
		for k, v := range base {
			res[k] = clone(v)
		}
		report := res["report"].(map[string]any)
		report["presentedForm"] = []any{map[string]any{"contentType": "text/plain; charset=utf-8",
			"data": base64.StdEncoding.EncodeToString([]byte(text))}}
		report["conclusion"] = conclusion
		patient := res["patient"].(map[string]any)
		ids := patient["identifier"].([]any)
		ids[0].(map[string]any)["value"] = mrn
		patient["name"] = []any{map[string]any{"family": family, "given": []any{"Zoë"}}}

		out, err := o.Render(OutboundInput{Resources: res, Message: OutboundMessage{ControlID: controlID, Time: reportTime}})
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			if controlID != "" && len(controlID) <= maxControlID && !strings.Contains(controlID, "\r\n") {
				t.Fatalf("rendering failed: %v", err)
			}
			return
		}
		m, err := hl7.Parse(out)
		if err != nil {
			t.Fatalf("the message does not parse: %v", err)
		}
		if got := m.Header().ControlID; got != controlID {
			t.Fatalf("MSH-10 = %q, want %q", got, controlID)
		}
		st := &state{ob: o}
		decoded, _ := fnAttachment(st, []any{report, "text/plain"})
		want, _ := fnLines(st, []any{decoded})
		var got []any
		for i := 1; i <= m.Count("OBX"); i++ {
			if m.Value(fmt.Sprintf("OBX[%d]-3.1", i)) == "18782-3" {
				got = append(got, m.Value(fmt.Sprintf("OBX[%d]-5", i)))
			}
		}
		if w := asList(want); fmt.Sprintf("%q", got) != fmt.Sprintf("%q", w) {
			t.Fatalf("the text's lines do not come back:\n got  %q\n want %q", got, w)
		}
		if mrn != "" && !strings.Contains(mrn, "\r") {
			if got := m.Value("PID-3[1].1"); got != mrn {
				t.Fatalf("PID-3[1].1 = %q, want %q", got, mrn)
			}
		}
	})
}

// clone copies decoded JSON deeply, so that a fuzz iteration cannot change the fixtures.
func clone(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = clone(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = clone(e)
		}
		return out
	}
	return v
}
