package dimse

import "testing"

// TestRestrictedWithoutPeers: a listener configured with an unknown-caller policy but no peers
// yet applies the policy (the review found it allowed everyone); an unrestricted one with no
// peers is the demo that allows everything.
func TestRestrictedWithoutPeers(t *testing.T) {
	t.Parallel()
	s := &Server{Restricted: true, UnknownCallers: CallerPolicy{Echo: true}}
	r := s.rightsOf("ATTACKER", "192.0.2.9:4000", nil)
	if r.refuse || !r.allows(OpEcho) || r.allows(OpFindWorklist) || r.allows(OpStore) {
		t.Errorf("restricted, no peers: %+v; want echo only", r)
	}
	if r := (&Server{Restricted: true}).rightsOf("ATTACKER", "192.0.2.9:4000", nil); !r.refuse {
		t.Errorf("restricted, no peers, nothing allowed: %+v; want the association refused", r)
	}
	if r := (&Server{}).rightsOf("ANYONE", "192.0.2.9:4000", nil); r.refuse || !r.allows(OpStore) || !r.allows(OpFindWorklist) {
		t.Errorf("demo: %+v; want everything allowed", r)
	}
}
