package mllp

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// The read and idle timeouts are the subject of these tests, so they run in a synctest bubble:
// the clock is fake, the bounds are exact, and a busy machine cannot make them fail.

// timeoutServer serves an echoHandler in a bubble with the given timeouts and returns a well-
// behaved client on its own connection.
func timeoutServer(t *testing.T, configure func(*Server)) (*pipeListener, *countingObserver, *client, func()) {
	obs := &countingObserver{}
	srv := &Server{Handler: &echoHandler{}, Metrics: obs, Logger: testLogger(t),
		ReadTimeout: 30 * time.Second, FirstFrameTimeout: 10 * time.Minute, IdleTimeout: 10 * time.Minute}
	if configure != nil {
		configure(srv)
	}
	ln, stop := serveInBubble(t, srv)
	return ln, obs, clientOn(ln.dial()), stop
}

// inBubbleRoundTrip sends msg on c and fails the test unless it gets its ACK.
func inBubbleRoundTrip(t *testing.T, c *client, msg string) {
	t.Helper()
	if err := c.w.WriteMsg([]byte(msg)); err != nil {
		t.Fatalf("sending %q: %v", msg, err)
	}
	if ack, err := c.r.Next(); err != nil || string(ack) != "ACK|"+msg {
		t.Fatalf("answer to %q: %q, %v", msg, ack, err)
	}
}

// Slowloris: a frame sent one byte a second is closed ReadTimeout after it started, not before,
// and counted as a timeout; another connection keeps getting its ACKs meanwhile.
func TestServerReadTimeoutClosesSlowFrame(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ln, obs, good, stop := timeoutServer(t, nil)
		defer stop()
		slow := ln.dial()
		closed := closedBy(slow)
		msg := "\x0bMSH|^~\\&|SLOWLORIS|" + strings.Repeat("x", 100)
		start := time.Now()
		for i := 0; !isClosed(closed); i++ {
			if i == len(msg) {
				t.Fatalf("the whole slow frame was read in %v without a timeout", time.Since(start))
			}
			_, _ = slow.Write([]byte{msg[i]}) // fails once the server has closed it
			inBubbleRoundTrip(t, good, "good")
			time.Sleep(time.Second)
			synctest.Wait()
		}
		// Closed at the first check after 30 s: the check at 30 s itself may run just before
		// the deadline's timer fires, so the close is seen at 30 or 31 s.
		if d := time.Since(start); d < 30*time.Second || d > 31*time.Second {
			t.Errorf("slow frame closed after %v, want at the 30s ReadTimeout", d)
		}
		if n := obs.errCount(FrameErrTimeout); n != 1 {
			t.Errorf("timeout reported %d times, want 1", n)
		}
		inBubbleRoundTrip(t, good, "after")
		good.Close()
	})
}

// Bytes outside frames do not start the ReadTimeout: junk trickled for four ReadTimeouts leaves
// the connection open and a frame sent after it is answered.
func TestServerSlowJunkStartsNoReadTimeout(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ln, obs, good, stop := timeoutServer(t, nil)
		defer stop()
		c := clientOn(ln.dial())
		for range 12 { // 120 s of junk, four times the ReadTimeout
			if _, err := c.Write([]byte{'\n'}); err != nil {
				t.Fatalf("connection closed during junk: %v", err)
			}
			time.Sleep(10 * time.Second)
		}
		inBubbleRoundTrip(t, c, "after slow junk")
		if n := obs.errCount(FrameErrTimeout); n != 0 {
			t.Errorf("timeout reported %d times, want 0", n)
		}
		c.Close()
		good.Close()
	})
}

// A connection that has sent a frame and then nothing is closed after IdleTimeout, not before.
func TestServerIdleTimeout(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		_, obs, c, stop := timeoutServer(t, func(s *Server) { s.IdleTimeout = 5 * time.Minute })
		defer stop()
		inBubbleRoundTrip(t, c, "hello")
		closed := closedBy(c)
		time.Sleep(5*time.Minute - time.Second)
		synctest.Wait()
		if isClosed(closed) {
			t.Fatalf("idle connection closed before IdleTimeout")
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if !isClosed(closed) {
			t.Fatalf("idle connection still open after IdleTimeout")
		}
		if n := obs.errCount(FrameErrTimeout); n != 0 {
			t.Errorf("an idle close was reported as %d frame timeouts, want 0", n)
		}
	})
}
