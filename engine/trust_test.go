package engine

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"net/netip"
	"net/url"
	"testing"

	"github.com/ferryhealth/ferry/fhir"
)

func TestSenderTrust(t *testing.T) {
	t.Parallel()
	ris := &x509.Certificate{Subject: pkix.Name{CommonName: "ris.stmarys.example", Organization: []string{"St Mary's"}},
		DNSNames: []string{"ris.stmarys.example"}}
	uri, _ := url.Parse("spiffe://stmarys/ris")
	other := &x509.Certificate{Subject: pkix.Name{CommonName: "evil.example"}, URIs: []*url.URL{uri}}
	trust := &SenderTrust{Facilities: []TrustedFacility{
		{SendingFacility: "OPEN"},
		{SendingFacility: "STMARYS", AllowMerges: true, Senders: []TrustedSender{
			{Application: "RIS", Messages: []string{ClassOrders, ClassMerges}, Addresses: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")},
				Certificates: []string{"ris.stmarys.example"}},
			{Application: "RIS", Messages: []string{ClassADT}},
			{Application: "PACS", Messages: []string{"SIU"}, Certificates: []string{"spiffe://stmarys/ris"}},
			{Application: "DICT", Messages: []string{"ORU"}, Addresses: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}},
		}},
	}}
	lan := netip.MustParseAddr("10.1.2.3")
	wan := netip.MustParseAddr("192.0.2.7")
	for _, tt := range []struct {
		name      string
		s         Sender
		wantField int // 0: allowed
	}{
		{"an unknown facility", Sender{Application: "X", Facility: "EVILCORP", MessageCode: "ADT", Trigger: "A40", Addr: lan}, 4},
		{"a facility without restrictions: any application, from anywhere", Sender{Application: "ANY", Facility: "OPEN", MessageCode: "ORU", Trigger: "R01", Addr: wan}, 0},
		{"but not merges unless allowed", Sender{Application: "ANY", Facility: "OPEN", MessageCode: "ADT", Trigger: "A40", Addr: wan}, 9},
		{"an identifier change is a merge too", Sender{Facility: "OPEN", MessageCode: "ADT", Trigger: "A47", Addr: wan}, 9},
		{"the RIS, its orders, from its network, with its certificate", Sender{Application: "RIS", Facility: "STMARYS", MessageCode: "ORM", Trigger: "O01", Addr: lan, Certificate: ris}, 0},
		{"the RIS's merge, allowed for the facility", Sender{Application: "RIS", Facility: "STMARYS", MessageCode: "ADT", Trigger: "A40", Addr: lan, Certificate: ris}, 0},
		{"the RIS's orders without a certificate", Sender{Application: "RIS", Facility: "STMARYS", MessageCode: "ORM", Trigger: "O01", Addr: lan}, 4},
		{"the RIS's orders with another's certificate", Sender{Application: "RIS", Facility: "STMARYS", MessageCode: "ORM", Trigger: "O01", Addr: lan, Certificate: other}, 4},
		{"the RIS's orders from outside its network", Sender{Application: "RIS", Facility: "STMARYS", MessageCode: "OMI", Trigger: "O23", Addr: wan, Certificate: ris}, 4},
		{"the RIS's orders from an IPv4-mapped address in its network", Sender{Application: "RIS", Facility: "STMARYS", MessageCode: "ORM", Trigger: "O01", Addr: netip.MustParseAddr("::ffff:10.1.2.3"), Certificate: ris}, 0},
		{"the RIS's ADT, by its second entry, from anywhere", Sender{Application: "RIS", Facility: "STMARYS", MessageCode: "ADT", Trigger: "A08", Addr: wan}, 0},
		{"the RIS's results, allowed by no entry", Sender{Application: "RIS", Facility: "STMARYS", MessageCode: "ORU", Trigger: "R01", Addr: lan, Certificate: ris}, 9},
		{"an application the facility did not list", Sender{Application: "EVILAPP", Facility: "STMARYS", MessageCode: "ORU", Trigger: "R01", Addr: lan}, 3},
		{"a known class listed by its message code", Sender{Application: "DICT", Facility: "STMARYS", MessageCode: "ORU", Trigger: "R01", Addr: lan}, 0},
		{"a message code listed by name, certificate by URI SAN", Sender{Application: "PACS", Facility: "STMARYS", MessageCode: "SIU", Trigger: "S12", Addr: wan, Certificate: other}, 0},
	} {
		r := trust.Check(tt.s)
		switch {
		case tt.wantField == 0 && r != nil:
			t.Errorf("%s: refused (%s), want allowed", tt.name, r.Text)
		case tt.wantField != 0 && r == nil:
			t.Errorf("%s: allowed, want refused at MSH-%d", tt.name, tt.wantField)
		case r != nil && r.Field != tt.wantField:
			t.Errorf("%s: refused at MSH-%d (%s), want MSH-%d", tt.name, r.Field, r.Text, tt.wantField)
		}
	}
	if r := (&SenderTrust{}).Check(Sender{Facility: "ANYONE", MessageCode: "ADT", Trigger: "A40"}); r != nil {
		t.Errorf("demo mode refused a sender: %s", r.Text)
	}
	if got := trust.Unbound(); len(got) != 1 || got[0] != "OPEN" {
		t.Errorf("Unbound: %v, want OPEN (no senders) alone", got)
	}
	if got := trust.ForeignIssuers("STMARYS"); len(got) != 1 || got[0] != "OPEN" {
		t.Errorf("ForeignIssuers(STMARYS): %v, want OPEN's register", got)
	}
	if is, ok := trust.MergeIssuers("OPEN"); !ok || len(is) != 1 || is[0] != "OPEN" {
		t.Errorf("MergeIssuers default: %v %v, want the sending facility", is, ok)
	}
}

func TestIdentifierContradicts(t *testing.T) {
	t.Parallel()
	known := []map[string]any{
		{"system": "urn:oid:1.2.3", "value": "000123"},
		{"value": "A-77", "assigner": map[string]any{"display": "stjohns"}},
	}
	for _, tt := range []struct {
		name string
		id   map[string]any
		want bool
	}{
		{"the same number", map[string]any{"system": "urn:oid:1.2.3", "value": "000123"}, false},
		{"the same number without its zeros", map[string]any{"system": "urn:oid:1.2.3", "value": "123"}, false},
		{"another number of the same issuer", map[string]any{"system": "urn:oid:1.2.3", "value": "124"}, true},
		{"the same issuer by its namespace", map[string]any{"value": "a77", "assigner": map[string]any{"display": "STJOHNS"}}, false},
		{"another number by the namespace", map[string]any{"value": "A-78", "assigner": map[string]any{"display": "STJOHNS"}}, true},
		{"an issuer the patient has no number of", map[string]any{"system": "urn:oid:9.9", "value": "1"}, false},
		{"no issuer at all", map[string]any{"value": "999"}, false},
	} {
		var knownIDs []fhir.Identifier
		for _, k := range known {
			knownIDs = append(knownIDs, fhir.IdentifierOf(k))
		}
		if got := identifierContradicts(fhir.IdentifierOf(tt.id), knownIDs); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}
