package engine

import (
	"crypto/x509"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/ferryhealth/ferry/fhir"
	"github.com/ferryhealth/ferry/hl7"
)

// Message classes a sender may be allowed to send (facilities[].senders[].messages). A code of
// its own (MSH-9.1, e.g. "SIU") may be listed too, for types accepted beyond these.
const (
	ClassOrders  = "orders"  // ORM, OMI, OMG: imaging orders and their changes
	ClassADT     = "adt"     // ADT that admits, registers or updates a patient
	ClassMerges  = "merges"  // ADT that merges, links, moves or changes a patient's identifiers
	ClassResults = "results" // ORU: reports from a dictation system
)

// MessageClasses are the classes a sender entry may name.
var MessageClasses = []string{ClassOrders, ClassADT, ClassMerges, ClassResults}

// mergeEvents are the ADT trigger events that merge patients or move or change identifiers
// (HL7 v2.5.1 §3.6: A18, A30, A34–A36, A39–A42 merges; A43, A44 moves; A37 unlink, A24 link;
// A46–A51 identifier changes): they change which record is the patient, so they are their own
// class.
var mergeEvents = []string{"A18", "A24", "A30", "A34", "A35", "A36", "A37", "A39", "A40", "A41", "A42",
	"A43", "A44", "A45", "A46", "A47", "A48", "A49", "A50", "A51"}

// MessageClass is the class of a message type (MSH-9.1 and MSH-9.2): orders, adt, merges,
// results, else the message code itself.
func MessageClass(code, trigger string) string {
	switch code {
	case "ORM", "OMI", "OMG":
		return ClassOrders
	case "ADT":
		if slices.Contains(mergeEvents, trigger) {
			return ClassMerges
		}
		return ClassADT
	case "ORU":
		return ClassResults
	}
	return code
}

// SenderTrust says which systems may send which messages from where: per hospital (MSH-4), its
// sending applications (MSH-3), the message classes each may send, and the source addresses
// and client certificates it must come from (issue "Trust at every door"; docs/security.md).
// The zero value (no facilities) trusts every sender: Ferry's demo mode, in which the MLLP
// listener serves the loopback interface only.
type SenderTrust struct {
	Facilities []TrustedFacility
}

// TrustedFacility is one hospital as the configuration lists it.
type TrustedFacility struct {
	SendingFacility string // MSH-4.1
	// Senders, when not empty, are the only applications that may send for this facility, each
	// with what and from where. Empty: any application, every class, from anywhere.
	Senders []TrustedSender
	// AllowMerges lets this facility's senders send merges (ADT A18, A40 …); without it they
	// are refused whatever Senders says.
	AllowMerges bool
	// Issuers are the assigning authorities of this facility's patient identifiers (a CX.4
	// namespace or an identifier system): a merge must name two patients of these.
	Issuers []string
}

// TrustedSender is one sending application of a facility.
type TrustedSender struct {
	Application string // MSH-3.1; "" any
	// Messages are the classes (MessageClasses) or message codes it may send; empty: all
	// (merges only where the facility allows them).
	Messages []string
	// Addresses are the networks the connection must come from; empty: anywhere.
	Addresses []netip.Prefix
	// Certificates are names the client certificate (verified under mutual TLS) must carry in
	// its subject (the whole DN, or its CN) or its subject alternative names (DNS, URI, email);
	// empty: no certificate asked for.
	Certificates []string
}

// Sender is who sent a message, as far as Ferry can tell: the MSH header says who it claims to
// be, the connection where it comes from.
type Sender struct {
	Application, Facility string // MSH-3.1, MSH-4.1
	MessageCode, Trigger  string // MSH-9.1, MSH-9.2
	Addr                  netip.Addr
	// Certificate is the client certificate verified under mutual TLS, nil without one.
	Certificate *x509.Certificate
}

// Refusal says why a sender is not trusted with a message: the ERR a refused message is
// answered with (AR, code 207) — naming only header values, never message content.
type Refusal struct {
	Field int    // MSH field at fault: 3 application, 4 facility, 9 message type
	Text  string // safe to log and send back
}

// Demo reports whether every sender is trusted (no facility configured).
func (t *SenderTrust) Demo() bool { return t == nil || len(t.Facilities) == 0 }

// Check returns nil when s may send its message, else why not.
func (t *SenderTrust) Check(s Sender) *Refusal {
	if t.Demo() {
		return nil
	}
	f := t.facility(s.Facility)
	if f == nil {
		return &Refusal{Field: 4, Text: "sending facility " + strconv.Quote(limit(s.Facility, 40)) + " is not configured to send to Ferry"}
	}
	class := MessageClass(s.MessageCode, s.Trigger)
	if class == ClassMerges && !f.AllowMerges {
		return &Refusal{Field: 9, Text: "merges (" + limit(s.MessageCode+"^"+s.Trigger, 20) + ") are not allowed for facility " + strconv.Quote(f.SendingFacility)}
	}
	if len(f.Senders) == 0 {
		return nil
	}
	// Allowed when one entry of the application allows the message from where it came; else
	// refused for where it came from when an entry allows its type, else for its type.
	var typeRefusal, whereRefusal *Refusal
	named := false
	for _, e := range f.Senders {
		if e.Application != "" && e.Application != s.Application {
			continue
		}
		named = true
		switch {
		case !e.allows(class, s.MessageCode):
			typeRefusal = &Refusal{Field: 9, Text: fmt.Sprintf("%s messages (%s) are not allowed from application %q of facility %q",
				class, limit(s.MessageCode+"^"+s.Trigger, 20), limit(s.Application, 40), f.SendingFacility)}
		case !e.fromAddress(s.Addr):
			whereRefusal = &Refusal{Field: 4, Text: fmt.Sprintf("application %q of facility %q may not send from %s", limit(s.Application, 40), f.SendingFacility, s.Addr)}
		case !e.certified(s.Certificate):
			whereRefusal = &Refusal{Field: 4, Text: fmt.Sprintf("application %q of facility %q must present a client certificate naming %s", limit(s.Application, 40), f.SendingFacility, strings.Join(e.Certificates, " or "))}
		default:
			return nil
		}
	}
	if !named {
		return &Refusal{Field: 3, Text: "sending application " + strconv.Quote(limit(s.Application, 40)) + " is not configured for facility " + strconv.Quote(f.SendingFacility)}
	}
	if whereRefusal != nil {
		return whereRefusal
	}
	return typeRefusal
}

// Unbound lists the facilities whose merges or results may come from any address without a
// client certificate — trusted on their MSH-4 alone; serve warns about each.
func (t *SenderTrust) Unbound() []string {
	var out []string
	if t.Demo() {
		return nil
	}
	for _, f := range t.Facilities {
		open := len(f.Senders) == 0
		for _, e := range f.Senders {
			risky := len(e.Messages) == 0 || slices.Contains(e.Messages, ClassMerges) || slices.Contains(e.Messages, ClassResults)
			if risky && len(e.Addresses) == 0 && len(e.Certificates) == 0 {
				open = true
			}
		}
		if open {
			out = append(out, f.SendingFacility)
		}
	}
	return out
}

// MergeIssuers returns the issuers a facility's merges must stay within, and whether the
// facility is configured (false in demo mode: no limit).
func (t *SenderTrust) MergeIssuers(sendingFacility string) ([]string, bool) {
	if t.Demo() {
		return nil, false
	}
	f := t.facility(sendingFacility)
	if f == nil {
		return nil, true
	}
	if len(f.Issuers) == 0 {
		return []string{f.SendingFacility}, true
	}
	return f.Issuers, true
}

func (t *SenderTrust) facility(name string) *TrustedFacility {
	for i := range t.Facilities {
		if t.Facilities[i].SendingFacility == name {
			return &t.Facilities[i]
		}
	}
	return nil
}

func (e *TrustedSender) allows(class, code string) bool {
	if len(e.Messages) == 0 {
		return true
	}
	return slices.Contains(e.Messages, class) || slices.Contains(e.Messages, code)
}

func (e *TrustedSender) fromAddress(a netip.Addr) bool {
	if len(e.Addresses) == 0 {
		return true
	}
	a = a.Unmap()
	for _, p := range e.Addresses {
		if a.IsValid() && p.Contains(a) {
			return true
		}
	}
	return false
}

func (e *TrustedSender) certified(c *x509.Certificate) bool {
	if len(e.Certificates) == 0 {
		return true
	}
	if c == nil {
		return false
	}
	names := []string{c.Subject.String(), c.Subject.CommonName}
	names = append(names, c.DNSNames...)
	names = append(names, c.EmailAddresses...)
	for _, u := range c.URIs {
		names = append(names, u.String())
	}
	for _, want := range e.Certificates {
		for _, n := range names {
			if n != "" && strings.EqualFold(n, want) {
				return true
			}
		}
	}
	return false
}

// ForeignIssuers returns the issuers of every other configured facility, less this one's: a
// number in another hospital's register is that hospital's to send. nil in demo mode.
func (t *SenderTrust) ForeignIssuers(sendingFacility string) []string {
	own, ok := t.MergeIssuers(sendingFacility)
	if !ok {
		return nil
	}
	var out []string
	for _, f := range t.Facilities {
		if f.SendingFacility == sendingFacility {
			continue
		}
		theirs, _ := t.MergeIssuers(f.SendingFacility)
		for _, is := range theirs {
			if !slices.ContainsFunc(own, func(o string) bool { return strings.EqualFold(o, is) }) {
				out = append(out, is)
			}
		}
	}
	return out
}

// ofIssuers reports whether a patient has an identifier of one of issuers.
func ofIssuers(patient fhir.Patient, issuers []string) bool {
	return slices.ContainsFunc(patient.Identifier, func(id fhir.Identifier) bool { return identifierOfIssuers(id, issuers) })
}

// identifierOfIssuers reports whether an identifier is of one of issuers: its system, or the
// namespace it was assigned by (assigner.display, CX.4).
func identifierOfIssuers(id fhir.Identifier, issuers []string) bool {
	for _, is := range issuers {
		if is != "" && (is == id.System || strings.EqualFold(is, id.Assigner)) {
			return true
		}
	}
	return false
}

// untrusted is the verdict for a message whose sender is not trusted with it: AR with ERR 207
// at the MSH field at fault (HL7 table 0357: application internal error — the sender is not
// permitted, nothing in the message's syntax is wrong).
func untrusted(h hl7.Header, r *Refusal) verdict {
	return reject(h, hl7.Reject, "untrusted", hl7.ErrorDetail{
		Segment: "MSH", Sequence: 1, Field: r.Field, Code: hl7.CodeApplicationInternalError, Text: r.Text,
	})
}
