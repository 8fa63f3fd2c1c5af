package dimse

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/ferryhealth/ferry/dicom"
	"github.com/ferryhealth/ferry/engine"
)

// The Storage service class (PS3.4 annex B): Ferry is a Storage SCP of conformance level 2
// (full): it keeps every instance as received, all of its elements, byte for byte.

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
// unless the error wraps dicom.ErrInstanceRefused: the instance can never be stored as it is, and the
// peer is answered C000 (Error: Cannot understand). ctx is cancelled when the association ends.
// The error's text is logged, so it must not hold patient data.
type InstanceSink interface {
	StoreInstance(ctx context.Context, inst *engine.Instance, tmpPath string) (added bool, err error)
}

// StorageConfig configures the C-STORE SCP. Its zero fields take the defaults named below.
type StorageConfig struct {
	// IncomingDir is where an instance's file is written while it arrives, before the sink
	// moves it into place. Required; it must exist and be on the same file system as the data
	// directory (the move is a rename). Every file in it is unacknowledged: at start the engine
	// may delete what a crash left there.
	IncomingDir string
	// MaxInstanceSize caps one instance's data set, in bytes (default dicom.DefaultMaxInstanceSize,
	// 2 GiB). A larger one is refused with A700 and its bytes discarded.
	MaxInstanceSize int64
	// MaxHeaderSize caps the memory reading one instance's header may use (default
	// dicom.DefaultMaxHeaderSize, 16 MiB): with one PDU buffer (Server.MaxPDULength) and one write
	// buffer (256 KiB), what a C-STORE costs an association in memory, whatever lengths the
	// instance declares.
	MaxHeaderSize int64
}

// Validate checks the configuration: IncomingDir must be a directory Ferry can write in.
func (c *StorageConfig) Validate() error {
	if err := dicom.ValidateIncoming(c.IncomingDir, c.MaxInstanceSize, c.MaxHeaderSize); err != nil {
		return fmt.Errorf("dimse: invalid storage configuration: %w", err)
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
	dicom.ExplicitVRLittleEndian,
	dicom.ImplicitVRLittleEndian,
	dicom.DeflatedExplicitVRLittleEndian,
	dicom.ExplicitVRBigEndian, // retired, still sent by old equipment
	"1.2.840.10008.1.2.4.50",  // JPEG Baseline (Process 1)
	"1.2.840.10008.1.2.4.51",  // JPEG Extended (Process 2 & 4)
	"1.2.840.10008.1.2.4.81",  // JPEG-LS Lossy (Near-Lossless)
	"1.2.840.10008.1.2.4.91",  // JPEG 2000 Image Compression
}

// StorageServices returns the C-STORE SCP (PS3.4 annex B) as one Service per storage SOP class
// (StorageSOPClasses), each accepting StorageTransferSyntaxes, to list in Server.Services. For
// each C-STORE-RQ it streams the data set into a Part 10 file in cfg.IncomingDir, fsyncs it,
// reads the header with dicom.ReadInstance (pixel data walked, not read), checks it against
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
		cfg.MaxInstanceSize = dicom.DefaultMaxInstanceSize
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

// instanceResponse is the C-STORE-RSP refusing an instance: its status, Offending Element and
// Error Comment.
func instanceResponse(f *dicom.InstanceError) Response {
	rsp := Response{Status: f.Status, ErrorComment: errorComment(f.Reason)}
	if f.Tag != 0 {
		v := binary.LittleEndian.AppendUint16(nil, f.Tag.Group())
		rsp.Other = []*dicom.Element{{Tag: dicom.TagOffendingElement, VR: dicom.VRAT, Value: binary.LittleEndian.AppendUint16(v, f.Tag.Element())}}
	}
	return rsp
}

// ServeDIMSE answers one C-STORE-RQ (PS3.4 B.2.2, PS3.7 9.1.1).
func (h *storageHandler) ServeDIMSE(ctx context.Context, req *Request, w ResponseWriter) {
	if req.Command.Field != CStoreRQ {
		_ = w.Respond(Response{Status: dicom.StatusUnrecognizedOperation})
		return
	}
	start := time.Now()
	log := h.log.With("calling_ae", req.Association.CallingAETitle, "message_id", req.Command.MessageID,
		"sop_class", req.SOPClass, "transfer_syntax", req.TransferSyntax)
	inst, tmpPath, added, fail := h.store(ctx, req)
	if fail == nil {
		log.Info("C-STORE", "sop_instance_uid", inst.SOPInstanceUID, "size", inst.Size, "added", added,
			"duration", time.Since(start))
		_ = w.Respond(Response{Status: dicom.StatusSuccess})
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
	_ = w.Respond(instanceResponse(fail))
}

// store receives, checks and hands over one instance. It returns the temporary file's path
// once created (for the caller to remove on failure).
func (h *storageHandler) store(ctx context.Context, req *Request) (inst *engine.Instance, tmpPath string, added bool, fail *dicom.InstanceError) {
	cmd := req.Command
	affected := trimUID(cmd.AffectedSOPInstanceUID)
	switch {
	case affected == "":
		return nil, "", false, &dicom.InstanceError{Status: dicom.StatusCannotUnderstand, Tag: dicom.TagAffectedSOPInstanceUID,
			Reason: "C-STORE-RQ without Affected SOP Instance UID"}
	case req.Data == nil:
		return nil, "", false, &dicom.InstanceError{Status: dicom.StatusCannotUnderstand, Reason: "C-STORE-RQ without a data set"}
	}

	f, err := os.CreateTemp(h.cfg.IncomingDir, "cstore-*.dcm")
	if err != nil {
		return nil, "", false, &dicom.InstanceError{Status: dicom.StatusOutOfResources, Reason: "cannot create the instance file", Err: err}
	}
	tmpPath = f.Name()
	size, sum, fail := h.receive(f, req, affected)
	if cerr := f.Close(); cerr != nil && fail == nil {
		fail = &dicom.InstanceError{Status: dicom.StatusOutOfResources, Reason: "cannot write the instance file", Err: cerr}
	}
	if fail != nil {
		return nil, tmpPath, false, fail
	}

	hdr, err := dicom.ReadInstance(tmpPath, h.cfg.MaxHeaderSize)
	if err != nil {
		return nil, tmpPath, false, dicom.AsInstanceError(err, "cannot read the instance file")
	}
	inst = engine.NewInstance(hdr, tmpPath)
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
	if err != nil {
		return nil, tmpPath, false, dicom.SinkFailure(ctx, err)
	}
	return inst, tmpPath, added, nil
}

// receive writes the Part 10 file: header, then the data set as it streams in, counting and
// hashing; then fsyncs it. It returns the file's size and SHA-256.
func (h *storageHandler) receive(f *os.File, req *Request, affected string) (int64, string, *dicom.InstanceError) {
	hdr, err := dicom.AppendFileHeader(nil, dicom.FileMeta{
		MediaStorageSOPClassUID:    req.SOPClass,
		MediaStorageSOPInstanceUID: affected,
		TransferSyntaxUID:          req.TransferSyntax,
		SourceAETitle:              req.Association.CallingAETitle,
	})
	if err != nil {
		return 0, "", &dicom.InstanceError{Status: dicom.StatusCannotUnderstand, Reason: "cannot build file meta information", Err: err}
	}
	return dicom.ReceiveFile(f, hdr, req.Data, h.cfg.MaxInstanceSize)
}

// checkInstance compares the header, as ReadInstance checked it, with the command (PS3.4
// B.2.3: A900, "Data Set does not match SOP Class").
func checkInstance(inst *engine.Instance, cmd *Command, contextSOPClass, affected string) *dicom.InstanceError {
	sopClass := trimUID(cmd.AffectedSOPClassUID)
	if sopClass == "" {
		sopClass = contextSOPClass
	}
	if inst.SOPClassUID != sopClass {
		return &dicom.InstanceError{Status: dicom.StatusDataSetMismatch, Tag: dicom.TagSOPClassUID,
			Reason: "SOP Class UID differs from Affected SOP Class UID"}
	}
	if inst.SOPInstanceUID != affected {
		return &dicom.InstanceError{Status: dicom.StatusDataSetMismatch, Tag: dicom.TagSOPInstanceUID,
			Reason: "SOP Instance UID differs from Affected SOP Instance UID"}
	}
	return nil
}

func trimUID(s string) string { return strings.TrimRight(strings.TrimSpace(s), "\x00") }
