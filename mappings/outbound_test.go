package mappings

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/ferryhealth/ferry/hl7"
)

const outboundFixtures = "testdata/outbound"

// fixture reads a FHIR resource from testdata/outbound, decoded as the engine decodes it.
func fixture(t testing.TB, name string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(outboundFixtures, name))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return m
}

// resources is a report with the patient, order, encounter, interpreter and requester of the
// fixtures, less the roles named in without.
func resources(t testing.TB, report string, without ...string) map[string]any {
	t.Helper()
	r := map[string]any{"report": fixture(t, report)}
	for role, file := range map[string]string{"patient": "patient.json", "order": "order.json",
		"encounter": "encounter.json", "interpreter": "interpreter.json", "requester": "requester.json"} {
		r[role] = fixture(t, file)
	}
	for _, w := range without {
		delete(r, w)
	}
	return r
}

func zone(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// renderCase is one golden rendering of the shipped oru_r01: its inputs and the fields that
// matter most, read back with hl7.Parse.
type renderCase struct {
	name     string
	report   string   // testdata/outbound/report-*.json
	without  []string // roles left out
	msg      OutboundMessage
	facility fstest.MapFS // the facility STMARYS's directory, when it overrides
	want     map[string]string
	obx      int // how many OBX segments
}

var (
	reportTime = time.Date(2026, 11, 27, 15, 42, 11, 0, time.UTC)
	ftOptions  = fstest.MapFS{"tables/oru_options.yaml": {Data: []byte("table: oru_options\nrows:\n  text_type: {value: FT}\n  charset: {value: UNICODE UTF-8}\n")}}
	latin1Opts = fstest.MapFS{"tables/oru_options.yaml": {Data: []byte("table: oru_options\nrows:\n  text_type: {value: TX}\n  charset: {value: 8859/1}\n  pdf: {value: \"no\"}\n")}}
)

func renderCases(t testing.TB) []renderCase {
	ny := zone(t, "America/New_York")
	chicago := zone(t, "America/Chicago")
	return []renderCase{
		{
			name: "final-v251", report: "report-final.json",
			msg: OutboundMessage{ControlID: "F1a2b3c4d5", Time: reportTime, Zone: ny, ReceivingApplication: "EPIC", ReceivingFacility: "STMARYS"},
			want: map[string]string{
				"MSH-3": "FERRY", "MSH-5": "EPIC", "MSH-6": "STMARYS", "MSH-7": "20261127104211-0500",
				"MSH-9": "ORU^R01^ORU_R01", "MSH-10": "F1a2b3c4d5", "MSH-11": "P", "MSH-12": "2.5.1", "MSH-18": "UNICODE UTF-8",
				"PID-3[1]": "000123^^^STMARYS^MR", "PID-3[2]": "999-88-7777^^^SSN^SS", "PID-3[3]": "R-4471^^^RIS^PI", "PID-3[4]": "",
				"PID-5[1]": "Ångström-O'Brien^Zoë^Marie^^DR", "PID-5[2]": "Lindqvist^Zoë^^^^^M", "PID-7": "19800102", "PID-8": "F",
				"PV1-1": "1", "PV1-2": "E", "PV1-19": "V1001^^^STMARYS^VN",
				"ORC-1": "RE", "ORC-2": "PL1001^RIS", "ORC-3": "FL2001^PACS", "ORC-5": "CM", "ORC-12": "1234^SMITH^ROBERT^J^^^MD^^STMARYS",
				"OBR-1": "1", "OBR-2": "PL1001^RIS", "OBR-3": "FL2001^PACS", "OBR-4": "71260^CT CHEST W/O CONTRAST^C4",
				"OBR-7": "20261127090533-0500", "OBR-18": "ACC3001", "OBR-22": "20261127104210-0500", "OBR-24": "RAD", "OBR-25": "F",
				"OBR-32.1": "1234567893&Nakamura&Keiko&A&&&MD&&NPI",
				"OBX[1]-1": "1", "OBX[1]-2": "TX", "OBX[1]-3": "18782-3^Radiology Study observation (narrative)^LN", "OBX[1]-4": "1",
				"OBX[1]-5": "EXAM: CT CHEST WITHOUT CONTRAST", "OBX[1]-8": "", "OBX[1]-11": "F", "OBX[2]-5": "",
				"OBX[11]-1": "11", "OBX[11]-3.1": "19005-8", "OBX[11]-5": "No acute cardiopulmonary abnormality.", "OBX[11]-11": "F",
			},
			obx: 11,
		},
		{
			name: "preliminary-v231", report: "report-preliminary.json", without: []string{"encounter", "interpreter", "requester"},
			msg: OutboundMessage{ControlID: "P0001", Time: reportTime, Version: "2.3.1", Zone: chicago, SendingApplication: "FERRY", SendingFacility: "NIGHTHAWK"},
			want: map[string]string{
				"MSH-4": "NIGHTHAWK", "MSH-6": "STMARYS", "MSH-7": "20261127094211-0600", "MSH-9": "ORU^R01", "MSH-12": "2.3.1",
				"PV1":   "PV1|1|U",
				"ORC-5": "IP", "ORC-12": "^SMITH, ROBERT", "OBR-4": "71260^CT CHEST W/O CONTRAST^C4", "OBR-25": "P", "OBR-32": "",
				"OBX[1]-5": "PRELIMINARY READ - CT CHEST WITHOUT CONTRAST", "OBX[3]-5": "Final report to follow.", "OBX[3]-11": "P", "OBX[4]": "",
			},
			obx: 3,
		},
		{
			name: "amended-critical-pdf-v251", report: "report-amended.json",
			msg: OutboundMessage{ControlID: "A9", Time: reportTime, Zone: ny},
			want: map[string]string{
				"OBR-25": "C", "ORC-5": "CM",
				"OBX[1]-8":  "AA",
				"OBX[4]-5":  "Right lower lobe: 2.1 cm spiculated mass | suspicious ^ for malignancy & adenopathy ~ 1 cm.",
				"OBX[5]-5":  `Path on the PACS: \\pacs01\studies\ACC3001 (escape char kept).`,
				"OBX[6]-5":  "Résumé: pneumothorax absent — ½ of the lung re-expanded; Größe 21 mm; 结节 noted.",
				"OBX[7]-5":  `\.br\ is text here, not a line break.`,
				"OBX[8]-3":  "19005-8^Radiology Impression^LN",
				"OBX[9]-5":  "Recommend PET-CT.",
				"OBX[9]-8":  "AA",
				"OBX[10]-2": "ED", "OBX[10]-5.2": "application", "OBX[10]-5.3": "pdf", "OBX[10]-5.4": "Base64", "OBX[10]-8": "", "OBX[10]-11": "C",
			},
			obx: 10,
		},
		{
			name: "amended-v231", report: "report-amended.json", without: []string{"requester"},
			msg: OutboundMessage{ControlID: "A9-231", Time: reportTime, Version: "2.3.1"},
			want: map[string]string{
				"MSH-7": "20261127154211+0000", "MSH-9": "ORU^R01", "OBR-25": "C", "OBX[1]-11": "C", "ORC-12": "^SMITH, ROBERT",
				"OBR-32.1": "1234567893&Nakamura&Keiko&A&&&MD&&NPI",
			},
			obx: 10,
		},
		{
			name: "final-ft", report: "report-final.json", facility: ftOptions,
			msg: OutboundMessage{ControlID: "FT1", Time: reportTime, Zone: ny},
			want: map[string]string{
				"OBX[1]-2": "FT", "OBX[1]-1": "1", "OBX[2]-1": "2", "OBX[2]-2": "FT", "OBX[2]-3.1": "19005-8",
				"OBX[1]-5": strings.TrimSuffix(reportText(t, "report-final.json"), "\n"),
			},
			obx: 2,
		},
		{
			name: "entered-in-error", report: "report-entered-in-error.json",
			msg:  OutboundMessage{ControlID: "E1", Time: reportTime},
			want: map[string]string{"OBR-25": "X", "ORC-5": "IP", "OBX[1]-11": "W", "OBX[1]-5": "This report was sent for the wrong patient."},
			obx:  1,
		},
		{
			name: "final-latin1", report: "report-final.json", facility: latin1Opts,
			msg:  OutboundMessage{ControlID: "L1", Time: reportTime},
			want: map[string]string{"MSH-18": "8859/1", "PID-5[1].1": "Ångström-O'Brien"},
			obx:  11,
		},
	}
}

// reportText is the text/plain presentedForm of a report fixture.
func reportText(t testing.TB, name string) string {
	for _, f := range asList(fixture(t, name)["presentedForm"]) {
		if strings.HasPrefix(textOf(asMap(f)["contentType"]), "text/plain") {
			b, _ := base64.StdEncoding.DecodeString(textOf(asMap(f)["data"]))
			return string(b)
		}
	}
	return ""
}

// caseSet is the shipped set, with the case's facility directory for STMARYS.
func caseSet(t testing.TB, c renderCase) *Set {
	t.Helper()
	src := Source{Base: []fs.FS{Shipped()}}
	if c.facility != nil {
		src.Facilities = map[string]fs.FS{"STMARYS": c.facility}
	}
	s, err := Load(src)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRenderORU renders the shipped oru_r01 for each case, compares the message with
// testdata/outbound/golden/NAME.hl7 (segments one a line; -update rewrites them), and checks
// the fields that matter by parsing it back.
func TestRenderORU(t *testing.T) {
	for _, c := range renderCases(t) {
		t.Run(c.name, func(t *testing.T) {
			o := caseSet(t, c).Outbound("STMARYS", "oru_r01")
			if o == nil {
				t.Fatal("no oru_r01 for STMARYS")
			}
			out, err := o.Render(OutboundInput{Resources: resources(t, c.report, c.without...), Message: c.msg})
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join(outboundFixtures, "golden", c.name+".hl7")
			readable := bytes.ReplaceAll(out, []byte("\r"), []byte("\n"))
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, readable, 0o644); err != nil {
					t.Fatal(err)
				}
			} else if want, err := os.ReadFile(golden); err != nil {
				t.Fatalf("no golden file (run with -update): %v", err)
			} else if !bytes.Equal(want, readable) {
				t.Errorf("the message differs from %s (run with -update after checking):\n%s", golden, readable)
			}
			if bytes.ContainsAny(out, "\n") || !bytes.HasSuffix(out, []byte("\r")) {
				t.Error("segments must end with CR and nothing else")
			}
			m, err := hl7.Parse(out)
			if err != nil {
				t.Fatalf("the message does not parse: %v", err)
			}
			for _, p := range sortedKeys(c.want) {
				got, err := m.Get(p)
				if err != nil { // a segment: as written, "" when absent
					got = segmentText(t, m, p)
				}
				if got != c.want[p] {
					t.Errorf("%s = %q, want %q", p, got, c.want[p])
				}
			}
			if n := m.Count("OBX"); n != c.obx {
				t.Errorf("%d OBX segments, want %d", n, c.obx)
			}
			checkOBXSequence(t, m)
		})
	}
}

// segmentText is the segment at path (PV1, OBX[4]) as written, "" when there is none.
func segmentText(t *testing.T, m *hl7.Message, path string) string {
	t.Helper()
	p, err := hl7.ParsePath(path)
	if err != nil || p.Field != 0 {
		t.Fatalf("bad path %q", path)
	}
	for _, sg := range m.Segments() {
		if sg.Name() == p.Segment && sg.Sequence() == max(p.SegmentIndex, 1) {
			return sg.Raw()
		}
	}
	return ""
}

// checkOBXSequence checks that OBX-1 numbers the OBX segments 1, 2, 3 …
func checkOBXSequence(t *testing.T, m *hl7.Message) {
	t.Helper()
	for i := 1; i <= m.Count("OBX"); i++ {
		if got := m.Value(fmt.Sprintf("OBX[%d]-1", i)); got != fmt.Sprint(i) {
			t.Errorf("OBX[%d]-1 = %q", i, got)
		}
	}
}

func TestRenderTextRoundTrips(t *testing.T) {
	// Every line of the report comes back, decoded, from its TX OBX; the PDF from the ED OBX.
	s := shippedSet(t)
	res := resources(t, "report-amended.json")
	out, err := s.Outbound("", "oru_r01").Render(OutboundInput{Resources: res, Message: OutboundMessage{ControlID: "RT", Time: reportTime}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := hl7.Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	var body []string
	for i := 1; i <= m.Count("OBX"); i++ {
		if m.Value(fmt.Sprintf("OBX[%d]-3.1", i)) == "18782-3" {
			body = append(body, m.Value(fmt.Sprintf("OBX[%d]-5", i)))
		}
	}
	if got, want := strings.Join(body, "\n"), strings.TrimRight(reportText(t, "report-amended.json"), "\n"); got != want {
		t.Errorf("the report text does not come back:\n got  %q\n want %q", got, want)
	}
	pdf, err := base64.StdEncoding.DecodeString(m.Value("OBX[10]-5.5"))
	if err != nil || !bytes.HasPrefix(pdf, []byte("%PDF-1.4")) {
		t.Errorf("the ED OBX does not carry the PDF: %v", err)
	}
}

func TestRenderLatin1Bytes(t *testing.T) {
	c := renderCases(t)[6]
	out, err := caseSet(t, c).Outbound("STMARYS", "oru_r01").Render(OutboundInput{Resources: resources(t, c.report), Message: c.msg})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte("\xC5ngstr\xF6m")) {
		t.Errorf("MSH-18 8859/1 must write ISO-8859-1 bytes; got %q", out[:min(len(out), 300)])
	}
	// A character ISO-8859-1 lacks fails the rendering rather than turning into "?".
	_, err = caseSet(t, c).Outbound("STMARYS", "oru_r01").Render(OutboundInput{Resources: resources(t, "report-amended.json"), Message: c.msg})
	if err == nil || !strings.Contains(err.Error(), "cannot represent") {
		t.Errorf("a CJK character in 8859/1: err = %v, want cannot represent", err)
	}
}

func TestRenderErrors(t *testing.T) {
	s := shippedSet(t)
	o := s.Outbound("", "oru_r01")
	good := OutboundMessage{ControlID: "X1", Time: reportTime}
	unknownStatus := resources(t, "report-final.json")
	unknownStatus["report"].(map[string]any)["status"] = "reviewed"
	for _, tc := range []struct {
		name string
		in   OutboundInput
		want string
		code hl7.ErrorCode
	}{
		{"no control ID", OutboundInput{Resources: resources(t, "report-final.json"), Message: OutboundMessage{Time: reportTime}}, "control ID (MSH-10) is required", 0},
		{"control ID too long", OutboundInput{Resources: resources(t, "report-final.json"), Message: OutboundMessage{ControlID: strings.Repeat("9", 21), Time: reportTime}}, "at most 20", 0},
		{"no time", OutboundInput{Resources: resources(t, "report-final.json"), Message: OutboundMessage{ControlID: "X1"}}, "time (MSH-7) is required", 0},
		{"unknown version", OutboundInput{Resources: resources(t, "report-final.json"), Message: OutboundMessage{ControlID: "X1", Time: reportTime, Version: "2.6"}}, `version "2.6"`, 0},
		{"unknown role", OutboundInput{Resources: map[string]any{"reader": map[string]any{}}, Message: good}, `unknown resource role "reader"`, 0},
		{"resource not decoded", OutboundInput{Resources: map[string]any{"report": []byte("{}")}, Message: good}, "want decoded JSON", 0},
		{"status not in result_status", OutboundInput{Resources: unknownStatus, Message: good}, "code not found in table result_status", hl7.CodeTableValueNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := o.Render(tc.in)
			var me *Error
			if !errors.As(err, &me) {
				t.Fatalf("err = %v, want an *Error", err)
			}
			if !strings.Contains(me.Text, tc.want) {
				t.Errorf("error %q lacks %q", me.Text, tc.want)
			}
			if tc.code != 0 && me.Code != tc.code {
				t.Errorf("code %d, want %d", me.Code, tc.code)
			}
			if !strings.Contains(me.Where, "oru_r01.yaml") {
				t.Errorf("where = %q, want the mapping file", me.Where)
			}
		})
	}
	// Where says the file and line of the failing expression.
	_, err := o.Render(OutboundInput{Resources: unknownStatus, Message: good})
	if want := "shipped/outbound/oru_r01.yaml:13 let.result_status"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q lacks %q", err, want)
	}
}

func TestRenderChecksControlID(t *testing.T) {
	site := fstest.MapFS{"outbound/oru_r01.yaml": {Data: []byte(`outbound: oru_r01
version: 2
segments:
  - MSH: {9: ORU^R01, 10: FIXED, 12: =message.version}
`)}}
	s, err := Load(Source{Base: []fs.FS{Shipped(), site}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Outbound("", "oru_r01").Render(OutboundInput{Message: OutboundMessage{ControlID: "X1", Time: reportTime}})
	if err == nil || !strings.Contains(err.Error(), "MSH-10 must be message.control_id") {
		t.Errorf("err = %v", err)
	}
}

func TestOutboundLintReportsEveryProblemWithFileAndLine(t *testing.T) {
	broken := fstest.MapFS{
		"outbound/oru_r01.yaml": {Data: []byte(`outbound: oru_r01
version: 2
let:
  Status: report.status
  ok: lookup("no_such_table", report.status)
segments:
  - PID: {3: =cx(patient.identifier)}
  - MSH:
      1: "|"
      9: {1: ORU, 2: [R01]}
  - OBX:
      each: lines(report.text)
      5: =PID-3
  - OBX:
      each: lines(report.text)
      as: report
      abc: x
  - PV1: {use: nothing}
  - ZZ: {}
`)},
		"outbound/wrong.yaml": {Data: []byte("outbound: other\nversion: 0\nsegments: []\n")},
	}
	_, err := Load(Source{Base: []fs.FS{Shipped(), broken}})
	probs, ok := err.(Problems)
	if !ok {
		t.Fatalf("Load: want Problems, got %v", err)
	}
	text := probs.Error()
	for _, want := range []string{
		`shipped/outbound/oru_r01.yaml:4: let.Status: "Status" is not a name`,
		`shipped/outbound/oru_r01.yaml:5: no code table named "no_such_table"`,
		"shipped/outbound/oru_r01.yaml:7: segments[0]: the first segment must be MSH",
		"shipped/outbound/oru_r01.yaml:9: segments[1].MSH: MSH-1 and MSH-2 are the delimiters",
		"shipped/outbound/oru_r01.yaml:10: segments[1].MSH-9.2: a component does not repeat",
		"shipped/outbound/oru_r01.yaml:12: segments[2].OBX.each: each: needs as:",
		"shipped/outbound/oru_r01.yaml:13: segments[2].OBX-5: expression \"PID-3\": PID-3 is an HL7 path",
		`shipped/outbound/oru_r01.yaml:16: segments[3].OBX.as: "report" is already a name here`,
		`shipped/outbound/oru_r01.yaml:17: segments[3].OBX: "abc": want a number`,
		`shipped/outbound/oru_r01.yaml:18: segments[4].PV1.use: no partial named "nothing"`,
		`shipped/outbound/oru_r01.yaml:19: segments[5]: "ZZ" is not a segment ID`,
		`outbound/wrong.yaml: outbound: the name "other" differs from the file name "wrong"`,
		"outbound/wrong.yaml: version: a positive number is required",
		"outbound/wrong.yaml: segments: the template is required",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("problems lack %q; got:\n%s", want, text)
		}
	}
}

func TestOutboundFacilityOverrideAndReload(t *testing.T) {
	dir := t.TempDir()
	stmarys := filepath.Join(dir, "stmarys")
	if err := os.MkdirAll(filepath.Join(stmarys, "tables"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stmarys, "tables", "oru_options.yaml"), ftOptions["tables/oru_options.yaml"].Data, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := NewReloader(Config{Dir: filepath.Join(dir, "site"), Facilities: map[string]string{"STMARYS": stmarys}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := r.Current()
	own, other := s.Outbound("STMARYS", "oru_r01"), s.Outbound("OTHER", "oru_r01")
	if own == nil || other == nil || own == other || own.Version() == other.Version() {
		t.Fatalf("STMARYS's table override must give it its own oru_r01 (versions %v, %v)", own, other)
	}
	render := func(o *Outbound) string {
		out, err := o.Render(OutboundInput{Resources: resources(t, "report-final.json"), Message: OutboundMessage{ControlID: "V", Time: reportTime}})
		if err != nil {
			t.Fatal(err)
		}
		m, _ := hl7.Parse(out)
		return m.Value("OBX[1]-2")
	}
	if render(own) != "FT" || render(other) != "TX" {
		t.Errorf("STMARYS renders %s, another hospital %s; want FT and TX", render(own), render(other))
	}
	// The site's own oru_r01 is picked up by a reload and used by hospitals without an override
	// of it (STMARYS overrides only a table: it gets the site's mapping with its table).
	site := filepath.Join(dir, "site", "outbound")
	if err := os.MkdirAll(site, 0o755); err != nil {
		t.Fatal(err)
	}
	shipped, _ := fs.ReadFile(Shipped(), "outbound/oru_r01.yaml")
	edited := bytes.Replace(shipped, []byte("version: 1"), []byte("version: 7"), 1)
	edited = bytes.Replace(edited, []byte("24: RAD"), []byte("24: CT"), 1)
	if err := os.WriteFile(filepath.Join(site, "oru_r01.yaml"), edited, 0o644); err != nil {
		t.Fatal(err)
	}
	if !r.Check() {
		t.Fatal("the site's outbound mapping was not loaded")
	}
	for _, f := range []string{"STMARYS", "OTHER"} {
		o := r.Current().Outbound(f, "oru_r01")
		if !strings.HasPrefix(o.Version(), "oru_r01@7+") {
			t.Errorf("%s: version %s, want the site's oru_r01@7", f, o.Version())
		}
		out, _ := o.Render(OutboundInput{Resources: resources(t, "report-final.json"), Message: OutboundMessage{ControlID: "V", Time: reportTime}})
		if m, err := hl7.Parse(out); err != nil || m.Value("OBR-24") != "CT" {
			t.Errorf("%s: OBR-24 is not the site's", f)
		}
	}
}

func TestOutboundTestsLoadAndRun(t *testing.T) {
	s := shippedSet(t)
	files, err := LoadTests(Shipped())
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	for _, r := range s.Run(files) {
		if strings.Contains(r.File, "outbound/") {
			ran++
			if !strings.HasPrefix(r.Mapping, "oru_r01@") {
				t.Errorf("%s: mapping %q", r.Name, r.Mapping)
			}
		}
	}
	if ran < 5 {
		t.Errorf("%d outbound tests ran, want the 5 or more of shipped/outbound/oru_r01_test.yaml", ran)
	}
	// A failing expectation is reported with the path and both values.
	bad := []TestFile{{File: "x_test.yaml", Outbound: "oru_r01", OutboundTests: []OutboundTestCase{{
		Name: "wrong status", Resources: map[string]any{"report": map[string]any{"status": "final"}},
		Expect: map[string]any{"OBR-25": "P"}}}}}
	res := s.Run(bad)
	if len(res) != 1 || res[0].Passed || !strings.Contains(strings.Join(res[0].Details, "\n"), `OBR-25 differs:`) {
		t.Errorf("results: %+v", res)
	}
}

func TestCodingSystemNamesCoverCodingSystems(t *testing.T) {
	// Every system an inbound coding system name maps to has a name to map back to.
	for name, uri := range codingSystems {
		if strings.HasPrefix(uri, "http://terminology.hl7.org/CodeSystem/v2-") {
			continue
		}
		if codingSystemNames[uri] == "" {
			t.Errorf("%s (%s) has no name in codingSystemNames", uri, name)
		}
	}
}

func TestTS(t *testing.T) {
	ny := zone(t, "America/New_York")
	for _, tc := range []struct {
		in   any
		want any
		bad  bool
	}{
		{in: "1980", want: "1980"},
		{in: "1980-01", want: "198001"},
		{in: "1980-01-02", want: "19800102"},
		{in: "2026-11-27T15:42:10.512Z", want: "20261127104210-0500"},
		{in: "2026-07-01T12:00:00+02:00", want: "20260701060000-0400"},
		{in: nil, want: nil},
		{in: "", want: nil},
		{in: "1980-02-30", bad: true},
		{in: "2026-11-27 15:42", bad: true},
		{in: "2026-11-27T15:42Z", bad: true},
		{in: 1980.0, bad: true},
	} {
		got, err := fnTS(&state{loc: ny}, []any{tc.in})
		if tc.bad {
			if err == nil {
				t.Errorf("ts(%v) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ts(%v) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

// TestRenderedORUsParseWithPeers parses every golden ORU with python-hl7 (Debian python3-hl7)
// and, when FERRY_PEERS_DIR names an installed copy of ../shared/peers, with @medplum/core's
// Hl7Message: both must see the segments, MSH-10, PID-3 and each OBX-5 as hl7.Parse does.
func TestRenderedORUsParseWithPeers(t *testing.T) {
	type view struct {
		Segments  []string `json:"segments"`
		ControlID string   `json:"control_id"`
		PID3      string   `json:"pid3"`
		OBX5      []string `json:"obx5"`
	}
	var files []string
	want := map[string]view{}
	for _, c := range renderCases(t) {
		out, err := caseSet(t, c).Outbound("STMARYS", "oru_r01").Render(OutboundInput{Resources: resources(t, c.report, c.without...), Message: c.msg})
		if err != nil {
			t.Fatal(err)
		}
		if c.name == "final-latin1" {
			continue // the peers below read UTF-8
		}
		f := filepath.Join(t.TempDir(), c.name+".hl7")
		if err := os.WriteFile(f, out, 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
		m, _ := hl7.Parse(out)
		v := view{ControlID: m.Value("MSH-10"), PID3: m.Segments()[1].Field(3).Value()}
		for _, sg := range m.Segments() {
			v.Segments = append(v.Segments, sg.Name())
		}
		for i := 1; i <= m.Count("OBX"); i++ {
			v.OBX5 = append(v.OBX5, m.Value(fmt.Sprintf("OBX[%d]-5", i)))
		}
		want[f] = v
	}
	compare := func(t *testing.T, peer string, raw bool, got map[string]view) {
		for _, f := range files {
			g, w := got[f], want[f]
			if raw { // the peer does not unescape: compare the raw text with ours
				m, _ := hl7.Parse(mustRead(t, f))
				w.PID3 = m.Segments()[1].Field(3).Raw()
				w.OBX5 = nil
				for _, sg := range m.Segments() {
					if sg.Name() == "OBX" {
						w.OBX5 = append(w.OBX5, sg.Field(5).Raw())
					}
				}
			}
			wj, _ := json.Marshal(w)
			gj, _ := json.Marshal(g)
			if !bytes.Equal(wj, gj) {
				t.Errorf("%s reads %s differently:\n %s\n ours %s", peer, filepath.Base(f), gj, wj)
			}
		}
	}

	t.Run("python-hl7", func(t *testing.T) {
		py := pythonWithHL7(t)
		script := `
import hl7, json, sys
out = {}
for f in sys.argv[1:]:
    m = hl7.parse(open(f, encoding="utf-8", newline="").read())
    un = lambda s: m.unescape(str(s)).replace("\r", "\n")
    out[f] = {"segments": [str(s[0]) for s in m], "control_id": str(m.segment("MSH")[10]),
              "pid3": un(m.segment("PID")[3]), "obx5": [un(s[5]) if len(s) > 5 else "" for s in m.segments("OBX")]}
print(json.dumps(out))
`
		cmd := exec.Command(py, append([]string{"-c", script}, files...)...)
		cmd.Dir = t.TempDir() // never import the Go package hl7/ as a Python namespace package
		res, err := cmd.Output()
		if err != nil {
			t.Fatalf("python-hl7: %v\n%s", err, stderrOf(err))
		}
		var got map[string]view
		if err := json.Unmarshal(res, &got); err != nil {
			t.Fatal(err)
		}
		compare(t, "python-hl7", false, got)
	})

	t.Run("medplum", func(t *testing.T) {
		peers := os.Getenv("FERRY_PEERS_DIR")
		if peers == "" {
			msg := "FERRY_PEERS_DIR not set: @medplum/core's HL7 parser is skipped; see .ci/run"
			if os.Getenv("FERRY_REQUIRE_PEERS") == "1" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
		script := `
import { readFileSync } from "node:fs";
import { Hl7Message } from "@medplum/core";
const out = {};
for (const f of process.argv.slice(1)) {
  const m = Hl7Message.parse(readFileSync(f, "utf8"));
  out[f] = { segments: m.segments.map(s => s.name).filter(n => n !== ""),
    control_id: m.getSegment("MSH").getField(10).toString(),
    pid3: m.getSegment("PID").getField(3).toString(),
    obx5: m.getAllSegments("OBX").map(s => s.getField(5).toString()) };
}
console.log(JSON.stringify(out));
`
		cmd := exec.Command("node", append([]string{"--input-type=module", "-e", script}, files...)...)
		cmd.Dir = peers
		res, err := cmd.Output()
		if err != nil {
			t.Fatalf("@medplum/core: %v\n%s", err, stderrOf(err))
		}
		var got map[string]view
		if err := json.Unmarshal(res, &got); err != nil {
			t.Fatal(err)
		}
		compare(t, "@medplum/core", true, got)
	})
}

func mustRead(t *testing.T, f string) []byte {
	t.Helper()
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func stderrOf(err error) []byte {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.Stderr
	}
	return nil
}

// pythonWithHL7 returns a Python interpreter that has python-hl7 (Debian python3-hl7 installs
// it for /usr/bin/python3, which need not be the first python3 on PATH), skipping the test —
// or failing it with FERRY_REQUIRE_PEERS=1 — when there is none.
func pythonWithHL7(t *testing.T) string {
	t.Helper()
	var candidates []string
	if p, err := exec.LookPath("python3"); err == nil {
		candidates = append(candidates, p)
	}
	candidates = append(candidates, "/usr/bin/python3")
	for _, p := range candidates {
		cmd := exec.Command(p, "-c", "import hl7; hl7.parse")
		cmd.Dir = t.TempDir()
		if cmd.Run() == nil {
			return p
		}
	}
	msg := "python3 with python-hl7 not found (install Debian python3-hl7); set FERRY_REQUIRE_PEERS=1 to fail instead of skipping"
	if os.Getenv("FERRY_REQUIRE_PEERS") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// BenchmarkRenderORU renders a final report of 11 lines with its impression: the mapping's share
// of each report delivery.
func BenchmarkRenderORU(b *testing.B) {
	o := shippedSet(b).Outbound("", "oru_r01")
	in := OutboundInput{Resources: resources(b, "report-final.json"), Message: OutboundMessage{ControlID: "B1", Time: reportTime}}
	out, err := o.Render(in)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(out)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := o.Render(in); err != nil {
			b.Fatal(err)
		}
	}
}
