// Package hl7 is Ferry's HL7 v2 codec for the ER7 ("pipe and hat") encoding: it parses messages,
// reads and writes values by path, escapes and unescapes text, serializes messages back byte for
// byte, splits batches, reads headers from broken messages, and builds acknowledgments. It does
// no I/O; MLLP framing lives in adapters/mllp.
//
// # Reading
//
// Parse reads one message (HL7 v2.5.1 ch. 2: §2.5 message framework and delimiters, §2.6 message
// construction rules, §2.7 escape sequences). A Message keeps the text once and indexes its
// segments and field separators in a single pass; repetitions, components and subcomponents are
// located when read — in a long field, through an index built once on first need, so that reading
// every repetition or segment by its number (PID-3[n], OBX[n]) is linear in the message's size.
// CheckLimits bounds the segments of a message and the repetitions of a field. Values are read by path — "PID-5.1", "PID-3[2].4.1", "OBX[2]-5" (see
// ParsePath and docs/hl7-paths.md) — or by walking Segments. Get returns text with escape
// sequences decoded; values without one are substrings of the message, so reading them does not
// allocate. Parser parses without allocating, for loops over many messages.
//
// # Character sets
//
// The text is held as UTF-8. MSH-18 names the character set (table 0211: "ASCII", "8859/1" …
// "8859/9", "8859/15", "UNICODE UTF-8", "UNICODE", "GB 18030-2000", "KS X 1001", "BIG-5",
// "ISO IR87"; common IANA spellings like "UTF-8" and "ISO-8859-1" are accepted too). When MSH-18
// is empty, "ASCII" or not a set Ferry knows, the bytes are read as UTF-8 when they are valid
// UTF-8 and as ISO-8859-1 otherwise — every byte string is valid ISO-8859-1, so nothing is lost,
// and Bytes writes the same bytes back. A message labelled ISO-8859 whose bytes are valid UTF-8
// with non-ASCII text is read as the UTF-8 it is (a frequent mislabelling; genuine ISO-8859 text
// is almost never valid UTF-8). Message.Encoding reports the choice.
//
// # Writing
//
// Bytes serializes a message with each segment terminated by CR, in its character set. Nothing
// is decoded and re-escaped on the way: what Set did not touch is written exactly as received,
// so parse → Bytes reproduces a message byte for byte up to segment framing (BOM dropped, LF and
// CRLF written as CR, blank lines dropped — see NormalizeSegmentEnds). Set escapes the value it
// writes and grows the message as needed.
//
// # Errors and acknowledgments
//
// Parse fails with a *ParseError carrying a location and an HL7 table 0357 code; its text never
// contains message content, so it can be logged. ReadHeader reads MSH best-effort when Parse
// fails, so that a negative acknowledgment can still echo MSH-10. BuildACK builds the ACK in the
// inbound message's version, delimiters, character set and acknowledgment mode (§2.9).
package hl7
