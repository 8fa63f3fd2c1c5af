package hl7

// SplitBatch splits data into messages: an HL7 batch file (HL7 v2.5.1 §2.10.3: [FHS] {[BHS]
// {MSH…} [BTS]} [FTS]), a file holding several messages one after another, or a single message.
// Each message runs from an MSH line to the line before the next MSH or batch segment. The batch
// segments themselves are dropped; so are blank lines and MLLP framing bytes (0x0B at the start of
// a line, 0x1C at its end) between messages. The messages alias data (no copy); give each to
// Parse. It returns a *ParseError when data holds no MSH, or has content outside any message.
func SplitBatch(data []byte) ([][]byte, error) {
	off := 0
	if len(data) >= 3 && string(data[:3]) == bom {
		off = 3
	}
	var msgs [][]byte
	start := -1 // start of the current message, -1 outside one
	end := 0    // end of the current message's last line so far
	position := 0
	flush := func() {
		if start >= 0 {
			msgs = append(msgs, data[start:end])
			start = -1
		}
	}
	for off < len(data) {
		le := off
		for le < len(data) && data[le] != '\r' && data[le] != '\n' {
			le++
		}
		next := le + 1
		if le+1 < len(data) && data[le] == '\r' && data[le+1] == '\n' {
			next++
		}
		next = min(next, len(data))
		ls := off
		off = next
		for ls < le && data[ls] == 0x0B { // MLLP start block
			ls++
		}
		closed := false
		for le > ls && data[le-1] == 0x1C { // MLLP end block
			le--
			closed = true
		}
		line := data[ls:le]
		if isBlankLine(line) {
			if closed {
				flush()
			}
			continue
		}
		position++
		id := ""
		if len(line) >= 3 {
			id = string(line[:3])
		}
		switch id {
		case "MSH":
			flush()
			start = ls
		case "FHS", "BHS", "BTS", "FTS":
			flush()
			continue
		default:
			if start < 0 {
				return nil, &ParseError{Position: position, Code: CodeSegmentSequence,
					Reason: "content outside any message: each message must start with MSH"}
			}
		}
		end = next
		if closed {
			end = le
			flush()
		}
	}
	flush()
	if len(msgs) == 0 {
		return nil, &ParseError{Segment: "MSH", Sequence: 1, Code: CodeSegmentSequence,
			Reason: "no MSH segment: nothing to split"}
	}
	return msgs, nil
}
