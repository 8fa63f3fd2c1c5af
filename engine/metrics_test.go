package engine

import (
	"context"
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestTypeLabel(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ code, trigger, want string }{
		{"ORM", "O01", "ORM^O01"},
		{"OMI", "O23", "OMI^O23"},
		{"ORU", "R01", "ORU^R01"},
		{"ADT", "A01", "ADT^A01"},
		{"ADT", "A40", "ADT^A40"},
		{"ADT", "A62", "ADT^A62"},
		{"ADT", "A63", "ADT^other"},
		{"ADT", "Z99", "ADT^other"},
		{"ADT", "", "ADT"},
		{"ACK", "O01", "ACK"},
		{"ORM", "O99", "ORM^other"},
		{"ZZZ", "Z01", "other"},
		{"XYZ", "", "other"},
		{"orm", "O01", "other"},
		{"", "", "none"},
		{"ORM<script>", "O01", "other"},
	} {
		if got := typeLabel(tc.code, tc.trigger); got != tc.want {
			t.Errorf("typeLabel(%q, %q) = %q, want %q", tc.code, tc.trigger, got, tc.want)
		}
	}
}

// 1,000 messages with distinct made-up types leave the message series count bounded by the
// known set, not by what senders invent (issue 17 item 9).
func TestMetricsSeriesBoundedUnderJunkTypes(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	in := NewInbound("test", &memCommitter{}, nil, m)
	for i := range 1000 {
		typ := fmt.Sprintf("Z%02d^X%03d", i%100, i)
		switch i % 4 {
		case 1:
			typ = fmt.Sprintf("ADT^Q%02d", i%100)
		case 2:
			typ = fmt.Sprintf("J%d", i)
		case 3:
			typ = fmt.Sprintf("ORM^O01^%d", i) // a made-up structure is not part of the label
		}
		msh := fmt.Sprintf(`MSH|^~\&|RIS|STMARYS|FERRY|FERRY|20261127083000||%s|J%d|P|2.3`, typ, i)
		in.Receive(context.Background(), Received{Data: seg(msh, pid)})
	}
	// Values: other, ADT^other, ORM^O01, each with the ACK codes answered (AR, AE, AA, …).
	series := map[string]int{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		series[mf.GetName()] = len(mf.GetMetric())
	}
	if n := series["ferry_inbound_messages_total"]; n == 0 || n > 3*6 {
		t.Fatalf("1,000 junk message types made %d series of ferry_inbound_messages_total, want at most 18", n)
	}
	if n := series["ferry_inbound_rejects_total"]; n > 10 {
		t.Errorf("1,000 junk message types made %d series of ferry_inbound_rejects_total", n)
	}
}
