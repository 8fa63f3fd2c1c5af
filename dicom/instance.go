package dicom

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
)

// Instances as both receivers keep them (the C-STORE SCP in adapters/dimse, STOW-RS in
// adapters/dicomweb): a Part 10 file, written as it arrives, fsynced, then its header read
// (ReadInstance) and checked before the intake takes it. The errors here are what a receiver
// answers with.

// DefaultMaxInstanceSize caps one received instance unless the receiver is told otherwise:
// 2 GiB, larger than any single-frame image and most multi-frame ones.
const DefaultMaxInstanceSize = 2 << 30

// ErrInstanceRefused, wrapped in an instance sink's error, says the instance itself is at fault
// (its attributes conflict with what is stored, say) and a retry cannot succeed: the peer gets
// C000 instead of A700. The rest of the error's text goes to the log, not to the peer.
var ErrInstanceRefused = errors.New("dicom: instance refused")

// StatusDataSetMismatch is the failure "Error: Data Set does not match SOP Class" of C-STORE
// (PS3.4 B.2.3, A9xx) and of STOW-RS's Failure Reason: the code C-FIND calls
// StatusIdentifierDoesNotMatchClass.
const StatusDataSetMismatch = StatusIdentifierDoesNotMatchClass

// InstanceError is a refusal of one instance: the status that says why — the codes C-STORE
// answers (PS3.4 B.2.3) and STOW-RS puts in Failure Reason (0008,1197) (PS3.18 table I.2-2) are
// the same: A700 out of resources (retry later), A900 data set does not match its SOP class,
// C000 cannot understand. Tag is the Offending Element (0000,0901) when one attribute is at
// fault, Reason the Error Comment (0000,0902); neither ever holds a value, so both are safe to
// log and send. Err, the cause, is for the log only.
type InstanceError struct {
	Status Status
	Tag    Tag
	Reason string
	Err    error
}

func (f *InstanceError) Error() string {
	msg := fmt.Sprintf("dicom: instance refused (%s): %s", f.Status, f.Reason)
	if f.Tag != 0 {
		msg += " " + f.Tag.String()
	}
	if f.Err != nil {
		msg += ": " + f.Err.Error()
	}
	return msg
}

func (f *InstanceError) Unwrap() error { return f.Err }

// AsInstanceError returns err as an *InstanceError; an error of another kind (the file could
// not be read) becomes A700 with reason.
func AsInstanceError(err error, reason string) *InstanceError {
	var ie *InstanceError
	if errors.As(err, &ie) {
		return ie
	}
	return &InstanceError{Status: StatusOutOfResources, Reason: reason, Err: err}
}

// WriteFailure is the refusal when the instance's file cannot be written: A700, "storage full"
// when the disk or quota is.
func WriteFailure(err error) *InstanceError {
	reason := "cannot write the instance file"
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		reason = "storage full"
	}
	return &InstanceError{Status: StatusOutOfResources, Reason: reason, Err: err}
}

// SinkFailure is the refusal when the intake could not keep an instance (err non-nil): C000
// when err wraps ErrInstanceRefused (a retry cannot succeed), else A700 — the database or the
// disk failed, or the request ended: a condition on Ferry's side that may pass, which storage
// SCUs and STOW-RS clients treat as "retry later".
func SinkFailure(ctx context.Context, err error) *InstanceError {
	switch {
	case ctx.Err() != nil:
		return &InstanceError{Status: StatusOutOfResources, Reason: "operation cancelled", Err: err}
	case errors.Is(err, ErrInstanceRefused):
		return &InstanceError{Status: StatusCannotUnderstand, Reason: "instance refused by the store", Err: err}
	}
	return &InstanceError{Status: StatusOutOfResources, Reason: "instance could not be stored", Err: err}
}

// ValidUID reports whether s is a UID (PS3.5 9.1): at most 64 characters, digits in
// components separated by dots, none empty. (Leading zeros, which 9.1 forbids, are accepted:
// some equipment writes them, and they harm nothing here.)
func ValidUID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for part := range strings.SplitSeq(s, ".") {
		if part == "" || strings.ContainsFunc(part, func(r rune) bool { return r < '0' || r > '9' }) {
			return false
		}
	}
	return true
}

// ValidateIncoming checks a receiver's incoming area and limits: dir must be a directory
// Ferry can write in; the sizes (0: the defaults) must not be negative. The error names each
// problem.
func ValidateIncoming(dir string, maxInstanceSize, maxHeaderSize int64) error {
	var errs []error
	switch fi, err := os.Stat(dir); {
	case dir == "":
		errs = append(errs, errors.New("IncomingDir is empty"))
	case err != nil:
		errs = append(errs, fmt.Errorf("IncomingDir: %w", err))
	case !fi.IsDir():
		errs = append(errs, fmt.Errorf("IncomingDir %s is not a directory", dir))
	default:
		f, err := os.CreateTemp(dir, "probe-*")
		if err != nil {
			errs = append(errs, fmt.Errorf("IncomingDir is not writable: %w", err))
		} else {
			f.Close()
			os.Remove(f.Name())
		}
	}
	if maxHeaderSize < 0 {
		errs = append(errs, fmt.Errorf("MaxHeaderSize %d is negative", maxHeaderSize))
	}
	if maxInstanceSize < 0 {
		errs = append(errs, fmt.Errorf("MaxInstanceSize %d is negative", maxInstanceSize))
	}
	return errors.Join(errs...)
}

// writeBuffers are the buffers between the network and an instance's file: data arrives a
// PDU or a multipart chunk at a time, a few are written at once.
var writeBuffers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 256<<10) }}

// ReceiveFile writes an arriving instance to f: header (the preamble and file meta information
// a C-STORE SCP puts in front of the data set; nil when src is a whole Part 10 file already),
// then src as it streams in, counting and hashing, and fsyncs f. It returns the file's size and
// SHA-256 (hex). More than limit bytes from src is A700 (the caller drains the rest); a write
// failure is WriteFailure; a read failure (the peer went away) is A700 "instance not received".
func ReceiveFile(f *os.File, header []byte, src io.Reader, limit int64) (int64, string, *InstanceError) {
	sum := sha256.New()
	fw := &fileWriter{f: f, h: sum}
	bw := writeBuffers.Get().(*bufio.Writer)
	bw.Reset(fw)
	defer func() { bw.Reset(nil); writeBuffers.Put(bw) }()
	if _, err := bw.Write(header); err != nil {
		return 0, "", WriteFailure(err)
	}
	n, err := bw.ReadFrom(io.LimitReader(src, limit+1))
	switch {
	case fw.err != nil:
		return 0, "", WriteFailure(fw.err)
	case err != nil:
		return 0, "", &InstanceError{Status: StatusOutOfResources, Reason: "instance not received", Err: err}
	case n > limit:
		return 0, "", &InstanceError{Status: StatusOutOfResources, Reason: fmt.Sprintf("instance larger than %d bytes", limit)}
	}
	if err := bw.Flush(); err != nil {
		return 0, "", WriteFailure(err)
	}
	if err := f.Sync(); err != nil {
		return 0, "", WriteFailure(err)
	}
	return fw.n, hex.EncodeToString(sum.Sum(nil)), nil
}

// fileWriter writes to the file and the hash, and remembers a write error apart from errors
// reading the source.
type fileWriter struct {
	f   *os.File
	h   hash.Hash
	n   int64
	err error
}

func (w *fileWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	if err != nil {
		w.err = err
	}
	return n, err
}
