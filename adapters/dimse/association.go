package dimse

// The acceptor's side of one association: the upper layer state machine (PS3.8 9.2) from the
// A-ASSOCIATE-RQ to release or abort, and the dispatch of DIMSE requests to handlers.

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferryhealth/ferry/dicom"
)

// association is one connection, from accept to close: the acceptor's side of the upper layer
// state machine (PS3.8 9.2) and the dispatch of DIMSE requests.
type association struct {
	s      *Server
	rwc    net.Conn // the TCP connection
	conn   net.Conn // rwc or its TLS layer
	log    *slog.Logger
	info   *Association
	pr     pduReader
	w      messageWriter
	ctxs   map[byte]*acceptedContext
	ip     string          // the source address's key in Server.perAddr, counted against MaxConnsPerAddr
	rights callerRights    // what the caller may do
	ctx    context.Context // cancelled when the association ends
	cancel context.CancelCauseFunc

	mu         sync.Mutex
	associated bool       // A-ASSOCIATE-AC sent, not yet released
	inPDU      bool       // a PDU's body is being read
	receiving  *operation // an operation whose command or data set is still arriving
	op         *operation // the operation in progress (handler running or response pending)
	closing    bool       // being closed; the reader must stop
	abortKind  string     // why the association ended, for the log and Observer
	ops        int64      // completed operations
}

// acceptedContext is a presentation context accepted on the association.
type acceptedContext struct {
	id             byte
	abstractSyntax string
	transferSyntax string
	service        *Service
}

// operation is one request in progress.
type operation struct {
	req      *Request
	ctx      context.Context
	cancel   context.CancelCauseFunc
	cmdBuf   []byte         // the command set while it arrives
	pw       *io.PipeWriter // feeds Request.Data; nil without a data set
	pr       *io.PipeReader
	dataDone chan struct{} // closed when the data set's last fragment was received (or never will be)
	done     chan struct{} // closed when the final response was sent and the handler returned
	abandon  bool          // the handler no longer reads the data set: drop its fragments
	final    atomic.Bool   // the final response was sent
	status   dicom.Status
}

// newAssociation serves conn: rwc itself, or its TLS layer after the handshake (st).
func (s *Server) newAssociation(rwc, conn net.Conn, st *tls.ConnectionState) *association {
	a := &association{s: s, rwc: rwc, conn: conn}
	a.ctx, a.cancel = context.WithCancelCause(s.life.Context())
	a.log = s.logger().With("remote", rwc.RemoteAddr().String())
	if st != nil {
		a.log = a.log.With("tls", true, "cert_subject", certSubject(st))
	}
	a.info = &Association{RemoteAddr: rwc.RemoteAddr().String(), CalledAETitle: s.aeTitle(), TLS: st}
	a.pr = pduReader{r: conn, maxPData: s.maxPDULength(), reuse: true}
	a.w = messageWriter{conn: conn, timeout: s.writeTimeout()}
	return a
}

// serve runs the association to its end.
func (a *association) serve() {
	s := a.s
	if s.Metrics != nil {
		s.Metrics.ConnOpened()
	}
	defer func() {
		if p := recover(); p != nil { // a bug in this package: keep the server up
			a.log.Error("DICOM association goroutine panicked", "panic", panicText(p), "stack", string(debug.Stack()))
			a.setAbortKind(AbortProtocol)
		}
		a.rwc.Close()
		a.cancel(ErrAssociationClosed)
		a.mu.Lock()
		op, rcv, kind, ops := a.op, a.receiving, a.abortKind, a.ops
		a.mu.Unlock()
		if rcv != nil && rcv.pw != nil {
			rcv.pw.CloseWithError(ErrAssociationClosed)
		}
		if op != nil {
			<-op.done // handlers see ctx cancelled; wait so that none outlives its association
		}
		s.life.Untrack(a)
		s.active.Add(-1)
		s.perAddr.Give(a.ip)
		if s.Metrics != nil {
			if kind != "" {
				s.Metrics.Aborted(kind)
			}
			s.Metrics.ConnClosed()
		}
		a.log.Debug("DICOM connection closed", "operations", ops, "abort", kind)
	}()

	_ = a.rwc.SetDeadline(time.Now().Add(s.artimTimeout()))
	if !a.negotiate() {
		return
	}
	a.dataTransfer()
}

// negotiate reads the A-ASSOCIATE-RQ within ARTIM and answers it. It reports whether the
// association was accepted.
func (a *association) negotiate() bool {
	s := a.s
	p, err := a.pr.next(func(PDUType) error { return a.startPDU() })
	midPDU := a.endPDU()
	if err != nil {
		a.readFailed(err, midPDU)
		return false
	}
	rq, ok := p.(*AssociateRQ)
	if !ok {
		if _, isAbort := p.(*Abort); isAbort {
			return false
		}
		a.abort(AbortProtocol, AbortReasonUnexpectedPDU, fmt.Sprintf("%s before A-ASSOCIATE-RQ", p.PDUType()))
		return false
	}
	log := a.log.With("calling_ae", rq.CallingAETitle, "called_ae", rq.CalledAETitle)

	reject := func(result string, rj AssociateRJ) bool {
		if s.Metrics != nil {
			s.Metrics.Association(result)
		}
		log.Warn("DICOM association rejected", "reason", rj.Description(),
			"implementation_class_uid", rq.UserInfo.ImplementationClassUID)
		_ = a.w.writePDU(&rj)
		drainUntilClosed(a.conn, time.Now().Add(s.artimTimeout()))
		return false
	}
	switch {
	case rq.ProtocolVersion&0x0001 == 0:
		return reject(AssocRejectedProtocolVersion, AssociateRJ{RejectPermanent, SourceServiceProviderACSE, ReasonProtocolVersionUnsupported})
	case rq.ApplicationContext != ApplicationContextName:
		return reject(AssocRejectedAppContext, AssociateRJ{RejectPermanent, SourceServiceUser, ReasonApplicationContextUnsupported})
	case rq.CalledAETitle != s.aeTitle():
		return reject(AssocRejectedCalledAETitle, AssociateRJ{RejectPermanent, SourceServiceUser, ReasonCalledAETitleNotRecognized})
	}
	a.rights = s.rightsOf(rq.CallingAETitle, a.info.RemoteAddr, a.info.TLS)
	if a.rights.refuse {
		log = log.With("refused_because", a.rights.reason)
		return reject(AssocRejectedCallingAETitle, AssociateRJ{RejectPermanent, SourceServiceUser, ReasonCallingAETitleNotRecognized})
	}
	if m := rq.UserInfo.MaxPDULength; m != 0 && m < 7 {
		a.abort(AbortProtocol, AbortReasonInvalidPDUParamValue, fmt.Sprintf("peer's maximum PDU length %d leaves no room for data", m))
		return false
	}

	ac := &AssociateAC{
		ProtocolVersion:    1,
		CalledAETitle:      rq.CalledAETitle,
		CallingAETitle:     rq.CallingAETitle,
		ApplicationContext: ApplicationContextName,
		UserInfo: UserInfo{
			MaxPDULength:              s.maxPDULength(),
			ImplementationClassUID:    dicom.ImplementationClassUID,
			ImplementationVersionName: dicom.ImplementationVersionName,
		},
	}
	if rq.UserInfo.AsyncOps != nil {
		// One operation at a time each way: the answer of an acceptor that does not support
		// asynchronous operations (PS3.7 D.3.3.3).
		ac.UserInfo.AsyncOps = &AsyncOpsWindow{Invoked: 1, Performed: 1}
	}
	a.ctxs = make(map[byte]*acceptedContext)
	var accepted []string
	var refused []Operation
	for _, pc := range rq.PresentationContexts {
		res := a.negotiateContext(pc)
		ac.PresentationContexts = append(ac.PresentationContexts, res)
		if res.Result == PresentationAccepted {
			accepted = append(accepted, pc.AbstractSyntax)
		}
		if res.Result == PresentationUserRejection {
			refused = append(refused, a.s.services[pc.AbstractSyntax].operation())
		}
	}
	a.info.CallingAETitle = rq.CallingAETitle
	a.info.CalledAETitle = rq.CalledAETitle
	a.info.ImplementationClassUID = rq.UserInfo.ImplementationClassUID
	a.info.ImplementationVersionName = rq.UserInfo.ImplementationVersionName
	a.info.PeerMaxPDULength = rq.UserInfo.MaxPDULength
	a.w.peerMax = rq.UserInfo.MaxPDULength
	a.log = log

	a.mu.Lock()
	a.associated = true
	a.mu.Unlock()
	if err := a.w.writePDU(ac); err != nil {
		a.writeFailed(err)
		return false
	}
	result := AssocAccepted
	if len(accepted) == 0 {
		result = AssocAcceptedNoContexts
	}
	if s.Metrics != nil {
		s.Metrics.Association(result)
	}
	if len(refused) > 0 {
		// Refused operations are the attack this logs: an unknown caller asking for the
		// worklist, a peer storing what it may only query.
		log.Warn("DICOM operations refused to this caller", "operations", strings.Join(slices.Compact(slices.Sorted(slices.Values(refusedNames(refused)))), ","),
			"known_caller", a.rights.known)
	}
	log.Info("DICOM association accepted", "known_caller", a.rights.known, "contexts_proposed", len(rq.PresentationContexts),
		"contexts_accepted", len(accepted), "sop_classes", strings.Join(slices.Compact(slices.Sorted(slices.Values(accepted))), ","),
		"peer_max_pdu", rq.UserInfo.MaxPDULength, "implementation_class_uid", rq.UserInfo.ImplementationClassUID,
		"implementation_version", rq.UserInfo.ImplementationVersionName, "tls", a.info.TLS != nil)
	return true
}

// negotiateContext decides one proposed presentation context (PS3.8 9.3.3.2): accepted with
// the service's preferred transfer syntax among those proposed, or refused with the reason.
func (a *association) negotiateContext(pc PresentationContextRQ) PresentationContextAC {
	res := PresentationContextAC{ID: pc.ID, TransferSyntax: pc.TransferSyntaxes[0]}
	svc, ok := a.s.services[pc.AbstractSyntax]
	switch {
	case pc.ID%2 == 0 || a.ctxs[pc.ID] != nil:
		res.Result = PresentationNoReason // IDs are odd and unique (PS3.8 9.3.2.2)
	case !ok:
		res.Result = PresentationAbstractSyntaxUnsupported
	case !a.rights.allows(svc.operation()):
		res.Result = PresentationUserRejection // the caller may not do this (PS3.8 table 9-18)
	default:
		res.Result = PresentationTransferSyntaxUnsupported
		for _, ts := range svc.TransferSyntaxes {
			if slices.Contains(pc.TransferSyntaxes, ts) {
				res.Result, res.TransferSyntax = PresentationAccepted, ts
				a.ctxs[pc.ID] = &acceptedContext{id: pc.ID, abstractSyntax: pc.AbstractSyntax, transferSyntax: ts, service: svc}
				break
			}
		}
	}
	return res
}

// dataTransfer is state Sta6 (PS3.8 9.2): it reads PDUs until release, abort or failure.
func (a *association) dataTransfer() {
	for {
		a.setReadDeadline()
		p, err := a.pr.next(func(PDUType) error { return a.startPDU() })
		midPDU := a.endPDU()
		if err != nil {
			a.readFailed(err, midPDU)
			return
		}
		switch p := p.(type) {
		case *PDataTF:
			for _, v := range p.Items {
				if perr := a.receivePDV(v); perr != nil {
					a.abort(AbortProtocol, perr.Reason, perr.Msg)
					return
				}
			}
		case *ReleaseRQ:
			a.release()
			return
		case *Abort:
			a.setAbortKind(AbortPeer)
			a.log.Info("DICOM association aborted by the peer", "source", p.Source, "reason", p.Reason.String())
			return
		default:
			a.abort(AbortProtocol, AbortReasonUnexpectedPDU, fmt.Sprintf("%s during data transfer", p.PDUType()))
			return
		}
	}
}

// release answers A-RELEASE-RQ (PS3.8 9.2, AR-2 and AR-4): after the operation in progress, if
// any, has sent its final response.
func (a *association) release() {
	a.mu.Lock()
	rcv, op := a.receiving, a.op
	a.mu.Unlock()
	if rcv != nil {
		a.abort(AbortProtocol, AbortReasonUnexpectedPDU, "A-RELEASE-RQ inside a message")
		return
	}
	if op != nil {
		select {
		case <-op.done:
		case <-a.ctx.Done():
			return
		}
	}
	if err := a.w.writePDU(&ReleaseRP{}); err != nil {
		a.writeFailed(err)
		return
	}
	a.mu.Lock()
	a.associated = false // released: Shutdown closes it without an A-ABORT
	a.mu.Unlock()
	a.log.Debug("DICOM association released")
	drainUntilClosed(a.conn, time.Now().Add(a.s.artimTimeout()))
}

// receivePDV takes one fragment: a piece of a command set, which may complete a request and
// start its handler, or a piece of a data set, which goes to the handler's Request.Data.
func (a *association) receivePDV(v PDV) *ProtocolError {
	pc := a.ctxs[v.ContextID]
	if pc == nil {
		return &ProtocolError{AbortReasonInvalidPDUParamValue, fmt.Sprintf("PDV on presentation context %d, which was not accepted", v.ContextID)}
	}
	a.mu.Lock()
	op := a.receiving
	a.mu.Unlock()
	if op == nil {
		if !v.Command {
			return &ProtocolError{AbortReasonUnexpectedPDUParam, "data set fragment with no command before it"}
		}
		op = &operation{req: &Request{ContextID: v.ContextID, SOPClass: pc.abstractSyntax, TransferSyntax: pc.transferSyntax, Association: a.info}}
		a.mu.Lock()
		a.receiving = op
		a.mu.Unlock()
	}
	if v.ContextID != op.req.ContextID {
		return &ProtocolError{AbortReasonUnexpectedPDUParam, fmt.Sprintf("fragment on presentation context %d inside a message on %d", v.ContextID, op.req.ContextID)}
	}
	if op.req.Command == nil { // receiving the command set
		if !v.Command {
			return &ProtocolError{AbortReasonUnexpectedPDUParam, "data set fragment before the last command fragment"}
		}
		if len(op.cmdBuf)+len(v.Data) > maxCommandLength {
			return &ProtocolError{AbortReasonInvalidPDUParamValue, fmt.Sprintf("command set longer than %d bytes", maxCommandLength)}
		}
		op.cmdBuf = append(op.cmdBuf, v.Data...)
		if !v.Last {
			return nil
		}
		return a.commandReceived(op)
	}
	if v.Command {
		return &ProtocolError{AbortReasonUnexpectedPDUParam, "command fragment inside a data set"}
	}
	if !op.abandon {
		if _, err := op.pw.Write(v.Data); err != nil {
			op.abandon = true // the handler is done reading; drop the rest
		}
	}
	if v.Last {
		op.pw.Close()
		close(op.dataDone)
		a.mu.Lock()
		a.receiving = nil
		a.mu.Unlock()
	}
	return nil
}

// commandReceived decodes a complete command set and acts on it: a C-CANCEL-RQ cancels the
// operation in progress; a request starts its handler.
func (a *association) commandReceived(op *operation) *ProtocolError {
	cmd, err := DecodeCommand(op.cmdBuf)
	op.cmdBuf = nil
	if err != nil {
		return &ProtocolError{AbortReasonInvalidPDUParamValue, err.Error()}
	}
	if cmd.Field == CCancelRQ {
		if cmd.HasDataSet {
			return &ProtocolError{AbortReasonInvalidPDUParamValue, "C-CANCEL-RQ announces a data set"}
		}
		a.mu.Lock()
		a.receiving = nil
		cur := a.op
		a.mu.Unlock()
		if cur != nil && cur.req.Command.MessageID == cmd.MessageIDBeingRespondedTo {
			a.log.Debug("DICOM C-CANCEL-RQ received", "message_id", cmd.MessageIDBeingRespondedTo)
			cur.cancel(ErrCancelRequested)
		}
		return nil // a cancel for an operation already finished is not an error (PS3.7 9.3.2.3)
	}
	if cmd.Field.IsResponse() {
		return &ProtocolError{AbortReasonUnexpectedPDUParam, fmt.Sprintf("%s sent to an SCP", cmd.Field)}
	}
	op.req.Command = cmd
	op.req.ReceivedAt = time.Now()
	op.dataDone = make(chan struct{})
	op.done = make(chan struct{})
	if cmd.HasDataSet {
		op.pr, op.pw = io.Pipe()
		op.req.Data = op.pr
	} else {
		close(op.dataDone)
		a.mu.Lock()
		a.receiving = nil
		a.mu.Unlock()
	}

	// One operation at a time: a request that arrives before the previous final response (the
	// peer ignored the asynchronous operations window) waits for it.
	a.mu.Lock()
	prev := a.op
	a.mu.Unlock()
	if prev != nil {
		select {
		case <-prev.done:
		case <-a.ctx.Done():
			return nil
		}
	}
	op.ctx, op.cancel = context.WithCancelCause(a.ctx)
	a.mu.Lock()
	a.op = op
	a.mu.Unlock()
	go a.run(op, a.ctxs[op.req.ContextID].service)
	return nil
}

// run calls the handler and makes sure the operation ends with a final response.
func (a *association) run(op *operation, svc *Service) {
	cmd := op.req.Command
	log := a.log.With("command", cmd.Field.String(), "message_id", cmd.MessageID, "sop_class", op.req.SOPClass)
	rw := &responseWriter{a: a, op: op}
	panicked := false
	func() {
		defer func() {
			if p := recover(); p != nil {
				panicked = true
				log.Error("DICOM handler panicked; aborting the association", "panic", panicText(p), "stack", string(debug.Stack()))
			}
		}()
		if cmd.AffectedSOPClassUID != "" && cmd.AffectedSOPClassUID != op.req.SOPClass {
			// The command names another SOP class than its presentation context's (PS3.7 C.5.3).
			_ = rw.Respond(Response{Status: dicom.StatusSOPClassNotSupported})
			return
		}
		svc.Handler.ServeDIMSE(op.ctx, op.req, rw)
	}()
	if panicked {
		a.abort(AbortHandlerPanic, AbortReasonNotSpecified, "handler panicked")
	} else if !op.final.Load() {
		st := dicom.StatusProcessingFailure
		if errors.Is(context.Cause(op.ctx), ErrCancelRequested) {
			st = dicom.StatusCancel
		}
		if err := rw.Respond(Response{Status: st}); err == nil {
			log.Warn("DICOM handler returned without a final response; sent one", "status", st.String())
		}
	}
	if op.pr != nil {
		op.pr.CloseWithError(ErrResponded)
	}
	op.cancel(context.Canceled)
	d := time.Since(op.req.ReceivedAt)
	if op.final.Load() {
		if a.s.Metrics != nil {
			a.s.Metrics.Operation(cmd.Field, op.status, d)
		}
		lvl := slog.LevelDebug
		if c := op.status.Class(); c == "failure" || c == "warning" || cmd.Field == CFindRQ || cmd.Field == CStoreRQ {
			// Every C-FIND and C-STORE caller is logged (issue 17): who asked for the
			// worklist or sent a study, from where, with which certificate.
			lvl = slog.LevelInfo
		}
		log.Log(context.Background(), lvl, "DICOM operation complete", "status", op.status.String(), "duration", d)
	}
	a.mu.Lock()
	a.op = nil
	a.ops++
	if a.receiving == nil && !a.inPDU && !a.closing {
		_ = a.conn.SetReadDeadline(time.Now().Add(a.s.idleTimeout()))
	}
	a.mu.Unlock()
	close(op.done)
}

// responseWriter is the ResponseWriter of one operation.
type responseWriter struct {
	a  *association
	op *operation
}

func (rw *responseWriter) Respond(rsp Response) error {
	op, a := rw.op, rw.a
	if op.final.Load() {
		return ErrResponded
	}
	req := op.req.Command
	cmd := &Command{
		Field:                     req.Field.Response(),
		MessageIDBeingRespondedTo: req.MessageID,
		AffectedSOPClassUID:       req.AffectedSOPClassUID,
		AffectedSOPInstanceUID:    req.AffectedSOPInstanceUID,
		Status:                    rsp.Status,
		ErrorComment:              rsp.ErrorComment,
		Other:                     rsp.Other,
		HasDataSet:                rsp.DataSet != nil,
	}
	if cmd.AffectedSOPClassUID == "" {
		cmd.AffectedSOPClassUID = op.req.SOPClass
	}
	cmdBytes, err := cmd.Encode()
	if err != nil {
		return fmt.Errorf("encoding %s: %w", cmd.Field, err)
	}
	var data io.Reader
	if rsp.DataSet != nil {
		b, err := dicom.EncodeDataSet(rsp.DataSet, op.req.TransferSyntax)
		if err != nil {
			return fmt.Errorf("encoding the data set of %s: %w", cmd.Field, err)
		}
		data = bytes.NewReader(b)
	}
	final := !rsp.Status.IsPending()
	if final {
		// A response may not overtake its request: drop what the handler did not read of the
		// data set and wait for its last fragment.
		if op.pr != nil {
			op.pr.CloseWithError(ErrResponded)
		}
		select {
		case <-op.dataDone:
		case <-op.ctx.Done():
			if cause := context.Cause(op.ctx); !errors.Is(cause, ErrCancelRequested) {
				return cause
			}
			select {
			case <-op.dataDone:
			case <-a.ctx.Done():
				return context.Cause(a.ctx)
			}
		}
	}
	if err := a.ctx.Err(); err != nil {
		return context.Cause(a.ctx)
	}
	if final {
		op.final.Store(true)
		op.status = rsp.Status
	}
	if err := a.w.writeMessage(op.req.ContextID, cmdBytes, data); err != nil {
		a.writeFailed(err)
		return fmt.Errorf("sending %s: %w", cmd.Field, err)
	}
	return nil
}

// setReadDeadline sets the deadline for the next PDU: ReadTimeout inside a message, none while
// a handler runs (the peer waits for its responses), IdleTimeout otherwise.
func (a *association) setReadDeadline() {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.receiving != nil:
		_ = a.conn.SetReadDeadline(time.Now().Add(a.s.readTimeout()))
	case a.op != nil:
		_ = a.conn.SetReadDeadline(time.Time{})
	default:
		_ = a.conn.SetReadDeadline(time.Now().Add(a.s.idleTimeout()))
	}
}

// startPDU is called when a PDU header has arrived: the body must follow within ReadTimeout,
// and Shutdown must not cut it off.
func (a *association) startPDU() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closing {
		return net.ErrClosed
	}
	a.inPDU = true
	if a.associated {
		_ = a.conn.SetReadDeadline(time.Now().Add(a.s.readTimeout()))
	}
	return nil
}

// endPDU is called when reading a PDU ended; it reports whether its header had arrived.
func (a *association) endPDU() (midPDU bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	midPDU, a.inPDU = a.inPDU, false
	return midPDU
}

func (a *association) isReceiving() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.receiving != nil
}

func (a *association) isClosing() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.closing
}

func (a *association) setAbortKind(kind string) {
	a.mu.Lock()
	if a.abortKind == "" {
		a.abortKind = kind
	}
	a.mu.Unlock()
}

// readFailed handles the end of reading: the peer closed, a timeout, an invalid or oversized
// PDU (answered A-ABORT), or Shutdown closing the connection. midPDU tells that a PDU's header
// had arrived.
func (a *association) readFailed(err error, midPDU bool) {
	if a.isClosing() {
		return
	}
	a.mu.Lock()
	associated := a.associated
	busy := midPDU || a.receiving != nil || a.op != nil
	a.mu.Unlock()
	var (
		pduErr   *PDUError
		tooLarge *PDUTooLargeError
	)
	switch {
	case errors.As(err, &tooLarge):
		a.abort(AbortTooLarge, AbortReasonInvalidPDUParamValue, err.Error())
	case errors.As(err, &pduErr):
		a.abort(AbortProtocol, pduErr.Reason, err.Error())
	case errors.Is(err, os.ErrDeadlineExceeded):
		switch {
		case !associated:
			a.setAbortKind(AbortTimeout)
			a.log.Warn("DICOM connection closed: no A-ASSOCIATE-RQ within the ARTIM timeout", "artim_timeout", a.s.artimTimeout())
		case busy && (midPDU || a.isReceiving()):
			a.abort(AbortTimeout, AbortReasonNotSpecified, fmt.Sprintf("PDU or message not complete within %s", a.s.readTimeout()))
		default:
			a.setAbortKind(AbortTimeout)
			a.log.Info("DICOM association idle; aborting", "idle_timeout", a.s.idleTimeout())
			a.sendAbort(AbortServiceUser, AbortReasonNotSpecified)
		}
	case err == io.EOF && !busy:
		if associated {
			a.setAbortKind(AbortConnLost)
			a.log.Info("DICOM peer closed the connection without releasing the association")
		}
	default:
		a.setAbortKind(AbortConnLost)
		a.log.Warn("DICOM connection lost", "err", err, "associated", associated, "in_progress", busy)
	}
}

func (a *association) writeFailed(err error) {
	if a.isClosing() {
		return
	}
	a.setAbortKind(AbortConnLost)
	a.log.Warn("DICOM write failed; closing the connection", "err", err)
	a.rwc.Close()
	a.cancel(ErrAssociationClosed)
}

// abort sends A-ABORT from the service provider with the reason and closes the connection.
func (a *association) abort(kind string, reason AbortReason, msg string) {
	a.setAbortKind(kind)
	a.log.Warn("DICOM association aborted", "kind", kind, "reason", reason.String(), "detail", msg)
	source := AbortServiceProvider
	if kind == AbortHandlerPanic {
		source = AbortServiceUser
	}
	a.sendAbort(source, reason)
}

// sendAbort writes an A-ABORT (best effort, briefly) and closes the connection.
func (a *association) sendAbort(source AbortSource, reason AbortReason) {
	_ = a.w.writePDUWithin(&Abort{Source: source, Reason: reason}, min(a.s.writeTimeout(), 2*time.Second))
	a.rwc.Close()
	a.cancel(ErrAssociationClosed)
}

// abortIfIdle is Shutdown's step: it aborts the association (or closes a connection not yet
// associated) when nothing is in progress on it.
func (a *association) abortIfIdle() {
	a.mu.Lock()
	if a.closing || a.inPDU || a.receiving != nil || a.op != nil {
		a.mu.Unlock()
		return
	}
	a.closing = true
	associated := a.associated
	a.mu.Unlock()
	a.setAbortKind(AbortShutdown)
	if associated {
		a.log.Info("DICOM association aborted: server shutting down")
		a.sendAbort(AbortServiceUser, AbortReasonNotSpecified)
		return
	}
	a.rwc.Close()
}

// closeNow is Shutdown's last resort when its deadline passed.
func (a *association) closeNow() {
	a.mu.Lock()
	a.closing = true
	a.mu.Unlock()
	a.setAbortKind(AbortShutdown)
	a.rwc.Close()
}

func refusedNames(ops []Operation) []string {
	out := make([]string, len(ops))
	for i, op := range ops {
		out[i] = string(op)
	}
	return out
}
