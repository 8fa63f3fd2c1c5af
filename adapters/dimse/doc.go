// Package dimse speaks DICOM over TCP: the upper layer protocol (PS3.8) and the DIMSE message
// exchange (PS3.7). PACS and modalities use it to verify Ferry (C-ECHO), to query its Modality
// Worklist (C-FIND) and to send it studies (C-STORE).
//
// Written here on purpose (DESIGN.md): go-netdicom is archived and has another element model.
// The package has three layers over package dicom, each usable on its own:
//
//   - PDUs (ReadPDU, EncodePDU, WritePDU): the seven PDU types and their items, over any
//     io.Reader, with no sockets in it. Fuzzed (FuzzReadPDU): the first code to touch bytes from
//     outside.
//   - Data sets are package dicom's (the one element model, its codec and dictionary, character
//     sets, Part 10 files, instance errors): this package has no element model of its own.
//   - DIMSE commands (Command, DecodeCommand; statuses are dicom.Status): group 0000 in implicit
//     VR little endian.
//   - Server (the SCP) and Client (an SCU): associations, presentation context negotiation,
//     fragmentation, and the dispatch of requests to a Handler per SOP class. The Server serves
//     Verification (C-ECHO) itself; the Modality Worklist C-FIND SCP (WorklistService, with
//     the attribute matching of PS3.4 C.2.2.2) and the Storage SCP (StorageServices: C-STORE
//     into Part 10 files written with dicom.ReceiveFile, headers read with dicom.ReadInstance,
//     handed to an InstanceSink) plug in as Services. Client.Find is the C-FIND SCU.
//   - Who may call (peers.go): AE titles bound to addresses and client certificates, the
//     operations each may perform, and what unknown callers may do; DICOM TLS with ServeTLS.
//
// Nothing in this package logs data set contents: logs carry addresses, AE titles, SOP class
// UIDs, message IDs, statuses and sizes. docs/dicom.md says what the listener does with each
// kind of input and how to test it with dcmtk.
package dimse
