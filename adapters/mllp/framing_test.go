package mllp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/ferryhealth/ferry/internal/workcount"
)

// frame wraps msg in MLLP block characters.
func frame(msg string) string { return "\x0b" + msg + "\x1c\x0d" }

// readResult is one Next outcome: a message, or an error kind.
type readResult struct {
	msg string
	err string // "", "eof", "truncated", "toolarge:<size>"
}

func readAll(t *testing.T, r *Reader, owned bool) []readResult {
	t.Helper()
	var out []readResult
	for i := 0; i < 100; i++ {
		msg, err := r.next(owned)
		if owned && err == nil && cap(msg) != len(msg) {
			t.Fatalf("NextOwned returned %d bytes in a slice of capacity %d, want it exact", len(msg), cap(msg))
		}
		var tl *TooLargeError
		switch {
		case err == nil:
			if msg == nil {
				t.Fatalf("Next returned a nil message without error")
			}
			out = append(out, readResult{msg: string(msg)})
		case err == io.EOF:
			return append(out, readResult{err: "eof"})
		case errors.Is(err, ErrTruncated):
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("ErrTruncated does not wrap io.ErrUnexpectedEOF")
			}
			return append(out, readResult{err: "truncated"})
		case errors.As(err, &tl):
			out = append(out, readResult{msg: string(tl.Head), err: "toolarge:" + itoa(tl.Size)})
		default:
			t.Fatalf("Next: unexpected error %v", err)
		}
	}
	t.Fatalf("Next did not reach the end of the stream")
	return nil
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestReader(t *testing.T) {
	t.Parallel()
	msh := "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|CTRL1|P|2.5\rPID|1\r"
	big := strings.Repeat("x", 100)
	huge := strings.Repeat("y", 3*readBufferSize+17) // spans several buffer fills
	tests := []struct {
		name      string
		in        string
		max       int
		want      []readResult
		discarded int64
	}{
		{name: "one frame", in: frame(msh), want: []readResult{{msg: msh}, {err: "eof"}}},
		{name: "empty stream", in: "", want: []readResult{{err: "eof"}}},
		{name: "back to back", in: frame("a") + frame("b") + frame("c"),
			want: []readResult{{msg: "a"}, {msg: "b"}, {msg: "c"}, {err: "eof"}}},
		{name: "empty frame", in: frame("") + frame("x"),
			want: []readResult{{msg: ""}, {msg: "x"}, {err: "eof"}}},
		{name: "junk before start", in: "hello\r\n" + frame("a"),
			want: []readResult{{msg: "a"}, {err: "eof"}}, discarded: 7},
		{name: "junk between and after frames", in: frame("a") + "\n\n" + frame("b") + "zz",
			want: []readResult{{msg: "a"}, {msg: "b"}, {err: "eof"}}, discarded: 4},
		{name: "only junk", in: "no start block here\x1c\x0d",
			want: []readResult{{err: "eof"}}, discarded: 21},
		{name: "truncated", in: frame("a") + "\x0bMSH|partial",
			want: []readResult{{msg: "a"}, {err: "truncated"}}},
		{name: "truncated right after start", in: "\x0b", want: []readResult{{err: "truncated"}}},
		{name: "EOF between end block and CR", in: "\x0babc\x1c",
			want: []readResult{{msg: "abc"}, {err: "eof"}}},
		{name: "end block without CR then junk", in: "\x0babc\x1cX" + frame("d"),
			want: []readResult{{msg: "abc"}, {msg: "d"}, {err: "eof"}}, discarded: 1},
		{name: "end block without CR then next frame", in: "\x0babc\x1c\x0bdef\x1c",
			want: []readResult{{msg: "abc"}, {msg: "def"}, {err: "eof"}}},
		{name: "double CR after end block", in: frame("a") + "\r" + frame("b"),
			want: []readResult{{msg: "a"}, {msg: "b"}, {err: "eof"}}, discarded: 1},
		{name: "start block inside a frame is content", in: "\x0ba\x0bb\x1c\x0d",
			want: []readResult{{msg: "a\x0bb"}, {err: "eof"}}},
		{name: "NUL and high bytes kept", in: frame("a\x00\xff\xfeb"),
			want: []readResult{{msg: "a\x00\xff\xfeb"}, {err: "eof"}}},
		{name: "CR LF inside kept", in: frame("MSH|x\r\nPID|1\n"),
			want: []readResult{{msg: "MSH|x\r\nPID|1\n"}, {err: "eof"}}},
		{name: "exactly at the cap", in: frame(big), max: 100,
			want: []readResult{{msg: big}, {err: "eof"}}},
		{name: "one over the cap, reader goes on", in: frame(big+"z") + frame("next"), max: 100,
			want: []readResult{{msg: big, err: "toolarge:101"}, {msg: "next"}, {err: "eof"}}},
		{name: "oversize across buffer fills", in: frame(huge) + frame("next"), max: 1000,
			want: []readResult{{msg: huge[:1000], err: "toolarge:" + itoa(int64(len(huge)))}, {msg: "next"}, {err: "eof"}}},
		{name: "large under cap across buffer fills", in: frame(huge) + frame("next"),
			want: []readResult{{msg: huge}, {msg: "next"}, {err: "eof"}}},
		{name: "oversize then truncated", in: frame(big+"z") + "\x0b" + big, max: 100,
			want: []readResult{{msg: big, err: "toolarge:101"}, {err: "truncated"}}},
	}
	readers := map[string]func(io.Reader) io.Reader{
		"whole":    func(r io.Reader) io.Reader { return r },
		"one byte": iotest.OneByteReader,
		"half":     iotest.HalfReader,
		"data+EOF": iotest.DataErrReader,
	}
	for _, tt := range tests {
		for rname, wrap := range readers {
			for _, owned := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/owned=%v", tt.name, rname, owned), func(t *testing.T) {
					t.Parallel()
					r := NewReader(wrap(strings.NewReader(tt.in)), tt.max)
					got := readAll(t, r, owned)
					if len(got) != len(tt.want) {
						t.Fatalf("got %d results %q, want %d %q", len(got), got, len(tt.want), tt.want)
					}
					for i := range got {
						if got[i] != tt.want[i] {
							t.Errorf("result %d: got %q, want %q", i, trim(got[i]), trim(tt.want[i]))
						}
					}
					if r.Discarded() != tt.discarded {
						t.Errorf("Discarded() = %d, want %d", r.Discarded(), tt.discarded)
					}
				})
			}
		}
	}
}

func trim(r readResult) readResult {
	if len(r.msg) > 40 {
		r.msg = r.msg[:40] + "…"
	}
	return r
}

func TestReaderTooLargeHeadIsCapped(t *testing.T) {
	t.Parallel()
	msg := strings.Repeat("h", HeadSize+5000)
	r := NewReader(strings.NewReader(frame(msg)), HeadSize+10) // the cap is above HeadSize
	_, err := r.Next()
	var tl *TooLargeError
	if !errors.As(err, &tl) {
		t.Fatalf("Next: got %v, want *TooLargeError", err)
	}
	if len(tl.Head) != HeadSize || tl.Size != int64(len(msg)) || tl.Limit != HeadSize+10 {
		t.Errorf("got head %d bytes, size %d, limit %d", len(tl.Head), tl.Size, tl.Limit)
	}
	if !strings.Contains(tl.Error(), "exceeds the limit") || strings.Contains(tl.Error(), "hhh") {
		t.Errorf("Error() = %q: want the sizes and no content", tl.Error())
	}
}

func TestReaderDefaultCap(t *testing.T) {
	t.Parallel()
	if r := NewReader(strings.NewReader(""), 0); r.max != DefaultMaxMessageSize {
		t.Errorf("maxSize 0 gives cap %d, want %d", r.max, DefaultMaxMessageSize)
	}
	if r := NewReader(strings.NewReader(""), -5); r.max != DefaultMaxMessageSize {
		t.Errorf("maxSize -5 gives cap %d, want %d", r.max, DefaultMaxMessageSize)
	}
}

// A sender that omits the CR after the end block and waits for its ACK must get the message at
// once: the Reader must not block reading the byte after 0x1C.
func TestReaderDoesNotWaitForCR(t *testing.T) {
	t.Parallel()
	pr, pw := io.Pipe()
	r := NewReader(pr, 0)
	go pw.Write([]byte("\x0bMSH|a\x1c")) // then nothing, until the pipe is closed
	msg, err := r.Next()
	if err != nil || string(msg) != "MSH|a" {
		t.Fatalf("Next = %q, %v", msg, err)
	}
	pw.Close()
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("second Next = %v, want io.EOF", err)
	}
}

func TestReaderOtherErrorsWrapped(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	r := NewReader(io.MultiReader(strings.NewReader("\x0bMSH|"), iotest.ErrReader(boom)), 0)
	if _, err := r.Next(); !errors.Is(err, boom) || errors.Is(err, ErrTruncated) {
		t.Errorf("inside a frame: got %v, want it to wrap the reader's error", err)
	}
	r = NewReader(iotest.ErrReader(boom), 0)
	if _, err := r.Next(); !errors.Is(err, boom) {
		t.Errorf("between frames: got %v, want it to wrap the reader's error", err)
	}
}

// The buffer of a large message is reused while large messages come, and dropped after a small
// one, so it is not kept for the rest of the connection.
func TestReaderDropsLargeBuffer(t *testing.T) {
	t.Parallel()
	huge := strings.Repeat("z", 2*retainLimit)
	r := NewReader(strings.NewReader(frame(huge)+frame(huge)+frame("small")+frame("small")), 0)
	for i, want := range []int{len(huge), len(huge), 5, 5} {
		if i == 1 && cap(r.buf) <= retainLimit {
			t.Fatalf("buffer not kept between two large messages")
		}
		if msg, err := r.Next(); err != nil || len(msg) != want {
			t.Fatalf("message %d: %d bytes, %v", i, len(msg), err)
		}
		if i == 3 && cap(r.buf) > retainLimit {
			t.Errorf("buffer of %d bytes kept after a small message", cap(r.buf))
		}
	}
}

func TestWriter(t *testing.T) {
	t.Parallel()
	var counting writeCounter
	w := NewWriter(&counting)
	for _, msg := range []string{"MSH|a\rPID|1\r", "", "x\x0by"} {
		if err := w.WriteMsg([]byte(msg)); err != nil {
			t.Fatalf("WriteMsg(%q): %v", msg, err)
		}
	}
	want := frame("MSH|a\rPID|1\r") + frame("") + frame("x\x0by")
	if counting.String() != want {
		t.Errorf("wrote %q, want %q", counting.String(), want)
	}
	if counting.writes != 3 {
		t.Errorf("%d Write calls for 3 frames, want one each", counting.writes)
	}
	if err := w.WriteMsg([]byte("a\x1cb")); !errors.Is(err, ErrEndBlockInMessage) {
		t.Errorf("message with 0x1C: got %v, want ErrEndBlockInMessage", err)
	}
	if counting.writes != 3 {
		t.Errorf("a rejected message was written")
	}
	boom := errors.New("disk on fire")
	if err := NewWriter(failingWriter{boom}).WriteMsg([]byte("m")); !errors.Is(err, boom) {
		t.Errorf("failing writer: got %v, want it wrapped", err)
	}
}

// Reader and Writer round-trip any message without 0x1C, including a large one.
func TestWriterReaderRoundTrip(t *testing.T) {
	t.Parallel()
	msgs := [][]byte{[]byte("MSH|^~\\&|A\r"), {}, bytes.Repeat([]byte("OBX|1|ED|||AAAA\r"), 200000)}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, m := range msgs {
		if err := w.WriteMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	r := NewReader(&buf, 0)
	for i, m := range msgs {
		got, err := r.Next()
		if err != nil || !bytes.Equal(got, m) {
			t.Fatalf("message %d: got %d bytes, %v; want %d bytes", i, len(got), err, len(m))
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

type writeCounter struct {
	bytes.Buffer
	writes int
}

func (w *writeCounter) Write(p []byte) (int, error) {
	w.writes++
	return w.Buffer.Write(p)
}

type failingWriter struct{ err error }

func (f failingWriter) Write([]byte) (int, error) { return 0, f.err }

// corpusDir holds real sample messages from other projects (../shared/corpus, see its README).
const corpusDir = "../../../shared/corpus/hl7v2"

// corpusMessages returns the corpus messages, or nil when ../shared is absent.
func corpusMessages(tb testing.TB) [][]byte {
	tb.Helper()
	paths, _ := filepath.Glob(filepath.Join(corpusDir, "*", "*.hl7"))
	var msgs [][]byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		msgs = append(msgs, b)
	}
	return msgs
}

// referenceFrames is a byte-at-a-time model of the rules Reader documents, for FuzzReader to
// compare against: frames (or too-large results), the bytes discarded, and whether the stream
// ended inside a frame.
func referenceFrames(in []byte, max int) (results []readResult, discarded int64, truncated bool) {
	var (
		inside, afterEnd bool
		cur              []byte
		size             int64
	)
	for _, b := range in {
		if inside {
			if b == EndBlock {
				if size > int64(max) {
					results = append(results, readResult{msg: string(cur[:min(len(cur), HeadSize)]), err: "toolarge:" + itoa(size)})
				} else {
					results = append(results, readResult{msg: string(cur)})
				}
				inside, afterEnd = false, true
				continue
			}
			if len(cur) < max {
				cur = append(cur, b)
			}
			size++
			continue
		}
		switch {
		case b == StartBlock:
			inside, cur, size = true, nil, 0
		case afterEnd && b == CarriageReturn:
		default:
			discarded++
		}
		afterEnd = false
	}
	return results, discarded, inside
}

// FuzzReader feeds arbitrary bytes to Reader, whole and one byte per read, and checks it against
// referenceFrames: it never panics, never returns more than the cap, returns exactly the frames
// the documented rules give, and counts every byte outside frames.
func FuzzReader(f *testing.F) {
	for _, msg := range corpusMessages(f) {
		f.Add(append(append([]byte{StartBlock}, msg...), EndBlock, CarriageReturn), uint16(0))
		f.Add(append(append([]byte("junk\r\n\x0b"), msg...), EndBlock), uint16(512))
	}
	f.Add([]byte(frame("MSH|^~\\&|A|B\rPID|1\r")+frame("")+"zz\x0bhalf"), uint16(4))
	f.Add([]byte("\x0b\x0b\x1c\x1c\x0d\x0d\x0b"), uint16(1))
	f.Fuzz(func(t *testing.T, in []byte, capSeed uint16) {
		max := int(capSeed) // 0 means the default cap; small caps exercise TooLarge
		effective := max
		if effective <= 0 {
			effective = DefaultMaxMessageSize
		}
		want, wantDiscarded, wantTruncated := referenceFrames(in, effective)
		end := "eof"
		if wantTruncated {
			end = "truncated"
		}
		want = append(want, readResult{err: end})
		for name, wrap := range map[string]func(io.Reader) io.Reader{
			"whole":          func(r io.Reader) io.Reader { return r },
			"one byte":       iotest.OneByteReader,
			"whole/owned":    func(r io.Reader) io.Reader { return r },
			"one byte/owned": iotest.OneByteReader,
		} {
			owned := strings.HasSuffix(name, "/owned")
			r := NewReader(wrap(bytes.NewReader(in)), max)
			var got []readResult
			for len(got) <= len(want) {
				msg, err := r.next(owned)
				var tl *TooLargeError
				if err == nil {
					if msg == nil || len(msg) > effective || bytes.IndexByte(msg, EndBlock) >= 0 {
						t.Fatalf("%s: bad message: nil=%v len=%d cap=%d", name, msg == nil, len(msg), effective)
					}
					got = append(got, readResult{msg: string(msg)})
					continue
				}
				if errors.As(err, &tl) {
					if tl.Size <= int64(effective) || len(tl.Head) > min(HeadSize, effective) || tl.Limit != effective {
						t.Fatalf("%s: bad TooLargeError: size %d head %d limit %d cap %d", name, tl.Size, len(tl.Head), tl.Limit, effective)
					}
					got = append(got, readResult{msg: string(tl.Head), err: "toolarge:" + itoa(tl.Size)})
					continue
				}
				switch {
				case err == io.EOF:
					got = append(got, readResult{err: "eof"})
				case err == ErrTruncated:
					got = append(got, readResult{err: "truncated"})
				default:
					t.Fatalf("%s: unexpected error %v", name, err)
				}
				break
			}
			if len(got) != len(want) {
				t.Fatalf("%s: %d results, reference has %d", name, len(got), len(want))
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("%s: result %d = %q, reference %q", name, i, trim(got[i]), trim(want[i]))
				}
			}
			if r.Discarded() != wantDiscarded {
				t.Fatalf("%s: Discarded() = %d, reference %d", name, r.Discarded(), wantDiscarded)
			}
		}
	})
}

// typicalORM is an imaging order of typical size (about 1.3 KiB), written for these benchmarks.
func typicalORM() []byte {
	var b bytes.Buffer
	b.WriteString("MSH|^~\\&|EPIC|STMARYS|FERRY|TELERAD|20240315083000||ORM^O01^ORM_O01|MSG00001|P|2.5.1|||AL|NE\r")
	b.WriteString("PID|1||123456^^^STMARYS^MR~987654321^^^USSSA^SS||DOE^JANE^Q^^^^L||19700101|F|||1 MAIN ST^^SPRINGFIELD^IL^62701^USA||(217)555-0100|||M|||987-65-4321\r")
	b.WriteString("PV1|1|O|RAD^^^STMARYS||||1234^SMITH^JOHN^A^^^MD|||||||||||V0001^^^STMARYS^VN\r")
	b.WriteString("ORC|NW|PLC0001^EPIC|FIL0001^RIS||SC||^^^20240315083000^^R||20240315083000|1234^CLERK^ANN|||||||||||STMARYS\r")
	b.WriteString("OBR|1|PLC0001^EPIC|FIL0001^RIS|71046^XR CHEST 2 VIEWS^CPT4|||20240315083000|||||||||1234^SMITH^JOHN^A^^^MD||ACC0001|||||DX|||^^^20240315083000^^R||||R05.9^Cough^I10|||||\r")
	b.WriteString("DG1|1|I10|R05.9^Cough, unspecified^I10||20240315|A\r")
	b.WriteString("NTE|1||Patient reports persistent cough for three weeks; rule out pneumonia. Prior study available at outside facility.\r")
	b.WriteString("ZDS|1.2.840.113619.2.55.3.604688119.969.1710491400.123^Ferry^Application^DICOM\r")
	return b.Bytes()
}

func BenchmarkReaderNext(b *testing.B) {
	orm := typicalORM()
	for _, size := range []struct {
		name string
		msg  []byte
	}{
		{"1KiB", orm},
		{"64KiB", bytes.Repeat(orm, 64<<10/len(orm))},
		{"1MiB", bytes.Repeat(orm, 1<<20/len(orm))},
	} {
		b.Run(size.name, func(b *testing.B) {
			var stream bytes.Buffer
			w := NewWriter(&stream)
			const perStream = 64
			for range perStream {
				w.WriteMsg(size.msg)
			}
			src := bytes.NewReader(stream.Bytes())
			r := NewReader(src, 0)
			b.SetBytes(int64(len(size.msg) + 3))
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if i%perStream == 0 {
					src.Seek(0, io.SeekStart)
				}
				if _, err := r.Next(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkWriteMsg(b *testing.B) {
	orm := typicalORM()
	for _, size := range []struct {
		name string
		msg  []byte
	}{
		{"1KiB", orm},
		{"1MiB", bytes.Repeat(orm, 1<<20/len(orm))},
	} {
		b.Run(size.name, func(b *testing.B) {
			w := NewWriter(io.Discard)
			b.SetBytes(int64(len(size.msg) + 3))
			b.ReportAllocs()
			for b.Loop() {
				if err := w.WriteMsg(size.msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A large message read with NextOwned costs at most twice its size in allocations (the chunks
// it is gathered in, then one exact copy), where a growing buffer allocated about five times it
// and the listener's copy for the handler one more (issue 17: 50 concurrent 15 MB frames held
// 2.5 GB). An oversized one costs at most the cap, however large it is.
func TestReaderNextOwnedAllocations(t *testing.T) {
	const size = 15 << 20
	msg := bytes.Repeat([]byte("OBX|1|ED|PDF^Report||^AP^PDF^Base64^JVBERi0xLjQK\r"), size/50)
	in := append(append([]byte{StartBlock}, msg...), EndBlock, CarriageReturn)
	var got []byte
	var err error
	alloc := workcount.Allocated(func() {
		got, err = NewReader(bytes.NewReader(in), DefaultMaxMessageSize).NextOwned()
	})
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("NextOwned: %d bytes, %v; want the %d-byte message", len(got), err, len(msg))
	}
	if limit := 2*uint64(len(msg)) + 2*chunkMax; alloc > limit {
		t.Errorf("reading a %d-byte message allocated %d bytes (%.2f×), want at most %d", len(msg), alloc, float64(alloc)/float64(len(msg)), limit)
	}
	t.Logf("a %d-byte message: %d bytes allocated (%.2f×)", len(msg), alloc, float64(alloc)/float64(len(msg)))

	// Oversized: 4× the cap is sent; what is kept is bounded by the cap, not by what was sent.
	const cap = 1 << 20
	big := append(append([]byte{StartBlock}, bytes.Repeat([]byte("x"), 4*cap)...), EndBlock, CarriageReturn)
	alloc = workcount.Allocated(func() {
		_, err = NewReader(bytes.NewReader(big), cap).NextOwned()
	})
	var tl *TooLargeError
	if !errors.As(err, &tl) || len(tl.Head) != HeadSize {
		t.Fatalf("oversized: got %v, want a TooLargeError with a %d-byte head", err, HeadSize)
	}
	if limit := uint64(cap) + 2*HeadSize + 2*chunkMax; alloc > limit {
		t.Errorf("an oversized %d-byte message allocated %d bytes, want at most %d (the cap and its head)", 4*cap, alloc, limit)
	}
}
