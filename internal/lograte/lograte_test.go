package lograte

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// lockedBuffer is a log sink safe for the summary's goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) lines(substr string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range strings.Split(l.b.String(), "\n") {
		if line != "" && strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return out
}

func TestHandlerSuppressesFloods(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var buf lockedBuffer
		logger := slog.New(New(slog.NewTextHandler(&buf, nil), Options{Window: 10 * time.Second, Burst: 5}))
		conn := logger.With("component", "sender") // derived handlers share the counts
		for i := range 100 {
			conn.Warn("MLLP connection attempt failed", "attempt", i)
			logger.Info("audit: delivery replayed", "delivery", i) // below Warn: never suppressed
			time.Sleep(10 * time.Millisecond)
		}
		for range 3 {
			logger.Error("inbound message not stored")
		}
		if got := buf.lines("MLLP connection attempt failed"); len(got) != 5 {
			t.Fatalf("%d warnings written during the flood, want the burst of 5:\n%s", len(got), strings.Join(got, "\n"))
		}
		if got := buf.lines("audit: delivery replayed"); len(got) != 100 {
			t.Errorf("%d info lines written, want all 100", len(got))
		}
		if got := buf.lines("inbound message not stored"); len(got) != 3 {
			t.Errorf("%d lines of another kind written, want 3 (its own count)", len(got))
		}
		time.Sleep(10 * time.Second) // the window ends with no further record
		synctest.Wait()
		sum := buf.lines("suppressed=")
		if len(sum) != 1 || !strings.Contains(sum[0], "MLLP connection attempt failed") || !strings.Contains(sum[0], "suppressed=95") || !strings.Contains(sum[0], "component=sender") {
			t.Fatalf("summary lines %q, want one saying 95 of the warning were suppressed", sum)
		}
		// The flood is over: the next one passes again.
		conn.Warn("MLLP connection attempt failed", "attempt", 100)
		if got := buf.lines("MLLP connection attempt failed"); len(got) != 7 {
			t.Errorf("%d lines after the window, want 5 + the summary + 1", len(got))
		}
	})
}
