package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// loadTestConfig loads yaml as `ferry serve --config` does: parsed, defaults set, validated.
func loadTestConfig(t *testing.T, yaml string) (*Config, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ferry.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg.setDefaults()
	return cfg, cfg.Validate()
}

// TestResultsConfig: a facility's destinations as the deliverer takes them — names, HL7 version,
// MSH-5/6, the hospital's time zone — and the reading group as the reports' performer; a bad
// destination, time zone or reading group is refused, naming its key.
func TestResultsConfig(t *testing.T) {
	t.Parallel()
	const facility = "facilities:\n  - id: stmarys\n    sending_facility: STMARYS\n"
	t.Run("Destinations", func(t *testing.T) {
		t.Parallel()
		cfg, err := loadTestConfig(t, facility+`    timezone: America/Chicago
    results:
      - {kind: mllp, address: "ehr:6661", receiving_application: EPIC, version: "2.3.1"}
      - {kind: fhir, base_url: "https://fhir.example/R4"}
reading_group: {name: Northside Teleradiology, system: "http://hl7.org/fhir/sid/us-npi", value: "1999999984"}
`)
		if err != nil {
			t.Fatal(err)
		}
		got := cfg.resultDestinations("STMARYS")
		if len(got) != 2 {
			t.Fatalf("%d destinations, want 2", len(got))
		}
		if d := got[0]; d.Name != "mllp" || d.Version != "2.3.1" || d.ReceivingApplication != "EPIC" ||
			d.ReceivingFacility != "STMARYS" || d.Zone == nil || d.Zone.String() != "America/Chicago" {
			t.Errorf("the MLLP destination: %+v", d)
		}
		if d := got[1]; d.Name != "fhir-2" || d.Version != "2.5.1" || d.BaseURL != "https://fhir.example/R4" {
			t.Errorf("the FHIR destination: %+v", d)
		}
		if d, ok := cfg.resultDestination("STMARYS/fhir-2"); !ok || d.Kind != "fhir" {
			t.Errorf("resultDestination(STMARYS/fhir-2) = %+v, %v", d, ok)
		}
		want := map[string]any{"type": "Organization", "display": "Northside Teleradiology",
			"identifier": map[string]any{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1999999984"}}
		if got := cfg.performer(); !reflect.DeepEqual(got, want) {
			t.Errorf("performer = %v, want %v", got, want)
		}
	})
	t.Run("Defaults", func(t *testing.T) {
		t.Parallel()
		cfg, err := loadTestConfig(t, facility+"    results: [{kind: mllp, address: \"ehr:6661\"}]\n")
		if err != nil {
			t.Fatal(err)
		}
		if d := cfg.resultDestinations("STMARYS")[0]; d.Zone == nil || d.Version != "2.5.1" {
			t.Errorf("defaults: %+v, want the server's zone and 2.5.1", d)
		}
		if cfg.performer() != nil {
			t.Errorf("performer without a reading group: %v", cfg.performer())
		}
	})
	for _, tc := range []struct{ name, yaml, wantErr string }{
		{"BadZone", facility + "    timezone: Mars/Olympus\n", "facilities[0].timezone: unknown time zone Mars/Olympus"},
		{"BadKind", facility + "    results: [{kind: sftp}]\n", `facilities[0].results[0].kind: "sftp" is not mllp or fhir`},
		{"NoAddress", facility + "    results: [{kind: mllp}]\n", "facilities[0].results[0].address: required for kind mllp"},
		{"NoBaseURL", facility + "    results: [{kind: fhir}]\n", "facilities[0].results[0].base_url: required for kind fhir"},
		{"BadVersion", facility + "    results: [{kind: mllp, address: \"ehr:1\", version: \"2.4\"}]\n", `facilities[0].results[0].version: "2.4" is not 2.5.1 or 2.3.1`},
		{"SameName", facility + "    results: [{name: a, kind: mllp, address: \"e:1\"}, {name: a, kind: fhir, base_url: \"http://x\"}]\n", `two destinations are named "a"`},
		{"GroupSystemOnly", "reading_group: {name: X, system: \"http://hl7.org/fhir/sid/us-npi\"}\n", "reading_group: system and value go together"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := loadTestConfig(t, tc.yaml); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Validate: %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestDeliveryDefaults: the deliverer's workers default by store — 8 on the embedded store (one
// writer), 16 on PostgreSQL — half of them per destination; what the config says is kept.
func TestDeliveryDefaults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		yaml                 string
		workers, destination int
	}{
		{"", 8, 4}, // the embedded store by default
		{"database: sqlite:/tmp/x/ferry.db\n", 8, 4},
		{"database: postgres://127.0.0.1/ferry?sslmode=disable\n", 16, 8},
		{"database: sqlite:/tmp/x/ferry.db\ndelivery: {workers: 16}\n", 16, 8},
		{"database: postgres://127.0.0.1/ferry\ndelivery: {workers: 4, per_destination: 4}\n", 4, 4},
	} {
		cfg, err := loadTestConfig(t, tc.yaml)
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		if cfg.Delivery.Workers != tc.workers || cfg.Delivery.PerDestination != tc.destination {
			t.Errorf("%q: workers %d, per destination %d; want %d, %d", tc.yaml,
				cfg.Delivery.Workers, cfg.Delivery.PerDestination, tc.workers, tc.destination)
		}
	}
}

// TestMLLPShapeLimitsConfig: mllp.max_segments and mllp.max_repetitions default to 10,000 and
// 1,000, take what is configured, and refuse what no path could address.
func TestMLLPShapeLimitsConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		yaml       string
		segs, reps int
		err        string // substring of the validation error, "" for none
	}{
		{"", 10_000, 1_000, ""},
		{"mllp: {max_segments: 50000, max_repetitions: 200}\n", 50_000, 200, ""},
		{"mllp: {max_segments: 1}\n", 1, 1_000, "mllp.max_segments"},
		{"mllp: {max_repetitions: -1}\n", 10_000, -1, "mllp.max_repetitions"},
		{"mllp: {max_repetitions: 2000000}\n", 10_000, 2_000_000, "mllp.max_repetitions"},
	} {
		cfg, err := loadTestConfig(t, tc.yaml)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.yaml, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: error %v, want one naming %s", tc.yaml, err, tc.err)
		}
		if cfg.MLLP.MaxSegments != tc.segs || cfg.MLLP.MaxRepetitions != tc.reps {
			t.Errorf("%q: max_segments %d, max_repetitions %d; want %d, %d", tc.yaml,
				cfg.MLLP.MaxSegments, cfg.MLLP.MaxRepetitions, tc.segs, tc.reps)
		}
	}
}

// TestDeployConfig: the configuration docker-compose.yml mounts is valid and not a demo: it
// names who may send and who may call.
func TestDeployConfig(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig("../../deploy/ferry.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The site's mappings are deploy/mappings, which the compose file mounts where the config
	// says; and the container's health is its /readyz, asked by the binary itself.
	compose, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"./deploy/mappings:" + cfg.Mappings.Dir + ":ro", `"healthcheck", "--url"`} {
		if !strings.Contains(string(compose), want) {
			t.Errorf("docker-compose.yml lacks %q", want)
		}
	}
	cfg.Mappings.Dir = "../../deploy/mappings"
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("deploy/ferry.yaml: %v", err)
	}
	if cfg.senderTrust().Demo() || cfg.DICOM.demo() {
		t.Errorf("deploy/ferry.yaml runs a demo: facilities %d, DICOM peers %d", len(cfg.Facilities), len(cfg.DICOM.Peers))
	}
}

// TestLinkingIdentifierRules: linking.identifier_rules files are loaded with their tests run (a
// failing test refuses the configuration, naming the file), and linking.issuers becomes one
// more set of rules, read after them.
func TestLinkingIdentifierRules(t *testing.T) {
	t.Parallel()
	example, err := filepath.Abs("../../engine/patientid/testdata/STMARYS.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := loadTestConfig(t, `linking:
  identifier_rules: ["`+example+`"]
  issuers:
    - {issuer: OUTSIDE, system: "urn:oid:9.9", ignore_leading_zeros: true, prefixes: [OC-]}
`)
	if err != nil {
		t.Fatal(err)
	}
	rules := cfg.matchConfig().Identifiers
	if len(rules) != 2 {
		t.Fatalf("%d sets of rules, want the file's and linking.issuers'", len(rules))
	}
	if rd := rules[0].Read("SMH", "MRN-0012345"); rd.Value != "12345" {
		t.Errorf("the file's rules read SMH MRN-0012345 as %q", rd.Value)
	}
	if rd := rules[1].Read("OUTSIDE", "OC-0077"); rd.System != "urn:oid:9.9" || rd.Value != "77" {
		t.Errorf("linking.issuers read OUTSIDE OC-0077 as %s|%s, want urn:oid:9.9|77", rd.System, rd.Value)
	}

	failing := filepath.Join(t.TempDir(), "failing.yaml")
	if err := os.WriteFile(failing, []byte(`authorities: [{name: A, system: "urn:a", issuers: [A]}]
tests: [{issuer: A, value: "007", want: "7"}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"a failing test", "linking:\n  identifier_rules: [\"" + failing + "\"]\n", "failing.yaml: test 1"},
		{"no such file", "linking:\n  identifier_rules: [/nonexistent/rules.yaml]\n", "linking.identifier_rules"},
		{"an issuer without a system", "linking:\n  issuers: [{issuer: X}]\n", "linking.issuers[0].system: required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := loadTestConfig(t, tc.yaml); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want one naming %q", err, tc.want)
			}
		})
	}
}

// A config with several mistakes is refused with all of them at once, each naming its key as the
// file writes it and saying what to write instead (issue 14, "Day one for a new analyst").
func TestConfigErrorsAllAtOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ferry.yaml")
	body := "mllp:\n  read_timeout: 30\n  max_conections: 5\nhttp:\n  write_timeout: abc\ncommit:\n  workers: 200\nfacilities:\n  - id: STMARYS\n    tz: Europe/London\n    sending_facility: SMH\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := loadConfig(path)
	if err == nil {
		t.Fatal("config with five mistakes accepted")
	}
	for _, want := range []string{
		"mllp.read_timeout: \"30\" has no unit: write 30s",
		"mllp.max_conections: unknown key (did you mean max_connections?)",
		"http.write_timeout: \"abc\" is not a duration",
		"facilities[0].tz: unknown key (known here:",
		"commit.workers: must be from 1 to 64",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	// A file that is not YAML keeps the parser's pointer at the line.
	if err := os.WriteFile(path, []byte("mllp: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadConfig(path); err == nil || !strings.Contains(err.Error(), "[1:7]") {
		t.Errorf("broken YAML: got %v, want the parser's position", err)
	}
}
