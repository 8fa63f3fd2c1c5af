package dimse

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/ferryhealth/ferry/dicom"
	"github.com/ferryhealth/ferry/engine"
)

// ModalityWorklistFindSOPClass is the Modality Worklist Information Model - FIND SOP class
// (PS3.4 K.6.1), the one SOP class of the Basic Worklist Management service that WorklistService
// serves.
const ModalityWorklistFindSOPClass = "1.2.840.10008.5.1.4.31"

// maxIdentifierSize caps a C-FIND identifier. A worklist query is a few hundred bytes.
const maxIdentifierSize = 256 << 10

// WorklistSource is where the Modality Worklist SCP reads its entries: engine.Store implements
// it. WorklistItems is called once per C-FIND-RQ, from the association's handler goroutine,
// concurrently for concurrent associations; ctx is cancelled when the peer sends C-CANCEL-RQ or
// the association ends. It returns the items that may match f (at least every item that does;
// more is fine, the SCP applies the full DICOM matching to each) in worklist order. An error
// answers the query with status C000 (unable to process); its text is logged, so it must not
// hold patient data. The items returned are only read.
type WorklistSource interface {
	WorklistItems(ctx context.Context, f engine.WorklistFilter) ([]*engine.WorklistItem, error)
}

var _ WorklistSource = engine.WorklistReader(nil) // every engine.Store serves

// WorklistService returns the Modality Worklist C-FIND SCP (PS3.4 annex K, IHE RAD-5) as a
// Service to list in Server.Services. For each C-FIND-RQ it decodes the identifier in its
// Specific Character Set, asks src for the candidates the exact keys allow, matches each
// against every key by the rules of PS3.4 C.2.2.2, and answers one pending response per match
// holding the requested attributes, then success. docs/dicom.md lists the keys and statuses.
// logger receives one line per query (no key values); nil discards.
func WorklistService(src WorklistSource, logger *slog.Logger) Service {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return Service{SOPClass: ModalityWorklistFindSOPClass, Handler: &worklistHandler{src: src, log: logger}, Operation: OpFindWorklist}
}

type worklistHandler struct {
	src WorklistSource
	log *slog.Logger
}

// ServeDIMSE answers one C-FIND-RQ (PS3.4 K.4.1.3, PS3.7 9.1.2).
func (h *worklistHandler) ServeDIMSE(ctx context.Context, req *Request, w ResponseWriter) {
	if req.Command.Field != CFindRQ {
		_ = w.Respond(Response{Status: dicom.StatusUnrecognizedOperation})
		return
	}
	log := h.log.With("calling_ae", req.Association.CallingAETitle, "message_id", req.Command.MessageID)
	fail := func(st dicom.Status, tag dicom.Tag, comment string) {
		log.Info("worklist query refused", "status", st.String(), "reason", comment, "element", tag.String())
		rsp := Response{Status: st, ErrorComment: errorComment(comment)}
		if tag != 0 {
			// Offending Element (0000,0901), AT: group then element, little endian.
			v := binary.LittleEndian.AppendUint16(nil, tag.Group())
			rsp.Other = []*dicom.Element{{Tag: dicom.TagOffendingElement, VR: dicom.VRAT, Value: binary.LittleEndian.AppendUint16(v, tag.Element())}}
		}
		_ = w.Respond(rsp)
	}

	id, err := req.ReadDataSet(maxIdentifierSize)
	var dsErr *dicom.DataSetError
	switch {
	case errors.Is(err, ErrAssociationClosed):
		return
	case errors.Is(err, io.ErrShortBuffer):
		fail(dicom.StatusCannotUnderstand, 0, fmt.Sprintf("identifier larger than %d bytes", maxIdentifierSize))
		return
	case errors.As(err, &dsErr):
		fail(dicom.StatusCannotUnderstand, dsErr.Tag, fmt.Sprintf("identifier does not decode at byte %d", dsErr.Offset))
		return
	case err != nil:
		fail(dicom.StatusCannotUnderstand, 0, "identifier could not be read")
		return
	case id == nil:
		fail(dicom.StatusIdentifierDoesNotMatchClass, 0, "C-FIND-RQ has no identifier")
		return
	}
	q, err := compileWorklistQuery(id)
	var ke *keyError
	switch {
	case errors.Is(err, dicom.ErrUnsupportedCharacterSet):
		fail(dicom.StatusCannotUnderstand, dicom.TagSpecificCharacterSet, "Specific Character Set not supported")
		return
	case errors.As(err, &ke):
		fail(dicom.StatusIdentifierDoesNotMatchClass, ke.Tag, ke.Msg)
		return
	case err != nil:
		fail(dicom.StatusIdentifierDoesNotMatchClass, 0, err.Error())
		return
	}

	start := time.Now()
	items, err := h.src.WorklistItems(ctx, q.filter)
	if err != nil {
		if ctx.Err() != nil {
			h.stopped(ctx, w)
			return
		}
		log.Error("reading the worklist", "err", err)
		fail(dicom.StatusCannotUnderstand, 0, "worklist unavailable")
		return
	}
	status := dicom.StatusPending
	if q.unsupported {
		// "Matches are continuing - Warning that one or more Optional Keys were not supported
		// for existence and/or matching for this Identifier" (PS3.4 K.4.1.1.4):
		// the peer filters on those keys itself.
		status = dicom.StatusPendingWarning
	}
	matches := 0
	for i, it := range items {
		matched := q.match(it)
		// A C-CANCEL-RQ stops the query before the next match, and long scans now and then.
		if (matched || i%1024 == 0) && ctx.Err() != nil {
			h.stopped(ctx, w)
			log.Info("worklist query cancelled", "candidates", len(items), "matches", matches)
			return
		}
		if !matched {
			continue
		}
		matches++
		if err := w.Respond(Response{Status: status, DataSet: q.response(it)}); err != nil {
			return
		}
	}
	log.Debug("worklist query", "candidates", len(items), "matches", matches,
		"unsupported_keys", q.unsupported, "duration", time.Since(start))
	_ = w.Respond(Response{Status: dicom.StatusSuccess})
}

// stopped answers Cancel when the peer cancelled; when the association ended, nothing.
func (h *worklistHandler) stopped(ctx context.Context, w ResponseWriter) {
	if errors.Is(context.Cause(ctx), ErrCancelRequested) {
		_ = w.Respond(Response{Status: dicom.StatusCancel})
	}
}

// errorComment fits a comment into Error Comment (0000,0902), LO: 64 characters at most.
func errorComment(s string) string {
	if len(s) > 64 {
		return s[:64]
	}
	return s
}

// The Modality Worklist information model (PS3.4 table K.6-1) as Ferry holds it: the attributes
// engine.WorklistItem carries, each with how to read it. A worklist entity has exactly one
// Scheduled Procedure Step, so every sequence holds at most one item and every attribute,
// nested or not, is read from the same WorklistItem.
type worklistAttr struct {
	tag dicom.Tag
	vr  dicom.VR
	// text reads a non-sequence attribute.
	text func(*engine.WorklistItem) string
	// For a sequence: present reports whether its one item exists (nil: always), members are the
	// attributes of the item.
	present func(*engine.WorklistItem) bool
	members []*worklistAttr
}

func (a *worklistAttr) find(tag dicom.Tag) *worklistAttr {
	for _, m := range a.members {
		if m.tag == tag {
			return m
		}
	}
	return nil
}

// Tags of the worklist model that this package names.
const (
	tagIssuerOfAccessionNumberSequence dicom.Tag = 0x00080051
	tagReferringPhysicianName          dicom.Tag = 0x00080090
	tagCodeValue                       dicom.Tag = 0x00080100
	tagCodingSchemeDesignator          dicom.Tag = 0x00080102
	tagCodeMeaning                     dicom.Tag = 0x00080104
	tagIssuerOfPatientID               dicom.Tag = 0x00100021
	tagPatientBirthDate                dicom.Tag = 0x00100030
	tagPatientSex                      dicom.Tag = 0x00100040
	tagRequestingPhysician             dicom.Tag = 0x00321032
	tagRequestedProcedureDescription   dicom.Tag = 0x00321060
	tagRequestedProcedureCodeSequence  dicom.Tag = 0x00321064
	tagAdmissionID                     dicom.Tag = 0x00380010
	tagScheduledStationAETitle         dicom.Tag = 0x00400001
	tagSPSStartDate                    dicom.Tag = 0x00400002
	tagSPSStartTime                    dicom.Tag = 0x00400003
	tagScheduledPerformingPhysician    dicom.Tag = 0x00400006
	tagSPSDescription                  dicom.Tag = 0x00400007
	tagScheduledProtocolCodeSequence   dicom.Tag = 0x00400008
	tagSPSID                           dicom.Tag = 0x00400009
	tagScheduledStationName            dicom.Tag = 0x00400010
	tagSPSStatus                       dicom.Tag = 0x00400020
	tagLocalNamespaceEntityID          dicom.Tag = 0x00400031
	tagRequestedProcedureID            dicom.Tag = 0x00401001
	tagReasonForRequestedProcedure     dicom.Tag = 0x00401002
	tagRequestedProcedurePriority      dicom.Tag = 0x00401003
	tagPlacerOrderNumber               dicom.Tag = 0x00402016
	tagFillerOrderNumber               dicom.Tag = 0x00402017
)

func textAttr(tag dicom.Tag, vr dicom.VR, get func(*engine.WorklistItem) string) *worklistAttr {
	return &worklistAttr{tag: tag, vr: vr, text: get}
}

// codeSequence is a code sequence attribute (PS3.3 8.8) holding one Code, present when the
// code has a value.
func codeSequence(tag dicom.Tag, code func(*engine.WorklistItem) *engine.Code) *worklistAttr {
	return &worklistAttr{tag: tag, vr: dicom.VRSQ,
		present: func(it *engine.WorklistItem) bool { c := code(it); return c.Value != "" || c.Meaning != "" },
		members: []*worklistAttr{
			textAttr(tagCodeValue, dicom.VRSH, func(it *engine.WorklistItem) string { return code(it).Value }),
			textAttr(tagCodingSchemeDesignator, dicom.VRSH, func(it *engine.WorklistItem) string { return code(it).Scheme }),
			textAttr(tagCodeMeaning, dicom.VRLO, func(it *engine.WorklistItem) string { return code(it).Meaning }),
		}}
}

// worklistModel is the root of the model: a sequence-like node whose members are the top-level
// attributes.
var worklistModel = &worklistAttr{members: []*worklistAttr{
	textAttr(dicom.TagAccessionNumber, dicom.VRSH, func(it *engine.WorklistItem) string { return it.AccessionNumber }),
	{tag: tagIssuerOfAccessionNumberSequence, vr: dicom.VRSQ,
		present: func(it *engine.WorklistItem) bool { return it.AccessionIssuer != "" },
		members: []*worklistAttr{
			textAttr(tagLocalNamespaceEntityID, dicom.VRUT, func(it *engine.WorklistItem) string { return it.AccessionIssuer }),
		}},
	textAttr(tagReferringPhysicianName, dicom.VRPN, func(it *engine.WorklistItem) string { return it.ReferringPhysicianName }),
	textAttr(dicom.TagPatientName, dicom.VRPN, func(it *engine.WorklistItem) string { return it.PatientName }),
	textAttr(dicom.TagPatientID, dicom.VRLO, func(it *engine.WorklistItem) string { return it.PatientID }),
	textAttr(tagIssuerOfPatientID, dicom.VRLO, func(it *engine.WorklistItem) string { return it.IssuerOfPatientID }),
	textAttr(tagPatientBirthDate, dicom.VRDA, func(it *engine.WorklistItem) string { return it.PatientBirthDate }),
	textAttr(tagPatientSex, dicom.VRCS, func(it *engine.WorklistItem) string { return it.PatientSex }),
	textAttr(dicom.TagStudyInstanceUID, dicom.VRUI, func(it *engine.WorklistItem) string { return it.StudyInstanceUID }),
	textAttr(tagRequestingPhysician, dicom.VRPN, func(it *engine.WorklistItem) string { return it.RequestingPhysician }),
	textAttr(tagRequestedProcedureDescription, dicom.VRLO, func(it *engine.WorklistItem) string { return it.RequestedProcedureDescription }),
	codeSequence(tagRequestedProcedureCodeSequence, func(it *engine.WorklistItem) *engine.Code { return &it.RequestedProcedureCode }),
	textAttr(tagAdmissionID, dicom.VRLO, func(it *engine.WorklistItem) string { return it.AdmissionID }),
	{tag: dicom.TagScheduledProcedureStepSequence, vr: dicom.VRSQ, members: []*worklistAttr{
		textAttr(dicom.TagModality, dicom.VRCS, func(it *engine.WorklistItem) string { return it.Modality }),
		textAttr(tagScheduledStationAETitle, dicom.VRAE, func(it *engine.WorklistItem) string { return it.StationAETitle }),
		textAttr(tagSPSStartDate, dicom.VRDA, func(it *engine.WorklistItem) string { return it.StartDate }),
		textAttr(tagSPSStartTime, dicom.VRTM, func(it *engine.WorklistItem) string { return it.StartTime }),
		textAttr(tagScheduledPerformingPhysician, dicom.VRPN, func(it *engine.WorklistItem) string { return it.PerformingPhysician }),
		textAttr(tagSPSDescription, dicom.VRLO, func(it *engine.WorklistItem) string { return it.StepDescription }),
		codeSequence(tagScheduledProtocolCodeSequence, func(it *engine.WorklistItem) *engine.Code { return &it.StepCode }),
		textAttr(tagSPSID, dicom.VRSH, func(it *engine.WorklistItem) string { return it.StepID }),
		textAttr(tagScheduledStationName, dicom.VRSH, func(it *engine.WorklistItem) string { return it.StationName }),
		textAttr(tagSPSStatus, dicom.VRCS, func(it *engine.WorklistItem) string { return it.StepStatus }),
	}},
	textAttr(tagRequestedProcedureID, dicom.VRSH, func(it *engine.WorklistItem) string { return it.RequestedProcedureID }),
	textAttr(tagReasonForRequestedProcedure, dicom.VRLO, func(it *engine.WorklistItem) string { return it.ReasonForRequestedProcedure }),
	textAttr(tagRequestedProcedurePriority, dicom.VRSH, func(it *engine.WorklistItem) string { return it.RequestedProcedurePriority }),
	textAttr(tagPlacerOrderNumber, dicom.VRLO, func(it *engine.WorklistItem) string { return it.PlacerOrderNumber }),
	textAttr(tagFillerOrderNumber, dicom.VRLO, func(it *engine.WorklistItem) string { return it.FillerOrderNumber }),
}}

// worklistQuery is a compiled C-FIND identifier.
type worklistQuery struct {
	cs     *dicom.CharacterSet // the identifier's
	conds  []func(*engine.WorklistItem) bool
	shape  []returnKey // the response identifier's top level
	filter engine.WorklistFilter
	// unsupported is set when a key holds a value Ferry cannot match on (an attribute outside
	// its model): that key is not applied, and matches go back as FF01.
	unsupported bool
}

// returnKey is one attribute of the response identifier: what the query asked for, in its
// shape (PS3.4 C.2.2.1.2: return keys are the query's attributes).
type returnKey struct {
	tag  dicom.Tag
	vr   dicom.VR
	attr *worklistAttr // nil: not in Ferry's model, returned empty
	// For a sequence in the model: the keys of its item, or all of its attributes when the
	// query's sequence had no item or an empty one.
	items []returnKey
	all   bool
}

// compileWorklistQuery turns an identifier into conditions, a response shape and a store filter.
// Errors are *keyError (a key no rule accepts) or wrap ErrUnsupportedCharacterSet.
func compileWorklistQuery(id *dicom.DataSet) (*worklistQuery, error) {
	q := &worklistQuery{cs: dicom.DefaultCharacterSet}
	if e := id.Get(dicom.TagSpecificCharacterSet); e != nil {
		q.cs = dicom.ParseCharacterSet(e.Strings())
	}
	if e := id.Get(dicom.TagQueryRetrieveLevel); e != nil && len(e.Value) > 0 && singleString(e) != "" {
		// A Query/Retrieve identifier sent to the worklist: the wrong information model.
		return nil, &keyError{dicom.TagQueryRetrieveLevel, "Query/Retrieve Level is not a worklist key"}
	}
	var err error
	q.shape, q.conds, err = q.compileLevel(id, worklistModel)
	return q, err
}

// compileLevel compiles the keys of one level: the identifier's top level, or the item of a
// sequence key, against the model node whose members belong there.
func (q *worklistQuery) compileLevel(ds *dicom.DataSet, node *worklistAttr) ([]returnKey, []func(*engine.WorklistItem) bool, error) {
	var (
		shape []returnKey
		conds []func(*engine.WorklistItem) bool
	)
	combined := false
	if node.tag == dicom.TagScheduledProcedureStepSequence {
		cond, err := q.combinedStart(ds)
		if err != nil {
			return nil, nil, err
		}
		if cond != nil {
			conds, combined = append(conds, cond), true
		}
	}
	for _, e := range ds.Elements {
		if e.Tag == dicom.TagSpecificCharacterSet || e.Tag.Element() == 0x0000 || e.Tag.Group()%2 == 1 {
			continue // not keys: the character set, group lengths, private attributes
		}
		attr := node.find(e.Tag)
		if attr == nil {
			q.noteUnsupported(e)
			vr := e.VR
			if vr == "" || vr == dicom.VRUN {
				if dvr, _, ok := dicom.LookupTag(e.Tag); ok {
					vr = dvr
				}
			}
			shape = append(shape, returnKey{tag: e.Tag, vr: vr})
			continue
		}
		rk := returnKey{tag: attr.tag, vr: attr.vr, attr: attr}
		if attr.vr == dicom.VRSQ {
			if e.VR != dicom.VRSQ && len(e.Value) > 0 {
				return nil, nil, &keyError{e.Tag, "sequence key is not encoded as a sequence"}
			}
			switch {
			case len(e.Items) > 1:
				// Sequence matching takes one item (PS3.4 C.2.2.2.6).
				return nil, nil, &keyError{e.Tag, "sequence key has more than one item"}
			case len(e.Items) == 0 || len(keyElements(e.Items[0])) == 0:
				rk.all = true // universal: return the whole sequence
			default:
				items, sub, err := q.compileLevel(e.Items[0], attr)
				if err != nil {
					return nil, nil, err
				}
				rk.items = items
				if len(sub) > 0 {
					present := attr.present
					conds = append(conds, func(it *engine.WorklistItem) bool {
						if present != nil && !present(it) {
							return false
						}
						for _, c := range sub {
							if !c(it) {
								return false
							}
						}
						return true
					})
				}
			}
			shape = append(shape, rk)
			continue
		}
		if e.VR == dicom.VRSQ || e.Items != nil {
			return nil, nil, &keyError{e.Tag, "key is a sequence where the attribute is not"}
		}
		shape = append(shape, rk)
		if combined && (e.Tag == tagSPSStartDate || e.Tag == tagSPSStartTime) {
			if e.Tag == tagSPSStartDate {
				q.filterDate(e)
			}
			continue
		}
		values, err := q.values(e, attr.vr)
		if err != nil {
			return nil, nil, err
		}
		m, err := compileKey(e.Tag, attr.vr, values)
		if err != nil {
			return nil, nil, err
		}
		if m == nil {
			continue
		}
		get := attr.text
		conds = append(conds, func(it *engine.WorklistItem) bool { return m(get(it)) })
		q.setFilter(attr, values)
	}
	// Elements go back in ascending tag order (PS3.5 7.1), whatever order the query used.
	slices.SortStableFunc(shape, func(a, b returnKey) int { return cmp.Compare(a.tag, b.tag) })
	return shape, conds, nil
}

// keyElements returns the elements of a sequence key's item that are keys.
func keyElements(ds *dicom.DataSet) []*dicom.Element {
	return slices.DeleteFunc(slices.Clone(ds.Elements), func(e *dicom.Element) bool {
		return e.Tag == dicom.TagSpecificCharacterSet || e.Tag.Element() == 0x0000 || e.Tag.Group()%2 == 1
	})
}

// values decodes a key's values from the identifier's character set and splits them.
func (q *worklistQuery) values(e *dicom.Element, vr dicom.VR) ([]string, error) {
	if len(e.Value) == 0 {
		return nil, nil
	}
	text, err := q.cs.Decode(e.Value)
	if err != nil {
		if errors.Is(err, dicom.ErrUnsupportedCharacterSet) {
			return nil, err
		}
		return nil, &keyError{e.Tag, err.Error()}
	}
	return (&dicom.Element{VR: vr, Value: []byte(text)}).Strings(), nil
}

// noteUnsupported records a key outside the model that asks for matching (a value, or a
// sequence item with values): Ferry cannot match on it.
func (q *worklistQuery) noteUnsupported(e *dicom.Element) {
	if len(e.Value) > 0 && len(bytesTrimPad(e.Value)) > 0 && !(wildcardVR(e.VR) && string(bytesTrimPad(e.Value)) == "*") {
		q.unsupported = true
	}
	for _, it := range e.Items {
		for _, sub := range keyElements(it) {
			q.noteUnsupported(sub)
		}
	}
}

func bytesTrimPad(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == 0) {
		b = b[:len(b)-1]
	}
	for len(b) > 0 && b[0] == ' ' {
		b = b[1:]
	}
	return b
}

// combinedStart compiles SPS Start Date and SPS Start Time together when the time key is a
// range and the date key has a single value or range: the pair then names one span of date-time
// (PS3.4 C.2.2.2.5, combined date-time range matching). It returns nil when they are matched
// apart.
func (q *worklistQuery) combinedStart(sps *dicom.DataSet) (func(*engine.WorklistItem) bool, error) {
	de, te := sps.Get(tagSPSStartDate), sps.Get(tagSPSStartTime)
	if de == nil || te == nil || de.Items != nil || te.Items != nil {
		return nil, nil
	}
	dates, err := q.values(de, dicom.VRDA)
	if err != nil {
		return nil, err
	}
	times, err := q.values(te, dicom.VRTM)
	if err != nil {
		return nil, err
	}
	if len(dates) != 1 || len(times) != 1 || dates[0] == "" || times[0] == "" || !containsDash(times[0]) {
		return nil, nil
	}
	r, err := compileDateTimeRange(tagSPSStartDate, tagSPSStartTime, dates[0], times[0])
	if err != nil {
		return nil, err
	}
	return func(it *engine.WorklistItem) bool { return r.match(it.StartDate, it.StartTime) }, nil
}

func containsDash(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '-' {
			return true
		}
	}
	return false
}

// setFilter narrows the store query with a key that pins one exact value (DESIGN: the store
// filters coarsely, the SCP matches exactly).
func (q *worklistQuery) setFilter(attr *worklistAttr, values []string) {
	if len(values) != 1 {
		return
	}
	v := values[0]
	if wildcardVR(attr.vr) && (containsAny(v, "*?")) {
		return
	}
	switch attr.tag {
	case dicom.TagAccessionNumber:
		q.filter.AccessionNumber = v
	case dicom.TagPatientID:
		q.filter.PatientID = v
	case dicom.TagModality:
		q.filter.Modality = v
	case tagScheduledStationAETitle:
		q.filter.StationAETitle = v
	case tagSPSStartDate:
		q.filter.StartDateFrom, q.filter.StartDateTo, _ = parseRange(v, normDate, normDate)
	}
}

// filterDate narrows the store query by the date key of a combined date-time range.
func (q *worklistQuery) filterDate(e *dicom.Element) {
	if values, err := q.values(e, dicom.VRDA); err == nil && len(values) == 1 {
		if lo, hi, err := parseRange(values[0], normDate, normDate); err == nil {
			q.filter.StartDateFrom, q.filter.StartDateTo = lo, hi
		}
	}
}

func containsAny(s, chars string) bool {
	for i := 0; i < len(s); i++ {
		for j := 0; j < len(chars); j++ {
			if s[i] == chars[j] {
				return true
			}
		}
	}
	return false
}

// match reports whether the item matches every key.
func (q *worklistQuery) match(it *engine.WorklistItem) bool {
	for _, c := range q.conds {
		if !c(it) {
			return false
		}
	}
	return true
}

// response builds the response identifier for a match: the query's attributes filled from the
// item (empty when Ferry holds no value), and Specific Character Set when any text is outside
// ASCII (PS3.4 C.4.1.1.3.2: only then). Such text goes back in the query's character set when
// that is not the default repertoire and holds every character, else in ISO_IR 192 (UTF-8).
func (q *worklistQuery) response(it *engine.WorklistItem) *dicom.DataSet {
	ds := &dicom.DataSet{Elements: buildLevel(nil, q.shape, it)}
	if !hasNonASCII(ds) {
		return ds
	}
	cs := dicom.UTF8CharacterSet
	if q.cs.Converts() && transcode(ds, q.cs, true) {
		cs = q.cs
		transcode(ds, q.cs, false)
	}
	ds.Set(dicom.NewString(dicom.TagSpecificCharacterSet, dicom.VRCS, cs.Term()))
	return ds
}

func buildLevel(dst []*dicom.Element, shape []returnKey, it *engine.WorklistItem) []*dicom.Element {
	for _, rk := range shape {
		switch {
		case rk.attr == nil && rk.vr == dicom.VRSQ:
			dst = append(dst, dicom.NewSequence(rk.tag))
		case rk.attr == nil:
			dst = append(dst, &dicom.Element{Tag: rk.tag, VR: rk.vr})
		case rk.attr.vr == dicom.VRSQ:
			dst = append(dst, buildSequence(rk, it))
		default:
			dst = append(dst, &dicom.Element{Tag: rk.tag, VR: rk.vr, Value: []byte(rk.attr.text(it))})
		}
	}
	return dst
}

func buildSequence(rk returnKey, it *engine.WorklistItem) *dicom.Element {
	if rk.attr.present != nil && !rk.attr.present(it) {
		return dicom.NewSequence(rk.tag)
	}
	if rk.all {
		return dicom.NewSequence(rk.tag, &dicom.DataSet{Elements: buildLevel(nil, allKeys(rk.attr), it)})
	}
	return dicom.NewSequence(rk.tag, &dicom.DataSet{Elements: buildLevel(nil, rk.items, it)})
}

// allKeys is the shape that returns every attribute of a model node, in tag order.
func allKeys(node *worklistAttr) []returnKey {
	keys := make([]returnKey, 0, len(node.members))
	for _, m := range node.members {
		keys = append(keys, returnKey{tag: m.tag, vr: m.vr, attr: m, all: m.vr == dicom.VRSQ})
	}
	slices.SortFunc(keys, func(a, b returnKey) int { return cmp.Compare(a.tag, b.tag) })
	return keys
}

// hasNonASCII reports whether a text value under Specific Character Set holds a non-ASCII byte.
func hasNonASCII(ds *dicom.DataSet) bool {
	for _, e := range ds.Elements {
		if e.VR.AffectedBySCS() && !dicom.IsASCII(e.Value) {
			return true
		}
		for _, it := range e.Items {
			if hasNonASCII(it) {
				return true
			}
		}
	}
	return false
}

// transcode converts the text values under Specific Character Set from UTF-8 to cs, or with
// dryRun only checks that every one can be; it reports whether all could.
func transcode(ds *dicom.DataSet, cs *dicom.CharacterSet, dryRun bool) bool {
	for _, e := range ds.Elements {
		if e.VR.AffectedBySCS() && !dicom.IsASCII(e.Value) {
			b, ok := cs.Encode(string(e.Value))
			if !ok {
				return false
			}
			if !dryRun {
				e.Value = b
			}
		}
		for _, it := range e.Items {
			if !transcode(it, cs, dryRun) {
				return false
			}
		}
	}
	return true
}
