// Package mllp carries HL7 v2 messages over the Minimal Lower Layer Protocol (HL7 MLLP,
// Release 1, the "HL7 Version 3 Standard: Transport Specification - MLLP"): each message is
// sent as one frame, <VT> message <FS><CR>, that is 0x0B, the message bytes, 0x1C 0x0D.
//
// The package has three parts, each usable on its own:
//
//   - Framing (Reader, Writer): MLLP over any io.Reader / io.Writer, with no sockets in it. The
//     listener and the sender use it, and so can tools that read captured streams or files. It is
//     fuzzed (FuzzReader): it is the first code to touch bytes from outside.
//   - Listener (Server): accepts TCP connections (optionally TLS or mutual TLS), reads frames and
//     hands each one to a Handler, which returns the ACK to send back. MLLP is synchronous, so
//     a connection waits for its handler; connections run concurrently and one bad peer never
//     affects another (size cap, read and idle timeouts, connection limit, panics recovered).
//   - Sender: a client that keeps one connection to a peer, sends a message and waits for the
//     ACK whose MSA-2 equals the message's MSH-10, reconnecting with backoff when the connection
//     breaks.
//
// Nothing in this package logs message contents: logs carry peer addresses, byte counts and (in
// the sender) control IDs only. What happens with each kind of bad input is listed in
// docs/mllp.md.
package mllp
