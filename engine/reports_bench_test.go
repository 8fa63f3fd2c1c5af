package engine_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/outbox"
	"github.com/ferryhealth/ferry/fhir"
)

// BenchmarkReportSubmit is the report intake's hot path on the embedded store: each op is one
// DiagnosticReport version taken by Reports.Submit for a known order — validated, its order,
// patient and study found, the lifecycle checked, completed (category, references, the text
// as text/plain and HTML), validated again, stored with its MLLP delivery, the ORU rendered by
// a stand-in. An amended version each time, the text differing, so that each op stores one.
func BenchmarkReportSubmit(b *testing.B) {
	ctx := context.Background()
	h := newOrderHarness(b)
	h.mustAccept(mshORM, pidFor("000123", "DOE^JANE"), orc("NW", "PLB1", "SC"), obr("PLB1", "ACCB1"))
	v, err := fhir.NewValidator()
	if err != nil {
		b.Fatal(err)
	}
	rs := &engine.Reports{Store: h.st, Validator: v,
		Destinations: func(string) []outbox.Destination {
			return []outbox.Destination{{Name: "ehr", Kind: outbox.MLLP, Address: "127.0.0.1:1"}}
		},
		Render: func(_ string, _ outbox.Destination, r *engine.ReportVersion) ([]byte, string, error) {
			return []byte("MSH|^~\\&|FERRY||||||ORU^R01|" + r.ControlID + "|P|2.5.1\r"), "bench@1", nil
		},
	}
	if _, _, err := rs.Submit(ctx, reportJSON("final", "ACCB1", "No acute finding."), ""); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, _, err := rs.Submit(ctx, reportJSON("amended", "ACCB1", fmt.Sprintf("Addendum %d: no acute finding.", i)), ""); err != nil {
			b.Fatal(err)
		}
	}
}
