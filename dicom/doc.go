// Package dicom is Ferry's DICOM format package, as hl7/ and fhir/ are for theirs: one element
// model and the reading and writing Ferry needs, with no networking in it. adapters/dimse (the
// upper layer and DIMSE services) and adapters/dicomweb (STOW-RS, QIDO-RS) both use it; neither
// has an element model of its own.
//
//   - The element model (dataset.go): Tag, VR, Element, DataSet. An element keeps its value as
//     encoded (Value, little endian, padding included; accessors decode it), a sequence its
//     Items, encapsulated pixel data its Fragments (basic offset table first) — so the frames of
//     an image are at hand without another model when pixel data is read. DecodeDataSet and
//     EncodeDataSet are the codec for implicit and explicit VR little endian (the syntaxes of
//     command sets, C-FIND identifiers and every compressed transfer syntax), sequences and
//     items of defined and undefined length; the small data dictionary (dictionary.go) gives
//     implicit VR elements their VR. Fuzzed (FuzzDataSet).
//   - Character sets (charset.go): Specific Character Set (0008,0005) decoded to UTF-8 and, for
//     the single-byte sets, GB18030 and GBK, encoded back; the ISO 2022 multi-byte sets
//     (Japanese, Korean, Chinese) are read.
//   - Transfer syntaxes (transfer.go): the uncompressed four, and the compressed ones as explicit
//     VR little endian data sets with encapsulated pixel data.
//   - Part 10 files: AppendFileHeader and SplitFile (the preamble and file meta information);
//     ReadInstance (header.go), the one reading of a stored instance's header in every transfer
//     syntax Ferry accepts (big endian and deflated included) — one walk that checks every
//     declared length against the bytes that are there and holds only the attributes Ferry
//     indexes, so no declared length is ever allocated (issue 17, item 4). Fuzzed
//     (FuzzReadInstance).
//   - Instances as receivers keep them (instance.go): ReceiveFile writes and fsyncs an arriving
//     instance; InstanceError is a refusal with its status (the codes C-STORE answers and STOW-RS
//     reports are the same, Status); SinkFailure, WriteFailure and ErrInstanceRefused say which.
//
// Package dicomtest builds the data sets, Part 10 files and forged inputs the tests of every
// DICOM receiver use, so that they run in a fresh clone.
//
// Nothing here logs, and no error text holds a value from a data set: errors name tags, offsets
// and reasons, so they are safe to log (DESIGN.md rule 4).
package dicom
