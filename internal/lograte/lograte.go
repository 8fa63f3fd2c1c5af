// Package lograte keeps a flood of the same warning from drowning the log (issue 18: 28,344
// WARN lines in 30 s for refused connections, an ERROR per message answered AE during an
// outage). Handler wraps a slog.Handler: of the records at Warn and above with the same level
// and message, the first Burst in each Window pass; the rest are counted, not written, and
// when the window ends one record says how many were suppressed. Records below Warn pass
// untouched: they are off by default or audit what a person did, which must never be dropped.
package lograte

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Defaults of Options.
const (
	DefaultWindow = 10 * time.Second
	DefaultBurst  = 5
)

// Options tunes a Handler; zero fields take the defaults.
type Options struct {
	// Window is the period over which Burst records of one kind pass (default 10s).
	Window time.Duration
	// Burst is how many records of one kind pass in a window (default 5).
	Burst int
}

// Handler is the rate-limiting slog.Handler. Handlers derived by WithAttrs and WithGroup share
// its counts.
type Handler struct {
	next  slog.Handler
	state *state
}

// state is the counts shared by a Handler and those derived from it.
type state struct {
	window time.Duration
	burst  int

	mu    sync.Mutex
	kinds map[kind]*flood
}

// kind is what makes two records "the same": level and message (not the attributes, which
// carry the control ID, the peer, the error that differ from one to the next).
type kind struct {
	level slog.Level
	msg   string
}

// flood is one kind's count in its current window.
type flood struct {
	start      time.Time
	passed     int
	suppressed int
	next       slog.Handler // the handler of a suppressed record, for the summary
	summary    *time.Timer  // set while records are being suppressed
}

// New wraps next.
func New(next slog.Handler, opt Options) *Handler {
	if opt.Window <= 0 {
		opt.Window = DefaultWindow
	}
	if opt.Burst <= 0 {
		opt.Burst = DefaultBurst
	}
	return &Handler{next: next, state: &state{window: opt.Window, burst: opt.Burst, kinds: map[kind]*flood{}}}
}

// Enabled reports whether next handles level.
func (h *Handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

// Handle writes r unless it is one too many of its kind in the current window.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		return h.next.Handle(ctx, r)
	}
	k := kind{r.Level, r.Message}
	s := h.state
	s.mu.Lock()
	f := s.kinds[k]
	if f == nil || r.Time.Sub(f.start) >= s.window && f.suppressed == 0 {
		f = &flood{start: r.Time}
		s.kinds[k] = f
	}
	if f.passed < s.burst {
		f.passed++
		s.mu.Unlock()
		return h.next.Handle(ctx, r)
	}
	f.suppressed++
	f.next = h.next
	if f.summary == nil {
		// Said once the window ends, whether or not another record of the kind comes.
		wait := max(s.window-r.Time.Sub(f.start), 0)
		f.summary = time.AfterFunc(wait, func() { s.summarize(k, f) })
	}
	s.mu.Unlock()
	return nil
}

// summarize writes how many records of kind k were suppressed in f's window, and starts the
// next window: a flood that goes on gets Burst records and a summary per window.
func (s *state) summarize(k kind, f *flood) {
	s.mu.Lock()
	n, next := f.suppressed, f.next
	if s.kinds[k] == f {
		delete(s.kinds, k)
	}
	s.mu.Unlock()
	r := slog.NewRecord(time.Now(), k.level, k.msg, 0)
	r.AddAttrs(slog.Int("suppressed", n), slog.Duration("window", s.window))
	_ = next.Handle(context.Background(), r)
}

// WithAttrs returns a Handler whose records carry attrs, sharing h's counts.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &Handler{next: h.next.WithAttrs(attrs), state: h.state}
}

// WithGroup returns a Handler whose attributes go under name, sharing h's counts.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{next: h.next.WithGroup(name), state: h.state}
}

var _ slog.Handler = (*Handler)(nil)
