package dimse

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// maxCommandLength caps the command set of one message. Command sets are a few hundred bytes;
// a peer sending more is broken or hostile.
const maxCommandLength = 64 << 10

// defaultSendPDULength is the P-DATA-TF size used toward a peer that announced no limit
// (maximum length 0).
const defaultSendPDULength = 1 << 20

// messageWriter sends PDUs and DIMSE messages on a connection, one at a time (it is safe for
// concurrent use), fragmenting messages to fit the peer's maximum PDU length (PS3.8 9.3.5,
// annex E; PS3.7 D.3.3.1).
type messageWriter struct {
	mu      sync.Mutex
	conn    net.Conn
	timeout time.Duration
	peerMax uint32 // the peer's maximum P-DATA-TF length; 0: no limit
	buf     []byte
}

// fragmentSize is the most message bytes one PDV may carry: the peer's maximum PDU length less
// the PDV item header (4-byte length, context ID, control header). One PDV per PDU.
func (w *messageWriter) fragmentSize() int {
	max := w.peerMax
	if max == 0 || max > defaultSendPDULength {
		max = defaultSendPDULength
	}
	return int(max) - 6
}

// writePDU encodes p and writes it within the write timeout.
func (w *messageWriter) writePDU(p PDU) error { return w.writePDUWithin(p, w.timeout) }

// writePDUWithin encodes p and writes it within timeout (0: no limit).
func (w *messageWriter) writePDUWithin(p PDU, timeout time.Duration) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var err error
	if w.buf, err = appendPDU(w.buf[:0], p); err != nil {
		return err
	}
	return w.writeWithin(w.buf, timeout)
}

func (w *messageWriter) write(b []byte) error { return w.writeWithin(b, w.timeout) }

func (w *messageWriter) writeWithin(b []byte, timeout time.Duration) error {
	if timeout > 0 {
		_ = w.conn.SetWriteDeadline(time.Now().Add(timeout))
	}
	_, err := w.conn.Write(b)
	return err
}

// writeMessage sends one message: its command set, then the data set read from data (nil: the
// command says there is none), each in as many fragments as the peer's limit requires.
func (w *messageWriter) writeMessage(contextID byte, command []byte, data io.Reader) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	fs := w.fragmentSize()
	if fs < 1 {
		return fmt.Errorf("dimse: the peer's maximum PDU length %d leaves no room for data", w.peerMax)
	}
	for off := 0; ; {
		n := min(fs, len(command)-off)
		last := off+n == len(command)
		if err := w.writePDV(contextID, true, last, command[off:off+n]); err != nil {
			return err
		}
		off += n
		if last {
			break
		}
	}
	if data == nil {
		return nil
	}
	// A data set already in memory (a C-FIND match: a few hundred bytes) needs no 64 KiB buffer.
	size := min(fs, 64<<10)
	if l, ok := data.(interface{ Len() int }); ok {
		size = min(size, max(l.Len(), 16))
	}
	br := bufio.NewReaderSize(data, size)
	w.grow(12 + fs)
	for {
		chunk := w.buf[12 : 12+fs]
		n, err := io.ReadFull(br, chunk)
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			return w.writeFragment(contextID, false, true, n)
		case err != nil:
			return fmt.Errorf("dimse: reading the data set to send: %w", err)
		}
		_, err = br.Peek(1)
		last := err == io.EOF
		if err != nil && !last {
			return fmt.Errorf("dimse: reading the data set to send: %w", err)
		}
		if err := w.writeFragment(contextID, false, last, n); err != nil {
			return err
		}
		if last {
			return nil
		}
	}
}

// grow makes w.buf at least n bytes long.
func (w *messageWriter) grow(n int) {
	if cap(w.buf) < n {
		w.buf = make([]byte, n)
	}
	w.buf = w.buf[:cap(w.buf)]
}

// writePDV sends one PDV holding data in its own P-DATA-TF PDU.
func (w *messageWriter) writePDV(contextID byte, command, last bool, data []byte) error {
	w.grow(12 + len(data))
	copy(w.buf[12:], data)
	return w.writeFragment(contextID, command, last, len(data))
}

// writeFragment sends the PDU whose data (n bytes) is already at w.buf[12:].
func (w *messageWriter) writeFragment(contextID byte, command, last bool, n int) error {
	b := w.buf[:12+n]
	b[0], b[1] = byte(TypePDataTF), 0
	binary.BigEndian.PutUint32(b[2:], uint32(6+n))
	binary.BigEndian.PutUint32(b[6:], uint32(2+n))
	b[10] = contextID
	b[11] = 0
	if command {
		b[11] |= 0x01
	}
	if last {
		b[11] |= 0x02
	}
	return w.write(b)
}

// Message is one DIMSE message as the Client receives it: the command and the whole data set.
type Message struct {
	ContextID byte
	Command   *Command
	// Data is the data set (identifier) as received, encoded in the presentation context's
	// transfer syntax; nil when the command says none follows.
	Data []byte
}

// ProtocolError reports a peer that broke the upper layer or DIMSE protocol: a PDU or PDV
// where it may not be, a message split wrongly. Reason is the A-ABORT reason to answer with.
type ProtocolError struct {
	Reason AbortReason
	Msg    string
}

func (e *ProtocolError) Error() string { return "dimse: protocol error: " + e.Msg }

// messageAssembler rebuilds whole messages from PDVs (PS3.7 annex E, PS3.8 annex E): the
// fragments of a command set, then those of its data set, all on one presentation context.
type messageAssembler struct {
	maxData   int
	cur       *Message
	cmd, data bytes.Buffer
	inData    bool
}

// add takes one PDV; it returns a message when the PDV completed one.
func (m *messageAssembler) add(v PDV) (*Message, error) {
	if m.cur == nil {
		if !v.Command {
			return nil, &ProtocolError{AbortReasonUnexpectedPDUParam, "data set fragment with no command before it"}
		}
		m.cur = &Message{ContextID: v.ContextID}
		m.cmd.Reset()
		m.data.Reset()
		m.inData = false
	}
	if v.ContextID != m.cur.ContextID {
		return nil, &ProtocolError{AbortReasonUnexpectedPDUParam, fmt.Sprintf("fragment on presentation context %d inside a message on %d", v.ContextID, m.cur.ContextID)}
	}
	if !m.inData {
		if !v.Command {
			return nil, &ProtocolError{AbortReasonUnexpectedPDUParam, "data set fragment before the last command fragment"}
		}
		if m.cmd.Len()+len(v.Data) > maxCommandLength {
			return nil, &ProtocolError{AbortReasonInvalidPDUParamValue, fmt.Sprintf("command set longer than %d bytes", maxCommandLength)}
		}
		m.cmd.Write(v.Data)
		if !v.Last {
			return nil, nil
		}
		cmd, err := DecodeCommand(m.cmd.Bytes())
		if err != nil {
			return nil, &ProtocolError{AbortReasonInvalidPDUParamValue, err.Error()}
		}
		m.cur.Command = cmd
		if !cmd.HasDataSet {
			msg := m.cur
			m.cur = nil
			return msg, nil
		}
		m.inData = true
		return nil, nil
	}
	if v.Command {
		return nil, &ProtocolError{AbortReasonUnexpectedPDUParam, "command fragment inside a data set"}
	}
	if m.maxData > 0 && m.data.Len()+len(v.Data) > m.maxData {
		return nil, &ProtocolError{AbortReasonInvalidPDUParamValue, fmt.Sprintf("data set longer than %d bytes", m.maxData)}
	}
	m.data.Write(v.Data)
	if !v.Last {
		return nil, nil
	}
	msg := m.cur
	msg.Data = bytes.Clone(m.data.Bytes())
	if msg.Data == nil {
		msg.Data = []byte{}
	}
	m.cur = nil
	return msg, nil
}

// AssociateRejectError is returned by Dial when the peer answered A-ASSOCIATE-RJ.
type AssociateRejectError struct {
	RJ AssociateRJ
}

func (e *AssociateRejectError) Error() string {
	return "dimse: association rejected: " + e.RJ.Description()
}

// AbortError reports an association the peer ended with A-ABORT.
type AbortError struct {
	Abort Abort
}

func (e *AbortError) Error() string {
	if e.Abort.Source == AbortServiceProvider {
		return fmt.Sprintf("dimse: association aborted by the peer's service provider: %s", e.Abort.Reason)
	}
	return fmt.Sprintf("dimse: association aborted by the peer (source %d)", e.Abort.Source)
}

// ErrReleased is returned by Client.Receive when the peer asked to release the association.
var ErrReleased = errors.New("dimse: the peer requested release")
