package engine_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/outbox"
	"github.com/ferryhealth/ferry/fhir"
)

// attackHTML carries the active content a narrative must not: a script, an event attribute, a
// javascript: link, an iframe, a CSS expression, an external image (a beacon), a form and a
// data:text/html link — around the report's benign formatting, which stays.
const attackHTML = `<div xmlns="http://www.w3.org/1999/xhtml"><p><b>Impression</b>: no acute finding.</p>` +
	`<script>alert('xss')</script>` +
	`<img src="x" onerror="alert(1)"/>` +
	`<img src="https://tracker.example/p.gif"/>` +
	`<a href="javascript:alert(2)">click</a>` +
	`<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgzKTwvc2NyaXB0Pg==">more</a>` +
	`<iframe src="https://evil.example/"></iframe>` +
	`<p style="width: expression(alert(4)); background-image: url(javascript:alert(5))">styled</p>` +
	`<form action="https://evil.example/"><input name="q"/></form>` +
	`<p onclick="alert(6)" onmouseover="alert(7)">See <a href="#f1">finding 1</a>.</p></div>`

// forbidden are the pieces of attackHTML that must be gone.
var forbidden = []string{"<script", "alert(", "onerror", "onclick", "onmouseover", "javascript:", "<iframe",
	"expression(", "url(", "tracker.example", "evil.example", "<form", "<input", "data:text/html"}

func TestSanitizeNarrativeHTML(t *testing.T) {
	t.Parallel()
	got := engine.SanitizeNarrativeHTML(attackHTML)
	for _, bad := range forbidden {
		if strings.Contains(got, bad) {
			t.Errorf("sanitised narrative still has %q: %s", bad, got)
		}
	}
	for _, keep := range []string{`<div xmlns="http://www.w3.org/1999/xhtml">`, "<p><b>Impression</b>: no acute finding.</p>",
		`<a href="#f1"`, "finding 1", "styled"} {
		if !strings.Contains(got, keep) {
			t.Errorf("sanitised narrative lost %q: %s", keep, got)
		}
	}
	for in, want := range map[string]string{
		`<img src="data:image/png;base64,iVBORw0KGgo="/>`: `<img src="data:image/png;base64,iVBORw0KGgo="/>`,
		`<a href="https://ehr.example/x">x</a>`:           `<a href="https://ehr.example/x" rel="nofollow noreferrer">x</a>`,
		`<p style="color: red">red</p>`:                   `<p style="color: red">red</p>`,
		`size &lt; 5 mm`:                                  `size &lt; 5 mm`,
	} {
		if got := engine.SanitizeNarrativeHTML(in); got != want {
			t.Errorf("SanitizeNarrativeHTML(%q) = %q, want %q", in, got, want)
		}
	}
}

// A report whose narrative and HTML presentedForm carry active content — sent over FHIR, or as
// an ORU whose OBX ED holds HTML — is stored and queued for delivery without it; its text stays
// (issue 17 item 7).
func TestReportHTMLSanitisedBeforeStoredAndDelivered(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newOrderHarness(t)
	h.mustAccept(mshORM, pidFor("000123", "DOE^JANE"), orc("NW", "PLS1", "SC"), obr("PLS1", "ACCS1"))
	h.mustAccept(mshORM, pidFor("000123", "DOE^JANE"), orc("NW", "PLS2", "SC"), obr("PLS2", "ACCS2"))
	v, err := fhir.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	rs := &engine.Reports{Store: h.st, Validator: v,
		Destinations: func(string) []outbox.Destination {
			return []outbox.Destination{{Name: "fhir", Kind: outbox.FHIR, BaseURL: "http://127.0.0.1:1/fhir"}}
		}}
	h.in.Processor.Reports = rs
	check := func(t *testing.T, what string, b []byte) {
		t.Helper()
		s := string(b)
		// Forms are base64: look inside them too.
		var v any
		if json.Unmarshal(b, &v) == nil {
			s += decodedData(v)
		}
		for _, bad := range forbidden {
			if strings.Contains(s, bad) {
				t.Errorf("%s still has %q", what, bad)
			}
		}
		if !strings.Contains(s, "Impression") {
			t.Errorf("%s lost the report's text", what)
		}
	}

	t.Run("FHIR", func(t *testing.T) {
		div, _ := json.Marshal(attackHTML)
		form := base64.StdEncoding.EncodeToString([]byte("<html><body>" + attackHTML + "</body></html>"))
		body := strings.Replace(string(reportJSON("final", "ACCS1", "Impression: no acute finding.", `"text":{"status":"generated","div":`+string(div)+`}`)),
			`"presentedForm":[`, `"presentedForm":[{"contentType":"text/html","data":"`+form+`"},`, 1)
		r, _, err := rs.Submit(ctx, []byte(body), "")
		if err != nil {
			t.Fatal(err)
		}
		check(t, "the stored report", r.JSON)
		var dr map[string]any
		json.Unmarshal(r.JSON, &dr)
		if div, _ := dr["text"].(map[string]any)["div"].(string); !strings.Contains(div, "<b>Impression</b>") {
			t.Errorf("the narrative lost its formatting: %q", div)
		}
		ds, err := h.st.Deliveries(ctx, outbox.Filter{ReportID: r.ID})
		if err != nil || len(ds) != 1 {
			t.Fatalf("deliveries: %v, %v", ds, err)
		}
		check(t, "the FHIR delivery", ds[0].Payload)
	})

	t.Run("ORU with an HTML ED", func(t *testing.T) {
		ed := base64.StdEncoding.EncodeToString([]byte(attackHTML))
		const msh = `MSH|^~\&|PSCRIBE|RADGROUP|FERRY|FERRY|20261127104215-0500||ORU^R01^ORU_R01|CTRL|P|2.5.1`
		obrSeg := make([]string, 26)
		obrSeg[0], obrSeg[1], obrSeg[2], obrSeg[4] = "OBR", "1", "PLS2^RIS", "71260^CT CHEST W/O CONTRAST^C4"
		obrSeg[7], obrSeg[18], obrSeg[22], obrSeg[24], obrSeg[25] = "20261127090533-0500", "ACCS2", "20261127104210-0500", "CT", "F"
		h.mustAccept(msh, pidFor("000123", "DOE^JANE"), "ORC|RE|PLS2^RIS||||CM", strings.Join(obrSeg, "|"),
			"OBX|1|TX|18782-3^Radiology Study observation (narrative)^LN|1|Impression: from the ORU.||||||F",
			"OBX|2|ED|18748-4^Diagnostic imaging study^LN|1|PSCRIBE^text^HTML^Base64^"+ed+"||||||F")
		for _, r := range h.search("DiagnosticReport") {
			b, _ := json.Marshal(r)
			if c, _ := r["conclusion"].(string); !strings.Contains(c, "from the ORU") {
				continue
			}
			check(t, "the report from the ORU", b)
			if !strings.Contains(decodedData(r), "Impression") {
				t.Errorf("the HTML form lost its text")
			}
			return
		}
		t.Fatalf("no report stored from the ORU")
	})
}

// decodedData is every presentedForm's data, decoded, concatenated.
func decodedData(v any) string {
	var b strings.Builder
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if ct, _ := x["contentType"].(string); strings.HasPrefix(ct, "text/html") {
				if d, _ := x["data"].(string); d != "" {
					raw, _ := base64.StdEncoding.DecodeString(d)
					b.Write(raw)
				}
			}
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	return b.String()
}
