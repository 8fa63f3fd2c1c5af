package main

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// freezableProxy forwards TCP connections to a database and can stop forwarding ("freeze") while
// keeping every connection open, as a database stopped with SIGSTOP, or cut off by a partition,
// looks to its client: requests go out, no answer comes back. It is the unit boundary between
// Ferry and the shared PostgreSQL, which a test must not stop.
type freezableProxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	frozen bool
	thawed chan struct{} // closed when a freeze ends
	down   bool          // killed: every connection closed, new ones refused (closed at once)
	conns  []net.Conn
}

func startFreezableProxy(t *testing.T, target string) *freezableProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezableProxy{ln: ln, target: target, thawed: make(chan struct{})}
	close(p.thawed)
	t.Cleanup(func() {
		p.thaw()
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
	})
	go p.serve()
	return p
}

func (p *freezableProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go func() {
			p.gate() // a connection opened while frozen is not answered either
			p.mu.Lock()
			down := p.down
			p.mu.Unlock()
			if down {
				c.Close() // a database that is not running: the connection is refused
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				return
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go p.pipe(up, c)
			p.pipe(c, up)
		}()
	}
}

// pipe copies src to dst, holding every chunk while the proxy is frozen.
func (p *freezableProxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.gate()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// gate returns once the proxy is not frozen.
func (p *freezableProxy) gate() {
	p.mu.Lock()
	ch := p.thawed
	p.mu.Unlock()
	<-ch
}

func (p *freezableProxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.frozen {
		p.frozen, p.thawed = true, make(chan struct{})
	}
}

// kill is the database killed: every open connection closed, new ones refused until restart.
func (p *freezableProxy) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *freezableProxy) restart() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

func (p *freezableProxy) thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.frozen {
		p.frozen = false
		close(p.thawed)
	}
}

// startFerryBehindProxy starts Ferry with config on a fresh PostgreSQL schema reached through a
// freezableProxy, and returns both.
func startFerryBehindProxy(t *testing.T, config string) (*ferryProcess, *freezableProxy) {
	t.Helper()
	dir := t.TempDir()
	u, err := url.Parse(freshPostgresSchema(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	proxy := startFreezableProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	return startFerry(t, u.String(), dir, serveOptions{Config: config}), proxy
}

// TestDatabaseFrozen is issue 18's frozen database: while PostgreSQL answers nothing, every
// message is answered AE with ERR 207 within commit.timeout and /readyz answers 503 within 2 s;
// once it answers again the service is back at once, the messages resent are stored once each
// (an in-doubt commit is recognised as the resend's original), and nothing acknowledged is lost.
func TestDatabaseFrozen(t *testing.T) {
	t.Parallel()
	p, proxy := startFerryBehindProxy(t, "commit: {timeout: 2s}\nhttp: {answer_timeout: 2s}\n")
	storescu := requirePeer(t, "storescu", "dcmtk")
	instance := studyFile(t, t.TempDir())
	dicomHost, dicomPort, _ := net.SplitHostPort(p.DICOMAddr)
	cstore := func() (string, time.Duration) {
		start := time.Now()
		out, _ := exec.Command(storescu, "-v", "-aec", "FERRY", dicomHost, dicomPort, instance).CombinedOutput()
		return string(out), time.Since(start)
	}

	sender := dialMLLP(t, p.MLLPAddr)
	before := ormMessage("STMARYS", "FRZ-BEFORE")
	if ack, err := sender.roundTrip(before, hangGuard); err != nil || ack.Code != "AA" {
		t.Fatalf("before the freeze: %v, %v; want AA", ack, err)
	}

	proxy.freeze()
	// Several senders at once while the database is frozen: one message in a transaction that
	// cannot end (its commit in doubt), the others waiting to enter one.
	const senders = 4
	ids := make([]string, senders)
	type answer struct {
		ack  *ackInfo
		err  error
		took time.Duration
	}
	answers := make([]answer, senders)
	var wg sync.WaitGroup
	for i := range senders {
		ids[i] = fmt.Sprintf("FRZ-%d", i)
		c := dialMLLP(t, p.MLLPAddr)
		wg.Go(func() {
			start := time.Now()
			ack, err := c.roundTrip(ormMessage("STMARYS", ids[i]), hangGuard)
			answers[i] = answer{ack, err, time.Since(start)}
		})
	}
	// A C-STORE and an API read in the same window: the C-STORE fails within commit.timeout
	// (the peer sends it again), the read is answered 503 within http.answer_timeout.
	var (
		storeOut           string
		storeTook, apiTook time.Duration
		apiCode            int
	)
	wg.Go(func() { storeOut, storeTook = cstore() })
	wg.Go(func() {
		start := time.Now()
		apiCode = p.get(t, "/fhir/r4/Patient?identifier=FRZ", nil)
		apiTook = time.Since(start)
	})
	start := time.Now()
	code := p.get(t, "/readyz", nil)
	readyTook := time.Since(start)
	wg.Wait()
	if strings.Contains(storeOut, "Received Store Response (Success)") {
		t.Errorf("C-STORE while the database is frozen answered Success:\n%s", storeOut)
	}
	t.Logf("C-STORE while frozen ended in %v", storeTook.Round(time.Millisecond))
	if apiCode != http.StatusServiceUnavailable {
		t.Errorf("FHIR read while the database is frozen: %d, want 503", apiCode)
	}
	t.Logf("FHIR read answered %d in %v while frozen (http.answer_timeout 2s)", apiCode, apiTook.Round(time.Millisecond))
	if code != http.StatusServiceUnavailable {
		t.Errorf("/readyz while the database is frozen: %d, want 503", code)
	}
	t.Logf("/readyz answered %d in %v while frozen", code, readyTook.Round(time.Millisecond))
	for i, a := range answers {
		if a.err != nil || a.ack.Code != "AE" || !a.ack.hasERRCode("207") {
			t.Errorf("message %s while frozen: %v, %v; want AE with ERR 207", ids[i], a.ack, a.err)
		}
		t.Logf("message %s answered %s in %v while frozen (commit.timeout 2s)", ids[i], a.ack.Code, a.took.Round(time.Millisecond))
	}

	proxy.thaw()
	thawed := time.Now()
	// Each sender resends what was answered AE: stored once, whether or not its first copy
	// was committed after all.
	for i, id := range ids {
		if ack, err := sender.roundTrip(ormMessage("STMARYS", id), hangGuard); err != nil || ack.Code != "AA" {
			t.Errorf("resending %s after the freeze: %v, %v; want AA", id, ack, err)
		}
		if i == 0 {
			t.Logf("first message after the thaw answered AA in %v", time.Since(thawed).Round(time.Millisecond))
		}
	}
	if out, _ := cstore(); !strings.Contains(out, "Received Store Response (Success)") {
		t.Errorf("C-STORE sent again after the freeze: no Success\n%s", out)
	}
	// Ready again once a commit has gone through: each message sent is one.
	for i := 0; ; i++ {
		if ack, err := sender.roundTrip(ormMessage("STMARYS", fmt.Sprintf("FRZ-AFTER-%d", i)), hangGuard); err != nil || ack.Code != "AA" {
			t.Fatalf("after the freeze: %v, %v; want AA", ack, err)
		}
		if code := p.get(t, "/readyz", nil); code == http.StatusOK {
			break
		} else if i == 10 {
			t.Fatalf("/readyz after the freeze and %d commits: %d, want 200", i+1, code)
		}
	}

	for _, id := range append([]string{"FRZ-BEFORE"}, ids...) {
		ms := p.byControlID(t, id)
		originals := 0
		for _, m := range ms {
			if m.Status != "duplicate" {
				originals++
			}
		}
		if originals != 1 {
			t.Errorf("message %s stored as %v; want one original (and duplicates of it)", id, statuses(ms))
		}
	}
}

// TestDatabaseKilledUnderLoad is issue 18's PostgreSQL killed and restarted while senders keep
// sending: its connections cut and new ones refused, then accepted again (the proxy stands in for
// the server a test must not stop). While it is down messages are answered AE (never AA for one
// not stored); once it is back the service resumes without a restart of Ferry; every message
// answered AA is stored exactly once, and each resent one is recognised.
func TestDatabaseKilledUnderLoad(t *testing.T) {
	t.Parallel()
	p, proxy := startFerryBehindProxy(t, "commit: {timeout: 2s}\n")

	const senders, perSender = 4, 30
	var (
		mu    sync.Mutex
		acked = map[string]bool{}
		codes = map[string]int{}
		wg    sync.WaitGroup
	)
	// killAt: the kill comes once a third of the messages are answered, and the restart once
	// the senders have had answers while it was down.
	killAt, restartAt := make(chan struct{}), make(chan struct{})
	var answered, answeredDown int
	for s := range senders {
		c := dialMLLP(t, p.MLLPAddr)
		wg.Go(func() {
			for i := 0; i < perSender; i++ {
				id := fmt.Sprintf("KILL-%d-%d", s, i)
				for {
					ack, err := c.roundTrip(ormMessage("STMARYS", id), hangGuard)
					if err != nil {
						t.Errorf("sending %s: %v", id, err)
						return
					}
					mu.Lock()
					codes[ack.Code]++
					answered++
					if answered == senders*perSender/3 {
						close(killAt)
					}
					if proxyDown(proxy) {
						// An AA now is a commit that ended before the kill: checked below,
						// as every AA is, to be stored.
						answeredDown++
						if answeredDown == senders {
							close(restartAt)
						}
					}
					if ack.Code == "AA" {
						acked[id] = true
					}
					mu.Unlock()
					if ack.Code == "AA" {
						break
					}
					// AE: the sender sends it again, as a real one does.
				}
			}
		})
	}
	<-killAt
	proxy.kill()
	<-restartAt
	proxy.restart()
	wg.Wait()
	t.Logf("answers: %v", codes)
	if codes["AE"] == 0 {
		t.Error("no message was answered AE while the database was down")
	}
	for s := range senders {
		for i := range perSender {
			id := fmt.Sprintf("KILL-%d-%d", s, i)
			if !acked[id] {
				t.Errorf("message %s never answered AA", id)
				continue
			}
			originals := 0
			ms := p.byControlID(t, id)
			for _, m := range ms {
				if m.Status != "duplicate" {
					originals++
				}
			}
			if originals != 1 {
				t.Errorf("message %s stored as %v; want one original", id, statuses(ms))
			}
		}
	}
	if code := p.get(t, "/readyz", nil); code != http.StatusOK {
		t.Errorf("/readyz after the database is back and commits went through: %d, want 200", code)
	}
}

// proxyDown reports whether the proxy stands for a killed database.
func proxyDown(p *freezableProxy) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.down
}
