package storetest

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/access"
	"github.com/ferryhealth/ferry/engine/audit"
)

// PeopleStore is what the people-and-access suite needs of a store: users, tokens and sessions
// (access.Store), the audit trail's reads, transactions that append to it (their Tx is an
// audit.Appender), and the database itself, to check that the trail refuses changes.
type PeopleStore interface {
	access.Store
	audit.Reader
	Begin(ctx context.Context) (engine.Tx, error)
	DB() *sql.DB
}

// RunPeople runs the contract suite of access.Store and the audit trail. open is called once per
// subtest and must return a fresh, migrated, empty store that it closes (and removes) in
// t.Cleanup; subtests run in parallel.
func RunPeople(t *testing.T, open func(t *testing.T) PeopleStore) {
	tests := []struct {
		name string
		run  func(t *testing.T, st PeopleStore)
	}{
		{"UsersRoundTrip", testUsersRoundTrip},
		{"DisableKeepsFirstTime", testDisableKeepsFirstTime},
		{"TokensRoundTrip", testTokensRoundTrip},
		{"SessionsRoundTrip", testSessionsRoundTrip},
		{"ServiceTokensAndLogins", testServiceTokensAndLogins},
		{"LoginThrottleSharedByNodes", testLoginThrottleShared},
		{"AuditChainAndFilters", testAuditChain},
		{"AuditRolledBackLeavesNoGap", testAuditRolledBack},
		{"AuditConcurrentAppends", testAuditConcurrent},
		{"AuditRecorderConcurrent", testAuditRecorderConcurrent},
		{"AuditAppendOnly", testAuditAppendOnly},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, open(t))
		})
	}
}

var peopleTime = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

func testUsersRoundTrip(t *testing.T, st PeopleStore) {
	ctx := context.Background()
	lee := &access.User{Name: "dr.lee", Role: access.RolePhysician, CreatedAt: peopleTime,
		Practitioners: []access.Practitioner{{System: "http://hl7.org/fhir/sid/us-npi", Value: "1234567893"}, {Value: "LEE01"}},
		Facilities:    []string{"stmarys", "northside"}, PasswordHash: "$argon2id$x"}
	ana := &access.User{Name: "ana", Role: access.RoleAnalyst, CreatedAt: peopleTime}
	for _, u := range []*access.User{lee, ana} {
		if err := st.PutUser(ctx, u); err != nil {
			t.Fatalf("PutUser %s: %v", u.Name, err)
		}
	}
	if err := st.PutUser(ctx, &access.User{Name: "ana", Role: access.RoleAdmin, CreatedAt: peopleTime}); !errors.Is(err, engine.ErrConflict) {
		t.Errorf("PutUser of a taken name: %v, want engine.ErrConflict", err)
	}
	got, err := st.User(ctx, "dr.lee")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, lee) {
		t.Errorf("User read back\n got %+v\nwant %+v", got, lee)
	}
	if _, err := st.User(ctx, "nobody"); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("User(nobody): %v, want engine.ErrNotFound", err)
	}
	all, err := st.Users(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].Name != "ana" || all[1].Name != "dr.lee" {
		t.Errorf("Users: %d users, want ana then dr.lee", len(all))
	}
	if err := st.PutUser(ctx, &access.User{Name: "", Role: access.RoleAdmin}); err == nil {
		t.Error("PutUser without a name: nil error")
	}
}

func testDisableKeepsFirstTime(t *testing.T, st PeopleStore) {
	ctx := context.Background()
	if err := st.PutUser(ctx, &access.User{Name: "sys", Role: access.RoleSystem, CreatedAt: peopleTime}); err != nil {
		t.Fatal(err)
	}
	first := peopleTime.Add(time.Hour)
	if err := st.DisableUser(ctx, "sys", first); err != nil {
		t.Fatal(err)
	}
	if err := st.DisableUser(ctx, "sys", first.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	u, err := st.User(ctx, "sys")
	if err != nil {
		t.Fatal(err)
	}
	if !u.DisabledAt.Equal(first) {
		t.Errorf("DisabledAt %v, want the first %v", u.DisabledAt, first)
	}
	if err := st.DisableUser(ctx, "nobody", first); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("DisableUser(nobody): %v, want engine.ErrNotFound", err)
	}
}

func testTokensRoundTrip(t *testing.T, st PeopleStore) {
	ctx := context.Background()
	for _, name := range []string{"pscribe", "gw"} {
		if err := st.PutUser(ctx, &access.User{Name: name, Role: access.RoleSystem, CreatedAt: peopleTime}); err != nil {
			t.Fatal(err)
		}
	}
	a := &access.Token{ID: "00000000000000aa", User: "pscribe", Scopes: []access.Permission{access.PermReportsWrite},
		SecretHash: []byte{1, 2, 3}, CreatedAt: peopleTime, ExpiresAt: peopleTime.Add(90 * 24 * time.Hour)}
	b := &access.Token{ID: "00000000000000bb", User: "gw", Scopes: []access.Permission{access.PermDICOMwebWrite, access.PermDICOMwebRead},
		SecretHash: []byte{4, 5, 6}, CreatedAt: peopleTime.Add(time.Minute)}
	for _, tok := range []*access.Token{a, b} {
		if err := st.PutToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	got, err := st.Token(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, a) {
		t.Errorf("Token read back\n got %+v\nwant %+v", got, a)
	}
	all, err := st.Tokens(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].ID != b.ID {
		t.Errorf("Tokens(all): %d, want 2, newest (%s) first", len(all), b.ID)
	}
	mine, err := st.Tokens(ctx, "pscribe")
	if err != nil {
		t.Fatal(err)
	}
	if len(mine) != 1 || mine[0].ID != a.ID {
		t.Errorf("Tokens(pscribe): %v, want only %s", mine, a.ID)
	}
	revoked := peopleTime.Add(2 * time.Hour)
	if err := st.RevokeToken(ctx, a.ID, revoked); err != nil {
		t.Fatal(err)
	}
	if got, err := st.Token(ctx, a.ID); err != nil || !got.RevokedAt.Equal(revoked) {
		t.Errorf("after RevokeToken: %v, RevokedAt %v, want %v", err, got.RevokedAt, revoked)
	}
	if err := st.RevokeToken(ctx, "ffffffffffffffff", revoked); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("RevokeToken of no token: %v, want engine.ErrNotFound", err)
	}
	if _, err := st.Token(ctx, "ffffffffffffffff"); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("Token of no token: %v, want engine.ErrNotFound", err)
	}
}

func testSessionsRoundTrip(t *testing.T, st PeopleStore) {
	ctx := context.Background()
	if err := st.PutUser(ctx, &access.User{Name: "ana", Role: access.RoleAnalyst, CreatedAt: peopleTime}); err != nil {
		t.Fatal(err)
	}
	one := &access.Session{IDHash: []byte("h1"), User: "ana", CSRFToken: "c1", CreatedAt: peopleTime, SeenAt: peopleTime, ExpiresAt: peopleTime.Add(12 * time.Hour)}
	two := &access.Session{IDHash: []byte("h2"), User: "ana", CSRFToken: "c2", CreatedAt: peopleTime, SeenAt: peopleTime, ExpiresAt: peopleTime.Add(12 * time.Hour)}
	for _, s := range []*access.Session{one, two} {
		if err := st.PutSession(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	got, err := st.Session(ctx, one.IDHash)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, one) {
		t.Errorf("Session read back\n got %+v\nwant %+v", got, one)
	}
	seen := peopleTime.Add(5 * time.Minute)
	if err := st.TouchSession(ctx, one.IDHash, seen); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.Session(ctx, one.IDHash); got == nil || !got.SeenAt.Equal(seen) {
		t.Errorf("after TouchSession: %+v, want SeenAt %v", got, seen)
	}
	if err := st.DeleteSession(ctx, one.IDHash); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Session(ctx, one.IDHash); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("Session after DeleteSession: %v, want engine.ErrNotFound", err)
	}
	if err := st.DeleteSession(ctx, one.IDHash); err != nil {
		t.Errorf("DeleteSession of an ended session: %v", err)
	}
	if err := st.DeleteSessions(ctx, "ana"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Session(ctx, two.IDHash); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("Session after DeleteSessions: %v, want engine.ErrNotFound", err)
	}
}

// testServiceTokensAndLogins runs access.Service on the store: every way a credential fails is
// ErrUnauthenticated, and the ones that should work do.
func testServiceTokensAndLogins(t *testing.T, st PeopleStore) {
	ctx := context.Background()
	now := peopleTime
	svc := &access.Service{Store: st, Now: func() time.Time { return now }, BootstrapToken: "bootstrap-token-of-the-test"}
	if err := svc.AddUser(ctx, &access.User{Name: "ana", Role: access.RoleAnalyst}, "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	if err := svc.AddUser(ctx, &access.User{Name: "pscribe", Role: access.RoleSystem}, ""); err != nil {
		t.Fatal(err)
	}
	id, err := svc.AuthenticateToken(ctx, "bootstrap-token-of-the-test")
	if err != nil || id.Role != access.RoleAdmin {
		t.Errorf("bootstrap token: %+v, %v; want admin", id, err)
	}
	text, tok, err := svc.CreateToken(ctx, "pscribe", []access.Permission{access.PermReportsWrite}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	id, err = svc.AuthenticateToken(ctx, text)
	if err != nil || id.User != "pscribe" || !id.Grants(access.PermReportsWrite) || id.Grants(access.PermFHIRRead) {
		t.Errorf("system token: %+v, %v; want pscribe with reports:write only", id, err)
	}
	if _, _, err := svc.CreateToken(ctx, "pscribe", nil, 0); err == nil {
		t.Error("a system token without scopes was created")
	}
	anaText, _, err := svc.CreateToken(ctx, "ana", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	fails := map[string]string{"wrong secret": text[:len(text)-2] + "AA", "not a token": "hello", "empty": ""}
	for name, bad := range fails {
		if _, err := svc.AuthenticateToken(ctx, bad); !errors.Is(err, access.ErrUnauthenticated) {
			t.Errorf("%s: %v, want ErrUnauthenticated", name, err)
		}
	}
	now = now.Add(2 * time.Hour) // past the system token's hour
	if _, err := svc.AuthenticateToken(ctx, text); !errors.Is(err, access.ErrUnauthenticated) {
		t.Errorf("expired token: %v, want ErrUnauthenticated", err)
	}
	if _, err := svc.AuthenticateToken(ctx, anaText); err != nil {
		t.Errorf("a token without expiry: %v", err)
	}

	// Logins: a session that works, then ends.
	sid, sess, ident, err := svc.Login(ctx, "ana", "correct horse battery", "10.0.0.9")
	if err != nil || ident.Role != access.RoleAnalyst || sess.CSRFToken == "" {
		t.Fatalf("login: %v, %+v", err, ident)
	}
	if _, _, err := svc.Session(ctx, sid); err != nil {
		t.Errorf("session just opened: %v", err)
	}
	now = now.Add(access.DefaultIdleTimeout)
	if _, _, err := svc.Session(ctx, sid); !errors.Is(err, access.ErrUnauthenticated) {
		t.Errorf("session idle for the idle timeout: %v, want ErrUnauthenticated", err)
	}
	sid, _, _, err = svc.Login(ctx, "ana", "correct horse battery", "10.0.0.9")
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Logout(ctx, sid); err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.Session(ctx, sid); !errors.Is(err, access.ErrUnauthenticated) {
		t.Errorf("session after logout: %v, want ErrUnauthenticated", err)
	}

	// Throttling: five wrong passwords lock the account, even for the right one, until the window
	// has passed; an unknown name fails the same way.
	for i := range 5 {
		if _, _, _, err := svc.Login(ctx, "ana", fmt.Sprintf("wrong password %d", i), "10.0.0.9"); !errors.Is(err, access.ErrUnauthenticated) {
			t.Fatalf("wrong password: %v", err)
		}
	}
	var f *access.Failure
	if _, _, _, err := svc.Login(ctx, "ana", "correct horse battery", "10.0.0.10"); !errors.As(err, &f) || f.Reason != "throttled" {
		t.Errorf("sixth attempt within the window: %v, want throttled", err)
	}
	now = now.Add(16 * time.Minute)
	sid, _, _, err = svc.Login(ctx, "ana", "correct horse battery", "10.0.0.10")
	if err != nil {
		t.Errorf("login after the throttle window: %v", err)
	}
	if _, _, _, err := svc.Login(ctx, "nobody", "correct horse battery", "10.0.0.10"); !errors.Is(err, access.ErrUnauthenticated) {
		t.Errorf("unknown user: %v, want ErrUnauthenticated", err)
	}

	// Disabling ends sessions and tokens at once.
	if err := svc.DisableUser(ctx, "ana"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.Session(ctx, sid); !errors.Is(err, access.ErrUnauthenticated) {
		t.Errorf("session of a disabled user: %v, want ErrUnauthenticated", err)
	}
	if _, err := svc.AuthenticateToken(ctx, anaText); !errors.Is(err, access.ErrUnauthenticated) {
		t.Errorf("token of a disabled user: %v, want ErrUnauthenticated", err)
	}
	if _, _, _, err := svc.Login(ctx, "ana", "correct horse battery", "10.0.0.11"); !errors.Is(err, access.ErrUnauthenticated) {
		t.Errorf("login of a disabled user: %v, want ErrUnauthenticated", err)
	}

	// Revoking works at once.
	if err := svc.AddUser(ctx, &access.User{Name: "gw", Role: access.RoleSystem}, ""); err != nil {
		t.Fatal(err)
	}
	gwText, gwTok, err := svc.CreateToken(ctx, "gw", []access.Permission{access.PermDICOMwebWrite}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.RevokeToken(ctx, gwTok.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.AuthenticateToken(ctx, gwText); !errors.Is(err, access.ErrUnauthenticated) {
		t.Errorf("revoked token: %v, want ErrUnauthenticated", err)
	}
	_ = tok
}

// testLoginThrottleShared: the failed-login counts live in the store, so two Services on it (two
// nodes behind a load balancer) throttle together: an account locked by failures counted on
// either, an address by more; each only for the window; a success clears the account's count,
// not the address's. Most failures are counted straight into the store, as the other node's
// Login does: each wrong password costs an argon2id check.
func testLoginThrottleShared(t *testing.T, st PeopleStore) {
	ctx := context.Background()
	now := peopleTime
	clock := func() time.Time { return now }
	node1, node2 := &access.Service{Store: st, Now: clock}, &access.Service{Store: st, Now: clock}
	for _, name := range []string{"ana", "carl"} {
		if err := node1.AddUser(ctx, &access.User{Name: name, Role: access.RoleAnalyst}, "correct horse battery"); err != nil {
			t.Fatal(err)
		}
	}
	throttled := func(svc *access.Service, name, address string) bool {
		t.Helper()
		_, _, _, err := svc.Login(ctx, name, "correct horse battery", address)
		var f *access.Failure
		if errors.As(err, &f) && f.Reason == "throttled" {
			return true
		}
		if err != nil {
			t.Fatalf("login of %s from %s: %v", name, address, err)
		}
		return false
	}
	failOn := func(name, address string, n int) { // the other node's failures
		t.Helper()
		for range n {
			if err := st.CountLoginFailure(ctx, name, address, now, now.Add(-15*time.Minute)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Four failures on node 2 and a fifth on node 1 lock the account on both.
	failOn("ana", "10.0.0.1", 4)
	if _, _, _, err := node1.Login(ctx, "ana", "wrong", "10.0.0.2"); !errors.Is(err, access.ErrUnauthenticated) {
		t.Fatalf("wrong password: %v, want ErrUnauthenticated", err)
	}
	if !throttled(node1, "ana", "10.0.1.1") || !throttled(node2, "ana", "10.0.1.2") {
		t.Error("the account is not locked on both nodes after five failures across them")
	}
	if throttled(node2, "carl", "10.0.0.1") {
		t.Error("an address is locked after four failures")
	}
	// Past the window, the account may try again.
	now = now.Add(15 * time.Minute)
	if throttled(node2, "ana", "10.0.1.3") {
		t.Error("the account is still locked after the window")
	}
	// Twenty failures from one address, of any names, lock the address for everyone.
	failOn("guess", "10.0.0.99", 20)
	if !throttled(node1, "carl", "10.0.0.99") {
		t.Error("the address is not locked after twenty failures")
	}
	// A success clears the account's count: four failures, a success, four more: not locked.
	failOn("carl", "10.0.2.1", 4)
	if throttled(node2, "carl", "10.0.2.2") {
		t.Fatal("locked after four failures")
	}
	failOn("carl", "10.0.2.3", 4)
	if throttled(node1, "carl", "10.0.2.4") {
		t.Error("a success did not clear the account's count")
	}
}

// appendAudit appends e in its own transaction and commits (or rolls back when commit is false).
func appendAudit(t *testing.T, st PeopleStore, e *audit.Event, commit bool) {
	t.Helper()
	ctx := context.Background()
	tx, err := st.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	app, ok := tx.(audit.Appender)
	if !ok {
		tx.Rollback()
		t.Fatalf("the store's Tx (%T) is not an audit.Appender", tx)
	}
	if err := app.AppendAudit(ctx, e); err != nil {
		tx.Rollback()
		t.Fatal(err)
	}
	if !commit {
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func auditEvent(i int, agent, patient string) *audit.Event {
	return &audit.Event{RecordedAt: peopleTime.Add(time.Duration(i) * time.Minute).Add(1234 * time.Nanosecond),
		Action: audit.ActionRead, Outcome: audit.OutcomeSuccess, Agent: agent, Role: "physician",
		Address: "10.0.0.7", Patient: patient, Entity: fmt.Sprintf("GET /fhir/r4/Patient/%d", i)}
}

func testAuditChain(t *testing.T, st PeopleStore) {
	ctx := context.Background()
	if res, err := audit.Verify(ctx, st); err != nil || res.Broken != 0 || res.Events != 0 {
		t.Fatalf("Verify of an empty trail: %+v, %v", res, err)
	}
	for i := range 5 {
		agent := "dr.lee"
		if i%2 == 1 {
			agent = "ana"
		}
		appendAudit(t, st, auditEvent(i, agent, fmt.Sprintf("Patient/%d", i%3)), true)
	}
	all, err := st.AuditEvents(ctx, audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 5 || all[0].Seq != 1 || all[4].Seq != 5 {
		t.Fatalf("AuditEvents: %d events, want seq 1…5", len(all))
	}
	if !all[0].RecordedAt.Equal(peopleTime.Add(time.Microsecond)) {
		t.Errorf("RecordedAt %v, want the microsecond %v", all[0].RecordedAt, peopleTime.Add(time.Microsecond))
	}
	res, err := audit.Verify(ctx, st)
	if err != nil || res.Broken != 0 || res.Events != 5 {
		t.Errorf("Verify: %+v, %v; want 5 events, unbroken", res, err)
	}
	cases := []struct {
		name string
		f    audit.Filter
		want []int64
	}{
		{"agent", audit.Filter{Agent: "ana"}, []int64{2, 4}},
		{"patient", audit.Filter{Patient: "Patient/0"}, []int64{1, 4}},
		{"from", audit.Filter{From: peopleTime.Add(3 * time.Minute)}, []int64{4, 5}},
		{"to", audit.Filter{To: peopleTime.Add(time.Minute)}, []int64{1}},
		{"after and limit", audit.Filter{AfterSeq: 1, Limit: 2}, []int64{2, 3}},
	}
	for _, c := range cases {
		evs, err := st.AuditEvents(ctx, c.f)
		if err != nil {
			t.Fatal(err)
		}
		var got []int64
		for _, e := range evs {
			got = append(got, e.Seq)
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: seqs %v, want %v", c.name, got, c.want)
		}
	}
}

func testAuditRolledBack(t *testing.T, st PeopleStore) {
	ctx := context.Background()
	appendAudit(t, st, auditEvent(0, "a", ""), true)
	appendAudit(t, st, auditEvent(1, "b", ""), false)
	appendAudit(t, st, auditEvent(2, "c", ""), true)
	evs, err := st.AuditEvents(ctx, audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[1].Seq != 2 || evs[1].Agent != "c" {
		t.Errorf("after a rolled-back append: %d events, want 2 with seq 1, 2", len(evs))
	}
	if res, err := audit.Verify(ctx, st); err != nil || res.Broken != 0 {
		t.Errorf("Verify: %+v, %v", res, err)
	}
}

func testAuditConcurrent(t *testing.T, st PeopleStore) {
	ctx := context.Background()
	const workers, each = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				tx, err := st.Begin(ctx)
				if err != nil {
					errs <- err
					return
				}
				if err := tx.(audit.Appender).AppendAudit(ctx, auditEvent(w*each+i, fmt.Sprint("w", w), "")); err != nil {
					tx.Rollback()
					errs <- err
					return
				}
				if err := tx.Commit(); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	res, err := audit.Verify(ctx, st)
	if err != nil || res.Broken != 0 || res.Events != workers*each {
		t.Errorf("Verify after concurrent appends: %+v, %v; want %d events, unbroken", res, err, workers*each)
	}
}

// testAuditRecorderConcurrent: events recorded by many callers at once through one Recorder
// (group-committed: those waiting share a transaction) all land, each caller's with the seq
// and hash it was told, in one unbroken chain.
func testAuditRecorderConcurrent(t *testing.T, st PeopleStore) {
	ctx := context.Background()
	const callers = 32
	rec := &audit.Recorder{Begin: st.Begin}
	evs := make([]*audit.Event, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		evs[i] = auditEvent(i, fmt.Sprint("u", i), fmt.Sprintf("Patient/%d", i))
		wg.Go(func() { errs[i] = rec.Record(ctx, evs[i]) })
	}
	wg.Wait()
	stored, err := st.AuditEvents(ctx, audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != callers {
		t.Fatalf("%d events stored, want %d", len(stored), callers)
	}
	for i, e := range evs {
		if errs[i] != nil {
			t.Fatalf("Record %d: %v", i, errs[i])
		}
		got := stored[e.Seq-1]
		if got.Agent != e.Agent || !bytes.Equal(got.Hash, e.Hash) {
			t.Errorf("caller %d was told seq %d, which holds %s's event (want %s's, with the hash it was told)", i, e.Seq, got.Agent, e.Agent)
		}
	}
	if res, err := audit.Verify(ctx, st); err != nil || res.Broken != 0 || res.Events != callers {
		t.Errorf("Verify after concurrent Records: %+v, %v; want %d events, unbroken", res, err, callers)
	}
}

func testAuditAppendOnly(t *testing.T, st PeopleStore) {
	ctx := context.Background()
	for i := range 3 {
		appendAudit(t, st, auditEvent(i, "dr.lee", "Patient/1"), true)
	}
	for _, stmt := range []string{
		"UPDATE audit_events SET agent = 'someone else' WHERE seq = 2",
		"DELETE FROM audit_events WHERE seq = 3",
	} {
		if _, err := st.DB().ExecContext(ctx, stmt); err == nil {
			t.Errorf("%s: succeeded on an append-only table", stmt)
		}
	}
	if res, err := audit.Verify(ctx, st); err != nil || res.Broken != 0 || res.Events != 3 {
		t.Errorf("Verify: %+v, %v", res, err)
	}
}

// BenchAppendAudit measures appending one audit event in a transaction of its own, as every
// audited read does (audit.Recorder): the chain's row lock, the insert, the head, the commit.
func BenchAppendAudit(b *testing.B, open func(b *testing.B) PeopleStore) {
	st := open(b)
	ctx := context.Background()
	rec := &audit.Recorder{Begin: st.Begin}
	i := 0
	for b.Loop() {
		if err := rec.Record(ctx, auditEvent(i, "dr.lee", "Patient/1")); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchAppendAuditParallel measures appends from many concurrent callers (b.RunParallel, 8 per
// CPU), as concurrent audited reads make them: what each caller's Record costs while others
// record too.
func BenchAppendAuditParallel(b *testing.B, open func(b *testing.B) PeopleStore) {
	st := open(b)
	ctx := context.Background()
	rec := &audit.Recorder{Begin: st.Begin}
	var n atomic.Int64
	b.SetParallelism(8)
	b.ResetTimer() // not the store's opening and migrations
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := rec.Record(ctx, auditEvent(int(n.Add(1)), "dr.lee", "Patient/1")); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
