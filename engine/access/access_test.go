package access

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParsePractitioner(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, want string
		system   string
		wantErr  bool
	}{
		{in: "http://hl7.org/fhir/sid/us-npi|1234567893", want: "http://hl7.org/fhir/sid/us-npi|1234567893", system: "http://hl7.org/fhir/sid/us-npi"},
		{in: " LEE01 ", want: "LEE01"},
		{in: "|LEE01", wantErr: true},
		{in: "urn:x|", wantErr: true},
		{in: "", wantErr: true},
		{in: "a|b|c", wantErr: true},
	} {
		p, err := ParsePractitioner(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParsePractitioner(%q): %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if err == nil && (p.String() != tc.want || p.System != tc.system) {
			t.Errorf("ParsePractitioner(%q) = %+v, want %q", tc.in, p, tc.want)
		}
	}
	any := Practitioner{Value: "LEE01"}
	npi := Practitioner{System: "urn:npi", Value: "1"}
	if !any.Matches("urn:whatever", "LEE01") || !npi.Matches("urn:npi", "1") || npi.Matches("urn:other", "1") {
		t.Error("Matches: a value alone matches any system; a system and value only that system")
	}
}

func TestParseLifetimeAndScopes(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Duration{"": DefaultTokenLifetime, "0": 0, "90d": 90 * 24 * time.Hour, "12h": 12 * time.Hour} {
		if got, err := ParseLifetime(in); err != nil || got != want {
			t.Errorf("ParseLifetime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"-1d", "0d", "99999d", "soon", "-5m"} {
		if _, err := ParseLifetime(bad); err == nil {
			t.Errorf("ParseLifetime(%q): no error", bad)
		}
	}
	got, err := ParseScopes([]string{"reports:write,dicomweb:write", "reports:write"})
	if err != nil || len(got) != 2 {
		t.Errorf("ParseScopes: %v, %v; want two, each once", got, err)
	}
	if _, err := ParseScopes([]string{"everything"}); err == nil {
		t.Error("ParseScopes(everything): no error")
	}
}

// TestGrants: each role's permissions (docs/security.md's table), a system user's only its
// scopes, and no identity nothing.
func TestGrants(t *testing.T) {
	t.Parallel()
	all := []Permission{PermMessages, PermMappings, PermDeliveries, PermReconciliation, PermDashboards, PermFHIRRead,
		PermReportsWrite, PermDICOMwebRead, PermDICOMwebWrite, PermUsers, PermAudit, PermOperations, PermBreakGlass}
	want := map[Role][]Permission{
		RoleAdmin:       all,
		RoleAnalyst:     {PermMessages, PermMappings, PermDeliveries, PermReconciliation, PermDashboards},
		RoleRadiologist: {PermFHIRRead, PermReportsWrite, PermDICOMwebRead},
		RolePhysician:   {PermFHIRRead, PermDICOMwebRead, PermBreakGlass}, // limited to its patients (Reader)
		RoleSystem:      {PermReportsWrite},
	}
	for role, perms := range want {
		id := &Identity{User: "u", Role: role, Scopes: []Permission{PermReportsWrite}}
		for _, p := range all {
			granted := false
			for _, q := range perms {
				granted = granted || q == p
			}
			if id.Grants(p) != granted {
				t.Errorf("%s grants %s = %v, want %v", role, p, id.Grants(p), granted)
			}
		}
	}
	var none *Identity
	if none.Grants(PermFHIRRead) {
		t.Error("no identity grants fhir:read")
	}
}

func TestPasswords(t *testing.T) {
	t.Parallel()
	h, err := HashPassword("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=65536,t=3,p=4$") {
		t.Errorf("hash %q: want argon2id with RFC 9106's second parameters", h)
	}
	for pw, want := range map[string]bool{"correct horse battery staple": true, "correct horse battery stapl": false, "": false} {
		if ok, err := checkPassword(h, pw); err != nil || ok != want {
			t.Errorf("checkPassword(%q) = %v, %v; want %v", pw, ok, err, want)
		}
	}
	if _, err := HashPassword("short"); !errors.Is(err, ErrPasswordPolicy) {
		t.Errorf("a short password: %v, want ErrPasswordPolicy", err)
	}
	if ok, err := checkPassword("$argon2id$v=19$m=4294967295,t=1,p=1$AAAA$AAAA", "x"); ok || err == nil {
		t.Error("a stored hash asking for 4 TiB of memory was used")
	}
}

// FuzzAuthenticateToken: whatever a client puts after "Bearer", authentication fails cleanly
// without a store (no panic, ErrUnauthenticated), and only the bootstrap token passes.
func FuzzAuthenticateToken(f *testing.F) {
	for _, s := range []string{"", "ferry_0123456789abcdef_" + strings.Repeat("A", 43), "ferry__", "ferry_zz_", "bootstrap-token-for-the-fuzzer"} {
		f.Add(s)
	}
	svc := &Service{BootstrapToken: "bootstrap-token-for-the-fuzzer"}
	f.Fuzz(func(t *testing.T, text string) {
		id, err := svc.AuthenticateToken(context.Background(), text)
		if text == svc.BootstrapToken {
			if err != nil || id.Role != RoleAdmin {
				t.Fatalf("the bootstrap token: %v", err)
			}
			return
		}
		if !errors.Is(err, ErrUnauthenticated) || id != nil {
			t.Fatalf("AuthenticateToken(%q) = %+v, %v; want ErrUnauthenticated", text, id, err)
		}
	})
}

func FuzzParsePractitioner(f *testing.F) {
	for _, s := range []string{"urn:npi|1", "LEE01", "|", "a|b|c", " x "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePractitioner(s)
		if err != nil {
			return
		}
		again, err := ParsePractitioner(p.String())
		if err != nil || again != p {
			t.Fatalf("ParsePractitioner(%q) = %+v, which does not read back: %+v, %v", s, p, again, err)
		}
	})
}
