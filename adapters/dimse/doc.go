// Package dimse speaks DICOM over TCP: the upper layer protocol (PS3.8) and the DIMSE message
// exchange (PS3.7). PACS and modalities use it to verify Ferry (C-ECHO), to query its Modality
// Worklist (C-FIND) and to send it studies (C-STORE).
//
// Written here on purpose (DESIGN.md): go-netdicom is archived and has another element model.
// The package has four layers, each usable on its own:
//
//   - PDUs (ReadPDU, EncodePDU, WritePDU): the seven PDU types and their items, over any
//     io.Reader, with no sockets in it. Fuzzed (FuzzReadPDU): the first code to touch bytes from
//     outside.
//   - Data sets (DecodeDataSet, EncodeDataSet, DataSet, Element): the element codec for implicit
//     and explicit VR little endian, sequences and items of defined and undefined length, and a
//     small data dictionary. Enough to read and write command sets, C-FIND identifiers and a
//     stored instance's header; it does not interpret pixel data or character sets (the worklist
//     SCP applies Specific Character Set to what it reads). Fuzzed (FuzzDataSet).
//     AppendFileHeader and SplitFile handle the Part 10 file wrapper.
//   - DIMSE commands (Command, DecodeCommand, Status): group 0000 in implicit VR little endian.
//   - Server (the SCP) and Client (an SCU): associations, presentation context negotiation,
//     fragmentation, and the dispatch of requests to a Handler per SOP class. The Server serves
//     Verification (C-ECHO) itself; the Modality Worklist C-FIND SCP (WorklistService, with
//     the attribute matching of PS3.4 C.2.2.2) and the Storage SCP (StorageServices: C-STORE
//     into Part 10 files, headers read with github.com/suyashkumar/dicom behind a guard that
//     walks every declared length first (lengthguard.go), handed to an InstanceSink) plug in as
//     Services. Client.Find is the C-FIND SCU.
//   - Who may call (peers.go): AE titles bound to addresses and client certificates, the
//     operations each may perform, and what unknown callers may do; DICOM TLS with ServeTLS.
//
// Nothing in this package logs data set contents: logs carry addresses, AE titles, SOP class
// UIDs, message IDs, statuses and sizes. docs/dicom.md says what the listener does with each
// kind of input and how to test it with dcmtk.
package dimse
