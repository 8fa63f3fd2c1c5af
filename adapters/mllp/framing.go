package mllp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// The MLLP block characters (HL7 MLLP Release 1): a frame is StartBlock, the message,
// EndBlock, CarriageReturn.
const (
	StartBlock     = 0x0B // <VT>, starts a frame
	EndBlock       = 0x1C // <FS>, ends a frame's content
	CarriageReturn = 0x0D // <CR>, follows EndBlock
)

// DefaultMaxMessageSize is the size cap used when none is given: 16 MiB of message bytes.
const DefaultMaxMessageSize = 16 << 20

// HeadSize is how many leading bytes of an oversized message are kept in TooLargeError.Head
// (at most the size cap): enough to hold the MSH segment, so a NAK can echo MSH-10.
const HeadSize = 64 << 10

const (
	// readBufferSize is the bufio buffer under each Reader. Messages that fit in it whole (most
	// HL7 messages are a few KiB) are returned without a copy.
	readBufferSize = 32 << 10
	// retainLimit: a message buffer grown past this is kept only while messages that need at
	// least half of it keep coming; after a smaller one it is dropped, so one large message
	// does not pin memory for the rest of a long-lived connection.
	retainLimit = 1 << 20
)

// ErrTruncated is returned by Reader.Next when the stream ends inside a frame: a start block
// was read but no end block followed. It wraps io.ErrUnexpectedEOF. The partial message is
// dropped; the sender got no ACK for it and should send it again.
var ErrTruncated = fmt.Errorf("mllp: stream ended inside a frame: %w", io.ErrUnexpectedEOF)

// ErrEndBlockInMessage is returned by Writer.WriteMsg for a message that contains the end block
// byte 0x1C: framed as is, the receiver would cut it there and read the rest as another frame.
var ErrEndBlockInMessage = errors.New("mllp: message contains the end block byte 0x1C")

// TooLargeError is returned by Reader.Next for a message larger than the Reader's size cap. The
// whole frame has been consumed (the Reader is positioned after it and may go on), but only its
// first bytes were kept. The listener turns it into a Frame with TooLarge set, so the engine can
// answer with a NAK that echoes MSH-10 from Head.
type TooLargeError struct {
	Size  int64  // the message's full size in bytes (between the block characters)
	Limit int    // the size cap it exceeded
	Head  []byte // the first min(HeadSize, Limit) bytes of the message; a copy the caller may keep
}

// Error says how large the message was; it holds no message content.
func (e *TooLargeError) Error() string {
	return fmt.Sprintf("mllp: message of %d bytes exceeds the limit of %d bytes", e.Size, e.Limit)
}

// Reader reads MLLP frames from a stream. The listener and the sender each use one per
// connection; tools may use one over a file or a captured stream. It is not safe for concurrent
// use.
//
// Rules it applies (see docs/mllp.md):
//   - Bytes before a start block are dropped and counted (Discarded).
//   - A frame ends at the first 0x1C. The 0x0D that should follow is consumed with it; if another
//     byte follows instead, the frame is still taken as complete (some senders omit the CR) and
//     that byte is read as the next bytes before a start block: dropped and counted, unless it is
//     a start block itself. The Reader never waits for the byte after 0x1C, so a sender that
//     omits the CR and waits for its ACK is answered.
//   - A 0x0B inside a frame is message content, kept as is: bytes are kept exactly as received.
type Reader struct {
	br        *bufio.Reader
	max       int
	buf       []byte // message bytes of a frame that did not fit in br's buffer; reused
	discarded int64

	afterEnd bool  // the last frame ended at 0x1C; a 0x0D that comes next is its trailer
	inFrame  bool  // Next stopped inside a frame (after a start block, before the end block)
	partial  int64 // bytes of the frame Next stopped inside
	lastSize int64 // size of the last message returned

	// onFrameStart, when set, is called as soon as a start block has been read: the listener
	// switches the connection from its idle timeout to its per-frame read timeout there.
	onFrameStart func()
}

// NewReader returns a Reader over r that accepts messages of at most maxSize bytes (the bytes
// between the block characters); maxSize <= 0 means DefaultMaxMessageSize. The Reader buffers r.
func NewReader(r io.Reader, maxSize int) *Reader {
	if maxSize <= 0 {
		maxSize = DefaultMaxMessageSize
	}
	return &Reader{br: bufio.NewReaderSize(r, readBufferSize), max: maxSize}
}

// Next returns the next message: the bytes between a start block and the following end block,
// without the block characters. An empty frame returns an empty, non-nil slice.
//
// The returned slice is valid only until the next call to Next (it may point into the Reader's
// buffer); callers that keep a message must copy it, or read it with NextOwned.
//
// Errors:
//   - io.EOF: the stream ended between frames (cleanly, or after bytes that were not in a frame).
//   - ErrTruncated: the stream ended inside a frame; nothing of that frame is returned.
//   - *TooLargeError: the message exceeded the size cap; it was consumed up to its end block and
//     Next may be called again for the next frame.
//   - any other error comes from the underlying reader (for a network connection, a timeout or
//     a reset), wrapped; after it, or after ErrTruncated, the stream position is unknown and the
//     Reader should not be used again.
func (r *Reader) Next() ([]byte, error) { return r.next(false) }

// NextOwned is Next for a caller that keeps the message: the slice it returns is the caller's
// own, exactly as long as the message, and the Reader never touches it again. The listener hands
// it to the handler as is, so a frame costs its bytes once when it is kept, and at most twice
// while it is read: a message that does not fit in the read buffer is gathered in chunks
// (growing to chunkMax, so a stalled frame holds no more than it has received) and copied once
// into a slice of its exact size — where a growing slice would hold up to 2.25 times the message
// and allocate about 5 times it in all. Errors are those of Next.
func (r *Reader) NextOwned() ([]byte, error) { return r.next(true) }

const (
	// chunkMin and chunkMax bound the chunks NextOwned gathers a large message in: each chunk is
	// as large as the bytes gathered so far, between these bounds.
	chunkMin = 64 << 10
	chunkMax = 1 << 20
)

func (r *Reader) next(owned bool) ([]byte, error) {
	r.inFrame = false
	r.partial = 0
	if cap(r.buf) > retainLimit && 2*r.lastSize < int64(cap(r.buf)) {
		r.buf = nil
	}
	if r.afterEnd {
		// The CR that ends the previous frame. Checked here rather than after the end block so
		// that the Reader never blocks waiting for it.
		r.afterEnd = false
		b, err := r.br.Peek(1)
		if err != nil {
			return nil, betweenFrames(err)
		}
		if b[0] == CarriageReturn {
			_, _ = r.br.Discard(1) // cannot fail: the byte is buffered
		}
	}

	// Skip to the start block; bytes before it are dropped and counted.
	for {
		junk, err := r.br.ReadSlice(StartBlock)
		if err == nil {
			r.discarded += int64(len(junk) - 1)
			break
		}
		r.discarded += int64(len(junk))
		if err != bufio.ErrBufferFull {
			return nil, betweenFrames(err)
		}
	}

	r.inFrame = true
	if r.onFrameStart != nil {
		r.onFrameStart()
	}
	var (
		size   int64
		chunks [][]byte // owned: the message's bytes, kept up to max
		kept   int      // bytes kept, in r.buf or chunks
	)
	r.buf = r.buf[:0]
	for first := true; ; first = false {
		chunk, err := r.br.ReadSlice(EndBlock)
		n := len(chunk)
		if err == nil {
			n-- // the end block
		}
		if first && err == nil && n <= r.max {
			// The whole frame is in the read buffer: return it without a copy, or one copy of
			// its exact size for a caller that keeps it.
			r.inFrame, r.afterEnd, r.lastSize = false, true, int64(n)
			if owned {
				return append(make([]byte, 0, n), chunk[:n]...), nil
			}
			return chunk[:n:n], nil
		}
		// Keep at most max bytes: an oversized message is consumed, never buffered whole.
		if room := r.max - kept; room > 0 {
			data := chunk[:min(n, room)]
			if owned {
				chunks = appendChunked(chunks, data, kept)
			} else {
				r.buf = append(r.buf, data...)
			}
			kept += len(data)
		}
		size += int64(n)
		if owned && size > int64(r.max) && len(chunks) > 1 {
			// Over the cap: only the head will be handed on, so let the rest go now.
			chunks = [][]byte{head(chunks, nil, true)}
		}
		switch {
		case err == nil:
			r.inFrame, r.afterEnd, r.lastSize = false, true, size
			if owned {
				r.lastSize = 0 // r.buf was not used
			}
			if size > int64(r.max) {
				return nil, &TooLargeError{Size: size, Limit: r.max, Head: head(chunks, r.buf, owned)}
			}
			if owned {
				return joinChunks(chunks, kept), nil
			}
			return r.buf[:len(r.buf):len(r.buf)], nil
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF:
			r.partial = size
			return nil, ErrTruncated
		default:
			r.partial = size
			return nil, fmt.Errorf("mllp: reading a frame after %d bytes: %w", size, err)
		}
	}
}

// appendChunked appends data to chunks, the kept bytes of a message gathered so far, adding a
// chunk when the last one is full.
func appendChunked(chunks [][]byte, data []byte, kept int) [][]byte {
	for len(data) > 0 {
		if len(chunks) == 0 || len(chunks[len(chunks)-1]) == cap(chunks[len(chunks)-1]) {
			chunks = append(chunks, make([]byte, 0, min(max(kept, chunkMin), chunkMax)))
		}
		last := &chunks[len(chunks)-1]
		n := min(len(data), cap(*last)-len(*last))
		*last = append(*last, data[:n]...)
		data = data[n:]
		kept += n
	}
	return chunks
}

// joinChunks copies the chunks into one slice of exactly kept bytes (never nil).
func joinChunks(chunks [][]byte, kept int) []byte {
	msg := make([]byte, 0, kept)
	for _, c := range chunks {
		msg = append(msg, c...)
	}
	return msg
}

// head returns a copy of the first HeadSize bytes kept of an oversized message.
func head(chunks [][]byte, buf []byte, owned bool) []byte {
	if !owned {
		return bytes.Clone(buf[:min(len(buf), HeadSize)])
	}
	n := 0
	for _, c := range chunks {
		n += len(c)
	}
	h := make([]byte, 0, min(n, HeadSize))
	for _, c := range chunks {
		h = append(h, c[:min(len(c), HeadSize-len(h))]...)
		if len(h) == HeadSize {
			break
		}
	}
	return h
}

// betweenFrames maps a read error met outside a frame: io.EOF stays io.EOF (a clean end).
func betweenFrames(err error) error {
	if err == io.EOF {
		return io.EOF
	}
	return fmt.Errorf("mllp: waiting for a frame: %w", err)
}

// Discarded returns how many bytes the Reader has dropped so far because they came outside a
// frame (before a start block). The listener reports the growth of this count to its Observer.
func (r *Reader) Discarded() int64 { return r.discarded }

// Writer writes MLLP frames to a stream. The listener uses one per connection for ACKs and the
// sender one for messages. It is not safe for concurrent use.
type Writer struct {
	w   io.Writer
	buf []byte
}

// NewWriter returns a Writer that frames messages onto w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// WriteMsg writes msg as one frame (0x0B, msg, 0x1C 0x0D) in a single Write call on the
// underlying writer, so a frame is never interleaved with other writes and goes out in as few
// packets (or TLS records) as possible.
//
// It returns ErrEndBlockInMessage, writing nothing, when msg contains 0x1C (the frame would be
// cut there). Other errors come from the underlying writer, wrapped; after one, part of the frame
// may have been written and the stream should be closed.
func (w *Writer) WriteMsg(msg []byte) error {
	if bytes.IndexByte(msg, EndBlock) >= 0 {
		return ErrEndBlockInMessage
	}
	buf := append(w.buf[:0], StartBlock)
	buf = append(buf, msg...)
	buf = append(buf, EndBlock, CarriageReturn)
	_, err := w.w.Write(buf)
	if cap(buf) <= retainLimit {
		w.buf = buf[:0]
	} else {
		w.buf = nil
	}
	if err != nil {
		return fmt.Errorf("mllp: writing a frame: %w", err)
	}
	return nil
}
