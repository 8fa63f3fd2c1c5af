package dimse

// Who may call: AE titles bound to addresses and certificates, and what each caller may do.
// A calling AE title is only a name the peer claims (PS3.8 7.1.1.4); Ferry believes it only from
// the addresses or the client certificate it is bound to.

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Operation names what a caller does on an association, for Peer.Operations and UnknownCallers:
// each Service belongs to one (Service.Operation).
type Operation string

// The operations of the services Ferry serves.
const (
	OpEcho         Operation = "echo"          // C-ECHO (Verification)
	OpFindWorklist Operation = "find_worklist" // C-FIND of the Modality Worklist
	OpStore        Operation = "store"         // C-STORE of the storage SOP classes
)

// Peer is a DICOM application entity Ferry knows: its AE title, where it may call from, and
// what it may do. A caller that claims the AE title but does not meet Addresses, Certificate
// subject and SANs is refused outright (A-ASSOCIATE-RJ, calling-AE-title-not-recognized): it is
// not that peer, and a spoofed name gets nothing, not even the unknown callers' rights.
type Peer struct {
	// AETitle is the calling AE title the peer sends (required).
	AETitle string
	// Addresses it may call from (addresses or CIDR prefixes). Empty: any address.
	Addresses []netip.Prefix
	// CertificateSubject, when set, requires a verified client certificate (TLS with a client
	// CA) whose subject distinguished name is exactly this, as Go writes it (RFC 2253 order,
	// e.g. "CN=ct1.radiology.example,O=St Mary's").
	CertificateSubject string
	// SANs, when not empty, requires a verified client certificate naming one of them as a
	// DNS name, e-mail address, URI or IP address.
	SANs []string
	// Operations it may perform. Empty: every operation.
	Operations []Operation
}

// CallerPolicy says which operations callers with no Peer entry may perform.
type CallerPolicy struct {
	Echo, FindWorklist, Store bool
	// Other allows the operations of services that are none of the three above.
	Other bool
}

// AllowsNothing reports whether the policy refuses every operation.
func (p CallerPolicy) AllowsNothing() bool { return !p.Echo && !p.FindWorklist && !p.Store && !p.Other }

func (p CallerPolicy) allows(op Operation) bool {
	switch op {
	case OpEcho:
		return p.Echo
	case OpFindWorklist:
		return p.FindWorklist
	case OpStore:
		return p.Store
	}
	return p.Other
}

// callerRights is what one association's caller may do, decided at A-ASSOCIATE-RQ.
type callerRights struct {
	known  bool // a Peer entry matched
	refuse bool // reject the association: a spoofed title, or an unknown caller allowed nothing
	reason string
	peer   *Peer
	policy CallerPolicy // for unknown callers
}

func (r callerRights) allows(op Operation) bool {
	if r.peer != nil {
		return len(r.peer.Operations) == 0 || slices.Contains(r.peer.Operations, op)
	}
	return r.policy.allows(op)
}

// rightsOf decides what the caller of an association may do. Without Peers and
// CallingAETitles every caller may do everything unless Restricted (a demo; serve says so in
// its log).
func (s *Server) rightsOf(callingAE, remote string, st *tls.ConnectionState) callerRights {
	if len(s.Peers) == 0 && len(s.CallingAETitles) == 0 && !s.Restricted {
		return callerRights{known: true, policy: CallerPolicy{Echo: true, FindWorklist: true, Store: true, Other: true}}
	}
	if slices.ContainsFunc(s.CallingAETitles, func(t string) bool { return strings.TrimSpace(t) == callingAE }) {
		return callerRights{known: true, policy: CallerPolicy{Echo: true, FindWorklist: true, Store: true, Other: true}}
	}
	var claimed bool
	var why string
	for i := range s.Peers {
		p := &s.Peers[i]
		if strings.TrimSpace(p.AETitle) != callingAE {
			continue
		}
		claimed = true
		if why = p.mismatch(remote, st); why == "" {
			return callerRights{known: true, peer: p}
		}
	}
	if claimed {
		return callerRights{refuse: true, reason: why}
	}
	if s.UnknownCallers.AllowsNothing() {
		return callerRights{refuse: true, reason: "unknown calling AE title"}
	}
	return callerRights{policy: s.UnknownCallers}
}

// mismatch says why a caller that claims the peer's AE title is not it; "" when it is.
func (p *Peer) mismatch(remote string, st *tls.ConnectionState) string {
	if len(p.Addresses) > 0 {
		ap, err := netip.ParseAddrPort(remote)
		if err != nil || !slices.ContainsFunc(p.Addresses, func(pf netip.Prefix) bool { return pf.Contains(ap.Addr().Unmap()) }) {
			return "address not bound to this AE title"
		}
	}
	if p.CertificateSubject == "" && len(p.SANs) == 0 {
		return ""
	}
	leaf := verifiedLeaf(st)
	if leaf == nil {
		return "no verified client certificate for an AE title bound to one"
	}
	if p.CertificateSubject != "" && leaf.Subject.String() != p.CertificateSubject {
		return "client certificate subject not bound to this AE title"
	}
	if len(p.SANs) > 0 && !slices.ContainsFunc(certNames(leaf), func(n string) bool {
		return slices.ContainsFunc(p.SANs, func(want string) bool { return strings.EqualFold(want, n) })
	}) {
		return "client certificate names not bound to this AE title"
	}
	return ""
}

// verifiedLeaf is the client certificate when it was verified against the client CAs.
func verifiedLeaf(st *tls.ConnectionState) *x509.Certificate {
	if st == nil || len(st.VerifiedChains) == 0 || len(st.VerifiedChains[0]) == 0 {
		return nil
	}
	return st.VerifiedChains[0][0]
}

// certNames are a certificate's subject alternative names.
func certNames(c *x509.Certificate) []string {
	names := slices.Clone(c.DNSNames)
	names = append(names, c.EmailAddresses...)
	for _, u := range c.URIs {
		names = append(names, u.String())
	}
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	return names
}

// certSubject is the client certificate's subject for the log ("" without one).
func certSubject(st *tls.ConnectionState) string {
	if leaf := verifiedLeaf(st); leaf != nil {
		return leaf.Subject.String()
	}
	return ""
}

// ParsePrefixes reads addresses and CIDR prefixes ("10.0.0.7", "10.0.0.0/24", "::1").
func ParsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var errs []error
	for _, s := range list {
		s = strings.TrimSpace(s)
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("%q is not an address or CIDR prefix", s))
				continue
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%q is not an address or CIDR prefix", s))
			continue
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, errors.Join(errs...)
}

// validatePeers checks the Peers list.
func (s *Server) validatePeers() []error {
	var errs []error
	if len(s.Peers) > 0 && len(s.CallingAETitles) > 0 {
		errs = append(errs, errors.New("CallingAETitles and Peers: use Peers alone (a Peer with just an AE title is what CallingAETitles was)"))
	}
	known := map[Operation]bool{OpEcho: true, OpFindWorklist: true, OpStore: true}
	for _, svc := range s.Services {
		if svc.Operation != "" {
			known[svc.Operation] = true
		}
	}
	for i, p := range s.Peers {
		if err := checkAETitle(p.AETitle); err != nil {
			errs = append(errs, fmt.Errorf("peers[%d]: %w", i, err))
		}
		for _, op := range p.Operations {
			if !known[op] {
				errs = append(errs, fmt.Errorf("peers[%d] (%s): unknown operation %q", i, p.AETitle, op))
			}
		}
		if (p.CertificateSubject != "" || len(p.SANs) > 0) && (s.TLSConfig == nil || s.TLSConfig.ClientCAs == nil) {
			errs = append(errs, fmt.Errorf("peers[%d] (%s): bound to a certificate, but TLS with client certificates is not configured", i, p.AETitle))
		}
	}
	return errs
}
