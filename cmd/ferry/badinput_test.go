package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestBadInputKeepsServing throws bad input at one ferry serve, each kind on its own connection,
// while a well-behaved sender on another connection keeps sending valid orders: every one of
// those must be answered AA, whatever the others do, and it is answered while a slow sender
// holds a frame open (DESIGN.md rule 3, docs/acks.md). No limit on how fast: the test counts
// answers and orders events, so a busy machine passes it as an idle one does.
//
// Not parallel: it runs before this package's parallel tests, so its slow sender's read_timeout
// is not spent waiting for CPUs the crash test's eight flat-out senders hold.
func TestBadInputKeepsServing(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: -short")
	}
	dir := t.TempDir()
	// read_timeout bounds one whole frame: long enough that the 20 MiB message arrives within
	// it on a loaded machine, short enough for the slow sender's subtest to wait it out.
	const readTimeout = 10 * time.Second
	p := startFerry(t, "sqlite:"+filepath.Join(dir, "ferry.db"), dir, serveOptions{
		Config: "mllp: {read_timeout: 10s}\n",
	})
	run := "B" + randomHex(3)

	well := startWellBehavedSender(t, p.MLLPAddr, run)

	// fresh checks that a new connection is served normally.
	fresh := func(t *testing.T) {
		t.Helper()
		id := run + "-fresh-" + randomHex(3)
		ack, err := dialMLLP(t, p.MLLPAddr).roundTrip(ormMessage("BADINPUT", id), 5*time.Second)
		if err != nil || ack.Code != "AA" || ack.MSA2 != id {
			t.Errorf("a fresh connection after the bad input: %v %v, want AA", ack, err)
		}
	}
	// storedRejected checks that exactly one message with these raw bytes is stored, rejected,
	// with the ACK that was sent and a reason.
	storedRejected := func(t *testing.T, raw []byte, ack *ackInfo) {
		t.Helper()
		found := p.findByRaw(t, raw)
		if len(found) != 1 {
			t.Fatalf("%d stored messages with these bytes, want 1 (rejected messages are kept)", len(found))
		}
		m := found[0]
		if m.Status != "rejected" || m.ACKCode != ack.Code || m.ACK != string(ack.Raw) || m.Error == "" {
			t.Errorf("stored as status=%s ack_code=%s error=%q ack=%q; want rejected, the ACK sent (%q) and a reason",
				m.Status, m.ACKCode, m.Error, m.ACK, ack.Raw)
		}
	}

	t.Run("empty frame", func(t *testing.T) {
		ack, err := dialMLLP(t, p.MLLPAddr).roundTrip(nil, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if ack.Code != "AR" || ack.MSA2 != "" || !ack.hasERRCode("100") {
			t.Errorf("%v, want AR, MSA-2 empty, ERR 100", ack)
		}
		storedRejected(t, []byte{}, ack)
	})

	t.Run("no MSH segment", func(t *testing.T) {
		raw := []byte("PID|1||NOMSH" + run + "^^^BADINPUT^MR||NOBODY^NOMSH\rPV1|1|O\r")
		ack, err := dialMLLP(t, p.MLLPAddr).roundTrip(raw, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if ack.Code != "AR" || ack.MSA2 != "" || !ack.hasERRCode("100") {
			t.Errorf("%v, want AR, MSA-2 empty, ERR 100", ack)
		}
		storedRejected(t, raw, ack)
	})

	t.Run("MSH cut short", func(t *testing.T) {
		raw := []byte(`MSH|^~\&|APP`)
		ack, err := dialMLLP(t, p.MLLPAddr).roundTrip(raw, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if (ack.Code != "AR" && ack.Code != "AE") || len(ack.ERRCodes) == 0 {
			t.Errorf("%v, want AR or AE with an ERR code", ack)
		}
		storedRejected(t, raw, ack)
	})

	t.Run("20 MiB message", func(t *testing.T) {
		id := run + "-big"
		head := ormMessage("BADINPUT", id)
		big := make([]byte, 0, 20<<20+len(head)+32)
		big = append(big, head...)
		big = append(big, "OBX|1|TX|NOTE||"...)
		big = append(big, bytes.Repeat([]byte("A"), 20<<20)...)
		big = append(big, '\r')
		peer := dialMLLP(t, p.MLLPAddr)
		start := time.Now()
		ack, err := peer.roundTrip(big, 60*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("20 MiB message answered in %v", time.Since(start).Round(time.Millisecond))
		if ack.Code != "AR" || ack.MSA2 != id || !ack.hasERRCode("207") {
			t.Errorf("%v, want AR, MSA-2 %q, ERR 207", ack, id)
		}
		// The connection is still usable.
		next := run + "-after-big"
		if ack, err := peer.roundTrip(ormMessage("BADINPUT", next), 5*time.Second); err != nil || ack.Code != "AA" || ack.MSA2 != next {
			t.Errorf("next message on the same connection: %v %v, want AA", ack, err)
		}
		stored := p.byControlID(t, id)
		if len(stored) != 1 {
			t.Fatalf("%d stored with control ID %s, want 1", len(stored), id)
		}
		m := p.message(t, stored[0].ID)
		raw := m.rawBytes(t)
		if m.Status != "rejected" || m.ACKCode != "AR" || m.ACK != string(ack.Raw) || m.Error == "" {
			t.Errorf("stored as status=%s ack_code=%s error=%q; want rejected, AR, the ACK sent and a reason", m.Status, m.ACKCode, m.Error)
		}
		if len(raw) != 64<<10 || !bytes.HasPrefix(big, raw) {
			t.Errorf("stored %d bytes, want the message's first 64 KiB (docs/acks.md)", len(raw))
		}
	})

	t.Run("half a frame then disconnect", func(t *testing.T) {
		id := run + "-half"
		msg := ormMessage("BADINPUT", id)
		before := p.metric(t, "ferry_mllp_frame_errors_total")
		peer := dialMLLP(t, p.MLLPAddr)
		if err := peer.write(append([]byte{0x0B}, msg[:len(msg)/2]...), 5*time.Second); err != nil {
			t.Fatal(err)
		}
		peer.conn.Close()
		// The server notices the truncated frame and counts it.
		waitFor(t, "ferry_mllp_frame_errors_total to grow after a truncated frame", func() bool {
			return p.metric(t, "ferry_mllp_frame_errors_total") > before
		})
		if got := p.byControlID(t, id); len(got) != 0 {
			t.Errorf("half a frame was stored: %+v (the sender got no ACK and still holds it)", got)
		}
		fresh(t)
	})

	t.Run("one byte per second", func(t *testing.T) {
		peer := dialMLLP(t, p.MLLPAddr)
		slow := append([]byte{0x0B}, ormMessage("BADINPUT", run+"-slow")...)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		// Taken before the first byte goes: the server's read_timeout starts later, at the
		// start block, so elapsed below can only be longer than the server's wait.
		start := time.Now()
		go func() {
			defer wg.Done()
			for _, b := range slow {
				if peer.write([]byte{b}, time.Second) != nil {
					return
				}
				select {
				case <-stop:
					return
				case <-time.After(time.Second):
				}
			}
		}()
		defer func() { close(stop); wg.Wait() }()
		type readResult struct {
			n       int64
			err     error
			elapsed time.Duration
		}
		closed := make(chan readResult, 1)
		_ = peer.conn.SetReadDeadline(time.Now().Add(readTimeout + hangGuard)) // guards against hanging only
		go func() {
			n, err := io.Copy(io.Discard, peer.conn)
			closed <- readResult{n, err, time.Since(start)}
		}()
		// While the slow frame is open, the well-behaved sender is answered, three times.
		w0 := well.answered.Load()
		well.waitAnswered(t, w0+3)
		select {
		case r := <-closed:
			t.Errorf("the slow sender's connection ended (after %v, %v) before the well-behaved sender was answered three times; read_timeout is %v",
				r.elapsed.Round(time.Millisecond), r.err, readTimeout)
			closed <- r
		default:
		}
		r := <-closed
		n, err, elapsed := r.n, r.err, r.elapsed
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection still open after %v; want it closed after read_timeout %v", elapsed.Round(time.Millisecond), readTimeout)
		}
		if n != 0 {
			t.Errorf("server sent %d bytes to a sender that never finished its frame, want none", n)
		}
		if elapsed < readTimeout { // a lower bound only: a busy machine can only make it later
			t.Errorf("closed after %v, before read_timeout %v", elapsed.Round(time.Millisecond), readTimeout)
		}
		t.Logf("slow sender disconnected after %v (read_timeout %v)", elapsed.Round(time.Millisecond), readTimeout)
	})

	t.Run("Latin-1 without MSH-18", func(t *testing.T) {
		id := run + "-latin1"
		// ISO-8859-1: Ü = 0xDC, Ö = 0xD6, ß = 0xDF; not valid UTF-8.
		raw := []byte("MSH|^~\\&|E2E|BADINPUT|FERRY|FERRY|20261127083000||ADT^A08|" + id + "|P|2.3\r" +
			"PID|1||MRN" + id + "^^^BADINPUT^MR||M\xDCLLER^J\xD6RG||19800101|M|||Hauptstra\xDFe 1^^K\xD6LN\r" +
			"PV1|1|O\r")
		ack, err := dialMLLP(t, p.MLLPAddr).roundTrip(raw, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if ack.Code != "AA" || ack.MSA2 != id {
			t.Fatalf("%v, want AA", ack)
		}
		stored := p.byControlID(t, id)
		if len(stored) != 1 || stored[0].Status != "accepted" {
			t.Fatalf("stored as %+v, want once, accepted", stored)
		}
		m := p.message(t, stored[0].ID)
		if got := m.rawBytes(t); !bytes.Equal(got, raw) {
			t.Errorf("raw_base64 holds %q, want the bytes as received %q", got, raw)
		}
		if m.Raw != nil {
			t.Errorf("raw %q given for bytes that are not UTF-8; want it omitted", *m.Raw)
		}
	})

	t.Run("random bytes unframed", func(t *testing.T) {
		junk := randomBytes(t, 64<<10)
		// Without a start block they are not a frame: dropped and counted, nothing answered.
		junk = bytes.ReplaceAll(junk, []byte{0x0B}, []byte{0x0A})
		before := p.metric(t, "ferry_mllp_discarded_bytes_total")
		peer := dialMLLP(t, p.MLLPAddr)
		if err := peer.write(junk, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		// A frame after the junk, on the same connection, is read and answered — and its ACK is
		// the first thing the server sends.
		id := run + "-after-junk"
		ack, err := peer.roundTrip(ormMessage("BADINPUT", id), 5*time.Second)
		if err != nil || ack.Code != "AA" || ack.MSA2 != id {
			t.Errorf("message after junk on the same connection: %v %v, want AA", ack, err)
		}
		if got := p.metric(t, "ferry_mllp_discarded_bytes_total") - before; got < float64(len(junk)) {
			t.Errorf("ferry_mllp_discarded_bytes_total grew by %v, want at least %d", got, len(junk))
		}
		fresh(t)
	})

	t.Run("random bytes framed", func(t *testing.T) {
		junk := randomBytes(t, 64<<10)
		junk = bytes.ReplaceAll(junk, []byte{0x1C}, []byte{0x1D}) // one frame, not several
		copy(junk, "JNK")                                         // not an MSH by chance
		ack, err := dialMLLP(t, p.MLLPAddr).roundTrip(junk, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if ack.Code != "AR" || ack.MSA2 != "" || !ack.hasERRCode("100") {
			t.Errorf("%v, want AR, MSA-2 empty, ERR 100 (no MSH segment)", ack)
		}
		storedRejected(t, junk, ack) // byte for byte: NULs and invalid UTF-8 included
		fresh(t)
	})

	sent, failures := well.stop()
	if len(failures) > 0 {
		t.Errorf("the well-behaved sender had %d failures of %d messages:\n%s", len(failures), sent, strings.Join(failures, "\n"))
	}
	if sent < 20 {
		t.Errorf("the well-behaved sender sent only %d messages", sent)
	}
	if len(failures) == 0 {
		t.Logf("well-behaved sender: %d messages, all AA, the slowest in %v", sent, well.slowest.Round(time.Millisecond))
	}
	for _, name := range []string{"ferry_inbound_rejects_total", "ferry_mllp_discarded_bytes_total"} {
		if v := p.metric(t, name); v <= 0 {
			t.Errorf("/metrics: %s = %v, want > 0", name, v)
		}
	}
}

// wellBehavedSender sends valid orders on one connection, one after another, until stopped,
// and records every message not answered AA. It counts the AAs (answered) and signals each
// (progress), so a test can wait for it to be served while something else goes on. Its
// round-trip timeout only guards against hanging; the slowest answer is logged, not judged.
type wellBehavedSender struct {
	quit     chan struct{}
	done     chan struct{}
	sent     int
	failures []string
	slowest  time.Duration
	answered atomic.Int64
	progress chan struct{} // one buffered signal: an AA came since the last look
}

// waitAnswered waits until the sender has had n messages answered AA.
func (w *wellBehavedSender) waitAnswered(t *testing.T, n int64) {
	t.Helper()
	hang := time.After(hangGuard)
	for w.answered.Load() < n {
		select {
		case <-w.progress:
		case <-w.done:
			t.Fatalf("the well-behaved sender stopped at %d answers, want %d", w.answered.Load(), n)
		case <-hang:
			t.Fatalf("the well-behaved sender had %d answers after %v, want %d (a hang guard)", w.answered.Load(), hangGuard, n)
		}
	}
}

func startWellBehavedSender(t *testing.T, addr, run string) *wellBehavedSender {
	peer := dialMLLP(t, addr)
	w := &wellBehavedSender{quit: make(chan struct{}), done: make(chan struct{}), progress: make(chan struct{}, 1)}
	go func() {
		defer close(w.done)
		for n := 0; ; n++ {
			select {
			case <-w.quit:
				return
			case <-time.After(20 * time.Millisecond):
			}
			id := fmt.Sprintf("%s-well-%d", run, n)
			start := time.Now()
			ack, err := peer.roundTrip(ormMessage("WELL", id), hangGuard)
			w.slowest = max(w.slowest, time.Since(start))
			w.sent++
			switch {
			case err != nil:
				w.failures = append(w.failures, fmt.Sprintf("%s: %v", id, err))
				// Keep going on a new connection, so one failure does not hide the rest.
				conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					w.failures = append(w.failures, fmt.Sprintf("redialing: %v", err))
					return
				}
				peer.conn.Close()
				peer = &mllpPeer{conn: conn, r: bufio.NewReader(conn)}
			case ack.Code != "AA" || ack.MSA2 != id:
				w.failures = append(w.failures, fmt.Sprintf("%s: %v, want AA", id, ack))
			default:
				w.answered.Add(1)
				select {
				case w.progress <- struct{}{}:
				default:
				}
			}
		}
	}()
	t.Cleanup(func() {
		select {
		case <-w.quit:
		default:
			close(w.quit)
		}
		<-w.done
		peer.conn.Close()
	})
	return w
}

// stop ends the sender and returns how many messages it sent and what failed.
func (w *wellBehavedSender) stop() (int, []string) {
	close(w.quit)
	<-w.done
	return w.sent, w.failures
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// findByRaw returns, with their details, the stored messages whose bytes are exactly raw. It
// looks through every message of the log.
func (p *ferryProcess) findByRaw(t *testing.T, raw []byte) []apiMessage {
	t.Helper()
	var found []apiMessage
	for _, m := range p.messages(t, url.Values{}) {
		if m.Size != len(raw) {
			continue
		}
		d := p.message(t, m.ID)
		if bytes.Equal(d.rawBytes(t), raw) {
			found = append(found, d)
		}
	}
	return found
}
