package dimse

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/suyashkumar/dicom"
	dicomcharset "github.com/suyashkumar/dicom/pkg/charset"
	dicomtag "github.com/suyashkumar/dicom/pkg/tag"

	"github.com/ferryhealth/ferry/engine"
)

// The Storage service class (PS3.4 annex B): Ferry is a Storage SCP of conformance level 2
// (full): it keeps every instance as received, all of its elements, byte for byte.

// DefaultMaxInstanceSize caps one received instance's data set unless StorageConfig says
// otherwise: 2 GiB, larger than any single-frame image and most multi-frame ones.
const DefaultMaxInstanceSize = 2 << 30

// InstanceSink keeps a received instance: engine's DICOM intake implements it. The C-STORE SCP
// calls StoreInstance once per instance, from the association's handler goroutine (so
// concurrently for concurrent associations), after it has written tmpPath — a complete DICOM
// Part 10 file (preamble, file meta information, the data set exactly as received) in
// StorageConfig.IncomingDir, fsynced — and read inst from its header. inst.Path is tmpPath.
//
// StoreInstance moves the file to its place under the data directory (a rename: IncomingDir is
// on the same file system), sets inst.Path to that place, fsyncs the directory and commits the
// instance (engine.InstanceStore.PutInstance); it returns nil only once both are durable, and
// only then is the peer sent success (DESIGN.md rule 1). added=false means an instance with the
// same SOP Instance UID was stored before: the peer still gets success, and the sink removes
// tmpPath (the first file is kept).
//
// On error nothing is committed and the sink has removed any copy it made; the SCP removes
// tmpPath. The peer is answered A700 (Refused: Out of Resources), which storage SCUs retry,
// unless the error wraps ErrInstanceRefused: the instance can never be stored as it is, and the
// peer is answered C000 (Error: Cannot understand). ctx is cancelled when the association ends.
// The error's text is logged, so it must not hold patient data.
type InstanceSink interface {
	StoreInstance(ctx context.Context, inst *engine.Instance, tmpPath string) (added bool, err error)
}

// ErrInstanceRefused, wrapped in an InstanceSink's error, says the instance itself is at fault
// (its attributes conflict with what is stored, say) and a retry cannot succeed: the peer gets
// C000 instead of A700. The rest of the error's text goes to the log, not to the peer.
var ErrInstanceRefused = errors.New("dimse: instance refused")

// StorageConfig configures the C-STORE SCP. Its zero fields take the defaults named below.
type StorageConfig struct {
	// IncomingDir is where an instance's file is written while it arrives, before the sink
	// moves it into place. Required; it must exist and be on the same file system as the data
	// directory (the move is a rename). Every file in it is unacknowledged: at start the engine
	// may delete what a crash left there.
	IncomingDir string
	// MaxInstanceSize caps one instance's data set, in bytes (default DefaultMaxInstanceSize,
	// 2 GiB). A larger one is refused with A700 and its bytes discarded.
	MaxInstanceSize int64
	// MaxHeaderSize caps the memory reading one instance's header may use (default
	// DefaultMaxHeaderSize, 16 MiB): with one PDU buffer (Server.MaxPDULength) and one write
	// buffer (256 KiB), what a C-STORE costs an association in memory, whatever lengths the
	// instance declares.
	MaxHeaderSize int64
}

// Validate checks the configuration: IncomingDir must be a directory Ferry can write in.
func (c *StorageConfig) Validate() error {
	var errs []error
	switch fi, err := os.Stat(c.IncomingDir); {
	case c.IncomingDir == "":
		errs = append(errs, errors.New("IncomingDir is empty"))
	case err != nil:
		errs = append(errs, fmt.Errorf("IncomingDir: %w", err))
	case !fi.IsDir():
		errs = append(errs, fmt.Errorf("IncomingDir %s is not a directory", c.IncomingDir))
	default:
		f, err := os.CreateTemp(c.IncomingDir, "probe-*")
		if err != nil {
			errs = append(errs, fmt.Errorf("IncomingDir is not writable: %w", err))
		} else {
			f.Close()
			os.Remove(f.Name())
		}
	}
	if c.MaxHeaderSize < 0 {
		errs = append(errs, fmt.Errorf("MaxHeaderSize %d is negative", c.MaxHeaderSize))
	}
	if c.MaxInstanceSize < 0 {
		errs = append(errs, fmt.Errorf("MaxInstanceSize %d is negative", c.MaxInstanceSize))
	}
	if len(errs) > 0 {
		return fmt.Errorf("dimse: invalid storage configuration: %w", errors.Join(errs...))
	}
	return nil
}

// StorageSOPClass is a storage SOP class Ferry accepts.
type StorageSOPClass struct {
	UID  string
	Name string // as in PS3.6 annex A
}

// StorageSOPClasses are the storage SOP classes Ferry accepts (PS3.4 B.5, checked against
// dcmtk's dictionary): the images, documents and objects of a radiology study, and the retired
// classes older modalities still send.
var StorageSOPClasses = []StorageSOPClass{
	{"1.2.840.10008.5.1.4.1.1.1", "Computed Radiography Image Storage"},
	{"1.2.840.10008.5.1.4.1.1.1.1", "Digital X-Ray Image Storage - For Presentation"},
	{"1.2.840.10008.5.1.4.1.1.1.1.1", "Digital X-Ray Image Storage - For Processing"},
	{"1.2.840.10008.5.1.4.1.1.1.2", "Digital Mammography X-Ray Image Storage - For Presentation"},
	{"1.2.840.10008.5.1.4.1.1.1.2.1", "Digital Mammography X-Ray Image Storage - For Processing"},
	{"1.2.840.10008.5.1.4.1.1.1.3", "Digital Intra-Oral X-Ray Image Storage - For Presentation"},
	{"1.2.840.10008.5.1.4.1.1.1.3.1", "Digital Intra-Oral X-Ray Image Storage - For Processing"},
	{"1.2.840.10008.5.1.4.1.1.2", "CT Image Storage"},
	{"1.2.840.10008.5.1.4.1.1.2.1", "Enhanced CT Image Storage"},
	{"1.2.840.10008.5.1.4.1.1.2.2", "Legacy Converted Enhanced CT Image Storage"},
	{"1.2.840.10008.5.1.4.1.1.3", "Ultrasound Multi-frame Image Storage (Retired)"},
	{"1.2.840.10008.5.1.4.1.1.3.1", "Ultrasound Multi-frame Image Storage"},
	{"1.2.840.10008.5.1.4.1.1.4", "MR Image Storage"},
	{"1.2.840.10008.5.1.4.1.1.4.1", "Enhanced MR Image Storage"},
	{"1.2.840.10008.5.1.4.1.1.4.4", "Legacy Converted Enhanced MR Image Storage"},
	{"1.2.840.10008.5.1.4.1.1.5", "Nuclear Medicine Image Storage (Retired)"},
	{"1.2.840.10008.5.1.4.1.1.6", "Ultrasound Image Storage (Retired)"},
	{"1.2.840.10008.5.1.4.1.1.6.1", "Ultrasound Image Storage"},
	{"1.2.840.10008.5.1.4.1.1.6.2", "Enhanced US Volume Storage"},
	{"1.2.840.10008.5.1.4.1.1.7", "Secondary Capture Image Storage"},
	{"1.2.840.10008.5.1.4.1.1.7.1", "Multi-frame Single Bit Secondary Capture Image Storage"},
	{"1.2.840.10008.5.1.4.1.1.7.2", "Multi-frame Grayscale Byte Secondary Capture Image Storage"},
	{"1.2.840.10008.5.1.4.1.1.7.3", "Multi-frame Grayscale Word Secondary Capture Image Storage"},
	{"1.2.840.10008.5.1.4.1.1.7.4", "Multi-frame True Color Secondary Capture Image Storage"},
	{"1.2.840.10008.5.1.4.1.1.11.1", "Grayscale Softcopy Presentation State Storage"},
	{"1.2.840.10008.5.1.4.1.1.11.2", "Color Softcopy Presentation State Storage"},
	{"1.2.840.10008.5.1.4.1.1.12.1", "X-Ray Angiographic Image Storage"},
	{"1.2.840.10008.5.1.4.1.1.12.1.1", "Enhanced XA Image Storage"},
	{"1.2.840.10008.5.1.4.1.1.12.2", "X-Ray Radiofluoroscopic Image Storage"},
	{"1.2.840.10008.5.1.4.1.1.12.2.1", "Enhanced XRF Image Storage"},
	{"1.2.840.10008.5.1.4.1.1.13.1.3", "Breast Tomosynthesis Image Storage"},
	{"1.2.840.10008.5.1.4.1.1.20", "Nuclear Medicine Image Storage"},
	{"1.2.840.10008.5.1.4.1.1.66", "Raw Data Storage"},
	{"1.2.840.10008.5.1.4.1.1.66.1", "Spatial Registration Storage"},
	{"1.2.840.10008.5.1.4.1.1.66.4", "Segmentation Storage"},
	{"1.2.840.10008.5.1.4.1.1.77.1.1", "VL Endoscopic Image Storage"},
	{"1.2.840.10008.5.1.4.1.1.77.1.2", "VL Microscopic Image Storage"},
	{"1.2.840.10008.5.1.4.1.1.77.1.4", "VL Photographic Image Storage"},
	{"1.2.840.10008.5.1.4.1.1.77.1.5.1", "Ophthalmic Photography 8 Bit Image Storage"},
	{"1.2.840.10008.5.1.4.1.1.77.1.5.2", "Ophthalmic Photography 16 Bit Image Storage"},
	{"1.2.840.10008.5.1.4.1.1.77.1.5.4", "Ophthalmic Tomography Image Storage"},
	{"1.2.840.10008.5.1.4.1.1.88.11", "Basic Text SR Storage"},
	{"1.2.840.10008.5.1.4.1.1.88.22", "Enhanced SR Storage"},
	{"1.2.840.10008.5.1.4.1.1.88.33", "Comprehensive SR Storage"},
	{"1.2.840.10008.5.1.4.1.1.88.34", "Comprehensive 3D SR Storage"},
	{"1.2.840.10008.5.1.4.1.1.88.50", "Mammography CAD SR Storage"},
	{"1.2.840.10008.5.1.4.1.1.88.59", "Key Object Selection Document Storage"},
	{"1.2.840.10008.5.1.4.1.1.88.65", "Chest CAD SR Storage"},
	{"1.2.840.10008.5.1.4.1.1.88.67", "X-Ray Radiation Dose SR Storage"},
	{"1.2.840.10008.5.1.4.1.1.104.1", "Encapsulated PDF Storage"},
	{"1.2.840.10008.5.1.4.1.1.104.2", "Encapsulated CDA Storage"},
	{"1.2.840.10008.5.1.4.1.1.128", "Positron Emission Tomography Image Storage"},
	{"1.2.840.10008.5.1.4.1.1.128.1", "Legacy Converted Enhanced PET Image Storage"},
	{"1.2.840.10008.5.1.4.1.1.130", "Enhanced PET Image Storage"},
	{"1.2.840.10008.5.1.4.1.1.481.1", "RT Image Storage"},
	{"1.2.840.10008.5.1.4.1.1.481.2", "RT Dose Storage"},
	{"1.2.840.10008.5.1.4.1.1.481.3", "RT Structure Set Storage"},
	{"1.2.840.10008.5.1.4.1.1.481.5", "RT Plan Storage"},
	{"1.2.840.10008.5.1.4.1.1.481.8", "RT Ion Plan Storage"},
}

// StorageTransferSyntaxes are the transfer syntaxes the C-STORE SCP accepts, in order of
// preference when one presentation context proposes several (PS3.5 annex A). The data set is
// kept in the one negotiated, never transcoded. The order avoids making the peer lose anything:
// lossless compression first (a peer proposes it for data it holds compressed, and keeping it
// saves space at no cost); then the uncompressed syntaxes, explicit VR little endian first as
// every reader downstream understands it; lossy compression last, so that a peer holding
// uncompressed images is never asked to compress them lossily, while one holding lossy JPEG
// can still send it (in a context of its own, as peers propose compressed syntaxes).
var StorageTransferSyntaxes = []string{
	"1.2.840.10008.1.2.4.70", // JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 SV1)
	"1.2.840.10008.1.2.4.57", // JPEG Lossless, Non-Hierarchical (Process 14)
	"1.2.840.10008.1.2.4.80", // JPEG-LS Lossless
	"1.2.840.10008.1.2.4.90", // JPEG 2000 Image Compression (Lossless Only)
	"1.2.840.10008.1.2.5",    // RLE Lossless
	ExplicitVRLittleEndian,
	ImplicitVRLittleEndian,
	deflatedExplicitVRLittleEndian,
	explicitVRBigEndian,      // retired, still sent by old equipment
	"1.2.840.10008.1.2.4.50", // JPEG Baseline (Process 1)
	"1.2.840.10008.1.2.4.51", // JPEG Extended (Process 2 & 4)
	"1.2.840.10008.1.2.4.81", // JPEG-LS Lossy (Near-Lossless)
	"1.2.840.10008.1.2.4.91", // JPEG 2000 Image Compression
}

// StatusDataSetMismatch is the C-STORE failure "Error: Data Set does not match SOP Class"
// (PS3.4 B.2.3, A9xx): the code C-FIND calls StatusIdentifierDoesNotMatchClass.
const StatusDataSetMismatch = StatusIdentifierDoesNotMatchClass

// StorageServices returns the C-STORE SCP (PS3.4 annex B) as one Service per storage SOP class
// (StorageSOPClasses), each accepting StorageTransferSyntaxes, to list in Server.Services. For
// each C-STORE-RQ it streams the data set into a Part 10 file in cfg.IncomingDir, fsyncs it,
// reads the header with github.com/suyashkumar/dicom (pixel data skipped), checks it against
// the command, and hands file and header to sink; success goes back only after sink returns
// nil. docs/dicom.md lists the statuses. logger receives one line per instance (UIDs, sizes,
// statuses; no patient data); nil discards.
func StorageServices(sink InstanceSink, cfg StorageConfig, logger *slog.Logger) ([]Service, error) {
	if sink == nil {
		return nil, errors.New("dimse: StorageServices: sink is nil")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxInstanceSize == 0 {
		cfg.MaxInstanceSize = DefaultMaxInstanceSize
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &storageHandler{sink: sink, cfg: cfg, log: logger}
	svcs := make([]Service, len(StorageSOPClasses))
	for i, c := range StorageSOPClasses {
		svcs[i] = Service{SOPClass: c.UID, TransferSyntaxes: StorageTransferSyntaxes, Handler: h, Operation: OpStore}
	}
	return svcs, nil
}

type storageHandler struct {
	sink InstanceSink
	cfg  StorageConfig
	log  *slog.Logger
}

var _ Handler = (*storageHandler)(nil)

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
	msg := fmt.Sprintf("dimse: instance refused (%s): %s", f.Status, f.Reason)
	if f.Tag != 0 {
		msg += " " + f.Tag.String()
	}
	if f.Err != nil {
		msg += ": " + f.Err.Error()
	}
	return msg
}

func (f *InstanceError) Unwrap() error { return f.Err }

func (f *InstanceError) response() Response {
	rsp := Response{Status: f.Status, ErrorComment: errorComment(f.Reason)}
	if f.Tag != 0 {
		v := binary.LittleEndian.AppendUint16(nil, f.Tag.Group())
		rsp.Other = []*Element{{Tag: TagOffendingElement, VR: VRAT, Value: binary.LittleEndian.AppendUint16(v, f.Tag.Element())}}
	}
	return rsp
}

// writeBuffers are the buffers between the association and the file: one PDU arrives at a
// time, a few of them are written at once.
var writeBuffers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 256<<10) }}

// ServeDIMSE answers one C-STORE-RQ (PS3.4 B.2.2, PS3.7 9.1.1).
func (h *storageHandler) ServeDIMSE(ctx context.Context, req *Request, w ResponseWriter) {
	if req.Command.Field != CStoreRQ {
		_ = w.Respond(Response{Status: StatusUnrecognizedOperation})
		return
	}
	start := time.Now()
	log := h.log.With("calling_ae", req.Association.CallingAETitle, "message_id", req.Command.MessageID,
		"sop_class", req.SOPClass, "transfer_syntax", req.TransferSyntax)
	inst, tmpPath, added, fail := h.store(ctx, req)
	if fail == nil {
		log.Info("C-STORE", "sop_instance_uid", inst.SOPInstanceUID, "size", inst.Size, "added", added,
			"duration", time.Since(start))
		_ = w.Respond(Response{Status: StatusSuccess})
		return
	}
	if tmpPath != "" {
		// Nothing was acknowledged: the file goes.
		if err := os.Remove(tmpPath); err != nil && !errors.Is(err, os.ErrNotExist) {
			log.Warn("removing an unacknowledged instance file", "path", tmpPath, "err", err)
		}
	}
	if errors.Is(context.Cause(ctx), ErrAssociationClosed) {
		// Nobody to answer; the peer got no success and sends the instance again.
		log.Info("C-STORE cut off: association closed", "sop_instance_uid", req.Command.AffectedSOPInstanceUID, "err", fail.Err)
		return
	}
	attrs := []any{"sop_instance_uid", req.Command.AffectedSOPInstanceUID, "status", fail.Status.String(), "reason", fail.Reason}
	if fail.Tag != 0 {
		attrs = append(attrs, "element", fail.Tag.String())
	}
	if fail.Err != nil {
		attrs = append(attrs, "err", fail.Err)
	}
	log.Warn("C-STORE refused", attrs...)
	_ = w.Respond(fail.response())
}

// store receives, checks and hands over one instance. It returns the temporary file's path
// once created (for the caller to remove on failure).
func (h *storageHandler) store(ctx context.Context, req *Request) (inst *engine.Instance, tmpPath string, added bool, fail *InstanceError) {
	cmd := req.Command
	affected := trimUID(cmd.AffectedSOPInstanceUID)
	switch {
	case affected == "":
		return nil, "", false, &InstanceError{Status: StatusCannotUnderstand, Tag: TagAffectedSOPInstanceUID,
			Reason: "C-STORE-RQ without Affected SOP Instance UID"}
	case req.Data == nil:
		return nil, "", false, &InstanceError{Status: StatusCannotUnderstand, Reason: "C-STORE-RQ without a data set"}
	}

	f, err := os.CreateTemp(h.cfg.IncomingDir, "cstore-*.dcm")
	if err != nil {
		return nil, "", false, &InstanceError{Status: StatusOutOfResources, Reason: "cannot create the instance file", Err: err}
	}
	tmpPath = f.Name()
	size, sum, fail := h.receive(f, req, affected)
	if cerr := f.Close(); cerr != nil && fail == nil {
		fail = &InstanceError{Status: StatusOutOfResources, Reason: "cannot write the instance file", Err: cerr}
	}
	if fail != nil {
		return nil, tmpPath, false, fail
	}

	inst, err = ReadInstanceWithin(tmpPath, h.cfg.MaxHeaderSize)
	if err != nil {
		var ie *InstanceError
		if !errors.As(err, &ie) {
			ie = &InstanceError{Status: StatusOutOfResources, Reason: "cannot read the instance file", Err: err}
		}
		return nil, tmpPath, false, ie
	}
	if fail := checkInstance(inst, cmd, req.SOPClass, affected); fail != nil {
		return nil, tmpPath, false, fail
	}
	inst.TransferSyntaxUID = req.TransferSyntax
	inst.Size = size
	inst.SHA256 = sum
	inst.ReceivedAt = req.ReceivedAt
	inst.CallingAETitle = req.Association.CallingAETitle
	inst.CalledAETitle = req.Association.CalledAETitle
	inst.PeerAddr = req.Association.RemoteAddr

	added, err = h.sink.StoreInstance(ctx, inst, tmpPath)
	switch {
	case err == nil:
		return inst, tmpPath, added, nil
	case ctx.Err() != nil:
		return nil, tmpPath, false, &InstanceError{Status: StatusOutOfResources, Reason: "operation cancelled", Err: err}
	case errors.Is(err, ErrInstanceRefused):
		return nil, tmpPath, false, &InstanceError{Status: StatusCannotUnderstand, Reason: "instance refused by the store", Err: err}
	}
	// The store failed (database, disk): a condition on Ferry's side that may pass, hence
	// A700, which storage SCUs treat as "retry later", rather than C000 ("this data set is
	// wrong"), which they do not retry.
	return nil, tmpPath, false, &InstanceError{Status: StatusOutOfResources, Reason: "instance could not be stored", Err: err}
}

// receive writes the Part 10 file: header, then the data set as it streams in, counting and
// hashing; then fsyncs it. It returns the file's size and SHA-256.
func (h *storageHandler) receive(f *os.File, req *Request, affected string) (int64, string, *InstanceError) {
	hdr, err := AppendFileHeader(nil, FileMeta{
		MediaStorageSOPClassUID:    req.SOPClass,
		MediaStorageSOPInstanceUID: affected,
		TransferSyntaxUID:          req.TransferSyntax,
		SourceAETitle:              req.Association.CallingAETitle,
	})
	if err != nil {
		return 0, "", &InstanceError{Status: StatusCannotUnderstand, Reason: "cannot build file meta information", Err: err}
	}
	sum := sha256.New()
	fw := &fileWriter{f: f, h: sum}
	bw := writeBuffers.Get().(*bufio.Writer)
	bw.Reset(fw)
	defer func() { bw.Reset(nil); writeBuffers.Put(bw) }()

	if _, err := bw.Write(hdr); err != nil {
		return 0, "", writeFailure(err)
	}
	limit := h.cfg.MaxInstanceSize
	n, err := bw.ReadFrom(io.LimitReader(req.Data, limit+1))
	switch {
	case fw.err != nil:
		return 0, "", writeFailure(fw.err)
	case err != nil:
		// Reading from the association failed: it ended (ErrAssociationClosed).
		return 0, "", &InstanceError{Status: StatusOutOfResources, Reason: "data set not received", Err: err}
	case n > limit:
		return 0, "", &InstanceError{Status: StatusOutOfResources,
			Reason: fmt.Sprintf("instance larger than %d bytes", limit)}
	}
	if err := bw.Flush(); err != nil {
		return 0, "", writeFailure(err)
	}
	if err := f.Sync(); err != nil {
		return 0, "", writeFailure(err)
	}
	return fw.n, hex.EncodeToString(sum.Sum(nil)), nil
}

// fileWriter writes to the file and the hash, and remembers a write error apart from errors
// reading the association.
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

func writeFailure(err error) *InstanceError {
	comment := "cannot write the instance file"
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		comment = "storage full"
	}
	return &InstanceError{Status: StatusOutOfResources, Reason: comment, Err: err}
}

// Tags read from a stored instance's header, in suyashkumar/dicom's form.
var (
	libSpecificCharacterSet   = dicomtag.Tag{Group: 0x0008, Element: 0x0005}
	libPixelData              = dicomtag.Tag{Group: 0x7FE0, Element: 0x0010}
	libTransferSyntaxUID      = dicomtag.Tag{Group: 0x0002, Element: 0x0010}
	instanceHeaderAttributes  = map[dicomtag.Tag]func(*engine.Instance) *string{}
	textAffectedByCharset     = map[dicomtag.Tag]bool{}
	requiredInstanceAttribute = []struct {
		tag Tag
		get func(*engine.Instance) string
	}{
		{TagSOPClassUID, func(i *engine.Instance) string { return i.SOPClassUID }},
		{TagSOPInstanceUID, func(i *engine.Instance) string { return i.SOPInstanceUID }},
		{TagStudyInstanceUID, func(i *engine.Instance) string { return i.StudyInstanceUID }},
		{TagSeriesInstanceUID, func(i *engine.Instance) string { return i.SeriesInstanceUID }},
	}
)

func init() {
	attr := func(group, element uint16, text bool, field func(*engine.Instance) *string) {
		t := dicomtag.Tag{Group: group, Element: element}
		instanceHeaderAttributes[t] = field
		textAffectedByCharset[t] = text
	}
	attr(0x0008, 0x0016, false, func(i *engine.Instance) *string { return &i.SOPClassUID })
	attr(0x0008, 0x0018, false, func(i *engine.Instance) *string { return &i.SOPInstanceUID })
	attr(0x0020, 0x000E, false, func(i *engine.Instance) *string { return &i.SeriesInstanceUID })
	attr(0x0020, 0x000D, false, func(i *engine.Instance) *string { return &i.StudyInstanceUID })
	attr(0x0008, 0x0060, false, func(i *engine.Instance) *string { return &i.Modality })
	attr(0x0020, 0x0011, false, func(i *engine.Instance) *string { return &i.SeriesNumber })
	attr(0x0008, 0x103E, true, func(i *engine.Instance) *string { return &i.SeriesDescription })
	attr(0x0020, 0x0013, false, func(i *engine.Instance) *string { return &i.InstanceNumber })
	attr(0x0010, 0x0020, true, func(i *engine.Instance) *string { return &i.PatientID })
	attr(0x0010, 0x0021, true, func(i *engine.Instance) *string { return &i.IssuerOfPatientID })
	attr(0x0010, 0x0010, true, func(i *engine.Instance) *string { return &i.PatientName })
	attr(0x0010, 0x0030, false, func(i *engine.Instance) *string { return &i.PatientBirthDate })
	attr(0x0010, 0x0040, false, func(i *engine.Instance) *string { return &i.PatientSex })
	attr(0x0008, 0x0050, true, func(i *engine.Instance) *string { return &i.AccessionNumber })
	attr(0x0008, 0x0020, false, func(i *engine.Instance) *string { return &i.StudyDate })
	attr(0x0008, 0x0030, false, func(i *engine.Instance) *string { return &i.StudyTime })
	attr(0x0008, 0x1030, true, func(i *engine.Instance) *string { return &i.StudyDescription })
	attr(0x0020, 0x0010, true, func(i *engine.Instance) *string { return &i.StudyID })
	attr(0x0008, 0x0090, true, func(i *engine.Instance) *string { return &i.ReferringPhysicianName })
}

// ReadInstance reads the instance in the DICOM Part 10 file at path (preamble, file meta
// information, data set), as both receivers do before they hand a file to the intake: the
// C-STORE SCP here and STOW-RS (adapters/dicomweb). It returns the header attributes of
// engine.Instance, TransferSyntaxUID from the file meta information, Path (path) and Size; the
// receiver adds the rest (hash, time, origin). The SOP Class, SOP Instance, Study and Series
// Instance UIDs must be present and valid UIDs: they name the instance's file and rows.
//
// Its error is an *InstanceError saying which status applies: C000 for a file or data set that
// does not parse (no "DICM" after the preamble included) or text that does not decode, A900 for
// a missing or malformed UID, A700 when the file cannot be read.
func ReadInstance(path string) (*engine.Instance, error) {
	return ReadInstanceWithin(path, DefaultMaxHeaderSize)
}

// ReadInstanceWithin is ReadInstance with a cap on the memory its header read may use
// (maxHeaderSize; 0: DefaultMaxHeaderSize). Before the library parses anything, every element
// header it would read is walked (lengthguard.go): a declared length past the bytes in the
// file, an irregular structure or a header over the cap is refused with C000, so no declared
// length is ever allocated.
func ReadInstanceWithin(path string, maxHeaderSize int64) (*engine.Instance, error) {
	if maxHeaderSize <= 0 {
		maxHeaderSize = DefaultMaxHeaderSize
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, &InstanceError{Status: StatusOutOfResources, Reason: "cannot read the instance file", Err: err}
	}
	// suyashkumar/dicom reads a file without "DICM" as a bare data set; Ferry keeps Part 10
	// files only (PS3.10 7.1: a 128-byte preamble, then "DICM", then the file meta information).
	if ok, err := hasPart10Prefix(path); err != nil {
		return nil, &InstanceError{Status: StatusOutOfResources, Reason: "cannot read the instance file", Err: err}
	} else if !ok {
		return nil, &InstanceError{Status: StatusCannotUnderstand, Reason: "not a DICOM Part 10 file (no DICM prefix)"}
	}
	inst, fail := readInstanceHeader(path, fi.Size(), maxHeaderSize)
	if fail != nil {
		return nil, fail
	}
	for _, r := range requiredInstanceAttribute {
		_, kw, _ := LookupTag(r.tag)
		switch v := r.get(inst); {
		case v == "":
			return nil, &InstanceError{Status: StatusDataSetMismatch, Tag: r.tag, Reason: kw + " missing"}
		case !validUID(v):
			// The UIDs name the instance's file and rows: one that is not a UID is refused here
			// rather than failing in the store, where it would look like a passing fault.
			return nil, &InstanceError{Status: StatusDataSetMismatch, Tag: r.tag, Reason: kw + " is not a valid UID"}
		}
	}
	inst.Path = path
	inst.Size = fi.Size()
	return inst, nil
}

// hasPart10Prefix reports whether the file starts with a 128-byte preamble and "DICM".
func hasPart10Prefix(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var b [132]byte
	switch _, err := io.ReadFull(f, b[:]); {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return false, nil
	case err != nil:
		return false, err
	}
	return string(b[128:]) == "DICM", nil
}

// readInstanceHeader parses the stored file's data set with suyashkumar/dicom up to the pixel
// data (which it skips) and reads the attributes of engine.Instance. The library reads every
// transfer syntax Ferry accepts: implicit and explicit VR little endian, explicit VR big
// endian, deflated, and the encapsulated (compressed) ones. A data set it cannot read is
// refused with C000.
func readInstanceHeader(path string, size, maxHeaderSize int64) (inst *engine.Instance, fail *InstanceError) {
	defer func() {
		// The parser is outside code reading outside bytes: a panic in it is a data set Ferry
		// cannot understand, not a reason to abort the association.
		if p := recover(); p != nil {
			inst, fail = nil, &InstanceError{Status: StatusCannotUnderstand, Reason: "data set does not parse",
				Err: fmt.Errorf("DICOM parser panicked: %s", panicText(p))}
		}
	}()
	f, err := os.Open(path)
	if err != nil {
		return nil, &InstanceError{Status: StatusOutOfResources, Reason: "cannot read the instance file", Err: err}
	}
	defer f.Close()
	scan, err := scanInstanceHeader(f, size, maxHeaderSize)
	if err != nil {
		var le *lengthError
		if errors.As(err, &le) {
			return nil, &InstanceError{Status: StatusCannotUnderstand, Tag: le.tag, Reason: "data set does not parse: " + le.reason}
		}
		return nil, &InstanceError{Status: StatusOutOfResources, Reason: "cannot read the instance file", Err: err}
	}
	// The library reads the file only up to the end of the header groups (the whole file when
	// deflated: the scan has bounded what it inflates and holds).
	in := io.NewSectionReader(f, 0, scan.end)
	// Unknown character sets are allowed here: the library then leaves text undecoded, and
	// decodeText applies Ferry's own decoders.
	p, err := dicom.NewParser(in, scan.end, nil, dicom.SkipPixelData(), dicom.AllowUnknownSpecificCharacterSet())
	if err != nil {
		return nil, &InstanceError{Status: StatusCannotUnderstand, Reason: "file meta information does not parse", Err: parseError(err)}
	}
	inst = &engine.Instance{}
	meta := p.GetMetadata()
	if e, err := meta.FindElementByTag(libTransferSyntaxUID); err == nil {
		inst.TransferSyntaxUID = strings.Join(stringValues(e), "")
	}
	var charsetTerms []string
	var text []dicomtag.Tag
	for {
		e, err := p.Next()
		if errors.Is(err, dicom.ErrorEndOfDICOM) || errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, &InstanceError{Status: StatusCannotUnderstand, Reason: "data set does not parse", Err: parseError(err)}
		}
		if e.Tag.Group == 0x0002 {
			continue
		}
		if e.Tag.Group > lastHeaderGroup {
			break // past the attributes Ferry reads (and where the scan told the library to stop)
		}
		if e.Tag == libSpecificCharacterSet {
			charsetTerms = stringValues(e)
		}
		if field, ok := instanceHeaderAttributes[e.Tag]; ok {
			v := strings.Join(stringValues(e), `\`)
			*field(inst) = v
			if textAffectedByCharset[e.Tag] {
				text = append(text, e.Tag)
			}
		}
		if e.Tag.Compare(libPixelData) >= 0 {
			break // the header is read; what follows is pixel data and trailing padding
		}
	}
	if err := decodeInstanceText(inst, charsetTerms, text); err != nil {
		return nil, &InstanceError{Status: StatusCannotUnderstand, Tag: TagSpecificCharacterSet,
			Reason: "text not decodable in its Specific Character Set", Err: err}
	}
	return inst, nil
}

// tagInError matches a tag as suyashkumar/dicom's errors write it.
var tagInError = regexp.MustCompile(`\([0-9a-fA-F]{4},[0-9a-fA-F]{4}\)`)

// parseError turns a suyashkumar/dicom error into one safe to log: its messages may quote
// values ("non item element found in sequence. got: …", strconv errors), so only the tags it
// names and whether the data set ended early are kept.
func parseError(err error) error {
	tags := slices.Compact(tagInError.FindAllString(err.Error(), -1))
	truncated := errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
	return fmt.Errorf("DICOM parser: failed at %s (truncated: %v)", strings.Join(tags, " in "), truncated)
}

// stringValues returns an element's string values, trimmed; nil for a non-string element.
func stringValues(e *dicom.Element) []string {
	v, ok := e.Value.GetValue().([]string)
	if !ok {
		return nil
	}
	out := make([]string, len(v))
	for i, s := range v {
		out[i] = strings.Trim(s, " \x00")
	}
	return out
}

// decodeInstanceText makes the text attributes UTF-8. suyashkumar/dicom decodes the sets it
// knows (its htmlindex decoders; ISO 2022 Japanese and Korean too); for the default repertoire
// and the sets it does not know, it leaves the bytes as they were, and Ferry's own decoders
// (charset.go, as the worklist SCP uses) apply: undeclared non-ASCII text is UTF-8 when valid,
// else Latin-1; ISO_IR 203 is decoded; a set neither knows holding non-ASCII text is refused.
func decodeInstanceText(inst *engine.Instance, terms []string, tags []dicomtag.Tag) error {
	declared := false
	for _, t := range terms {
		if strings.TrimSpace(t) != "" {
			declared = true
		}
	}
	if declared {
		if _, err := dicomcharset.ParseSpecificCharacterSet(terms); err == nil {
			// Decoded by the library. Its EUC-KR decoder leaves the ISO 2022 escape sequences
			// of "ISO 2022 IR 149" in the text; they select the set it already applied.
			for _, t := range tags {
				v := instanceHeaderAttributes[t](inst)
				*v = strings.ToValidUTF8(removeEscapeSequences(*v), "\uFFFD")
			}
			return nil
		}
	}
	cs := parseCharacterSet(terms)
	for _, t := range tags {
		v := instanceHeaderAttributes[t](inst)
		s, err := cs.decode([]byte(*v))
		if err != nil {
			return err
		}
		*v = s
	}
	return nil
}

// removeEscapeSequences drops ISO 2022 escape sequences (ESC, intermediate bytes 20–2F, a
// final byte 30–7E; ISO/IEC 2022 13.2) from decoded text.
func removeEscapeSequences(s string) string {
	if !strings.Contains(s, "\x1b") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != 0x1B {
			b.WriteByte(s[i])
			continue
		}
		j := i + 1
		for j < len(s) && s[j] >= 0x20 && s[j] <= 0x2F {
			j++
		}
		if j < len(s) && s[j] >= 0x30 && s[j] <= 0x7E {
			i = j
			continue
		}
		b.WriteByte(s[i]) // not an escape sequence: kept
	}
	return b.String()
}

// checkInstance compares the header, as ReadInstance checked it, with the command (PS3.4
// B.2.3: A900, "Data Set does not match SOP Class").
func checkInstance(inst *engine.Instance, cmd *Command, contextSOPClass, affected string) *InstanceError {
	sopClass := trimUID(cmd.AffectedSOPClassUID)
	if sopClass == "" {
		sopClass = contextSOPClass
	}
	if inst.SOPClassUID != sopClass {
		return &InstanceError{Status: StatusDataSetMismatch, Tag: TagSOPClassUID,
			Reason: "SOP Class UID differs from Affected SOP Class UID"}
	}
	if inst.SOPInstanceUID != affected {
		return &InstanceError{Status: StatusDataSetMismatch, Tag: TagSOPInstanceUID,
			Reason: "SOP Instance UID differs from Affected SOP Instance UID"}
	}
	return nil
}

// validUID reports whether s is a UID (PS3.5 9.1): at most 64 characters, digits in
// components separated by dots, none empty. (Leading zeros, which 9.1 forbids, are accepted:
// some equipment writes them, and they harm nothing here.)
func validUID(s string) bool {
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

func trimUID(s string) string { return strings.TrimRight(strings.TrimSpace(s), "\x00") }
