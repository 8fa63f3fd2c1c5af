package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ferryhealth/ferry/engine/turnaround"
	"github.com/ferryhealth/ferry/fhir"
)

// StudyDeriver publishes each linked study as a FHIR R4 ImagingStudy (id: the Study Instance
// UID) and keeps it current: when instances arrive and when the link changes — by the linker, a
// person reconciling, or a patient merge — the study is queued (DerivationQueue), and once it has
// been quiet for Settle the deriver writes a new version if anything changed. A study that is no
// longer linked keeps its last subject with status entered-in-error, as FHIR asks of a resource
// that should not have been. When a study is linked to an order, the order's worklist step moves
// to STARTED (the procedure is in progress) and a draft order becomes active.
//
// Every version is validated with google/fhir before it is committed. Derivations are
// idempotent and any node may run them: two racing on one study conflict on its version, and
// the loser tries again later.
type StudyDeriver struct {
	Store interface {
		Begin(ctx context.Context) (Tx, error)
		DerivationQueue
		ResourceReader
		Study(ctx context.Context, studyInstanceUID string) (*Study, error)
		StudySeries(ctx context.Context, studyInstanceUID string) ([]*Series, error)
		SeriesInstances(ctx context.Context, seriesInstanceUID string) ([]*Instance, error)
		StudyLink(ctx context.Context, studyInstanceUID string) (*StudyLink, error)
	}
	Validator ResourceValidator // nil: not validated (tests of other things only)
	// Settle is how long a study must be quiet before it is derived (default 5s).
	Settle time.Duration
	// Timeout bounds each store call of a pass: the read of the queue and each study's
	// derivation, its transaction included (default DefaultWorkTimeout). Run stops waiting for a
	// pass the database does not answer when it is stopped (issue 18).
	Timeout time.Duration
	// Zone is the zone of DICOM dates and times without an offset (nil: time.Local).
	Zone *time.Location
	// DICOMwebURL is the base URL of Ferry's DICOMweb service, for the ImagingStudy's Endpoint;
	// "" leaves the endpoint out.
	DICOMwebURL string
	Logger      *slog.Logger
	Now         func() time.Time // default time.Now
	// ObserveTurnaround, if set, is told of each turnaround milestone a derivation reached
	// first (the study of an order), once committed: turnaround.Metrics.Observe.
	ObserveTurnaround func(t *turnaround.Clocks, stage turnaround.Stage)
}

// derivedSource is meta.source of what the deriver writes.
const derivedSource = "imaging-study"

func (d *StudyDeriver) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

func (d *StudyDeriver) settle() time.Duration {
	if d.Settle > 0 {
		return d.Settle
	}
	return 5 * time.Second
}

func (d *StudyDeriver) logger() *slog.Logger {
	if d.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return d.Logger
}

// Run derives due studies until ctx ends, looking every settle/4 (at most every second).
func (d *StudyDeriver) Run(ctx context.Context) {
	every := min(max(d.settle()/4, 50*time.Millisecond), time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		err := runBounded(ctx, d.timeout(), d.logger(), "deriving imaging studies", func(ctx context.Context) error {
			_, err := d.DeriveDue(ctx)
			return err
		})
		if err != nil && ctx.Err() == nil {
			d.logger().Error("deriving imaging studies", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// DeriveDue derives every study that has been quiet for Settle and returns how many it took off
// the queue. A study whose derivation fails stays queued (and is logged, by UID).
func (d *StudyDeriver) DeriveDue(ctx context.Context) (int, error) {
	done := 0
	for {
		due, err := d.dueStudies(ctx)
		if err != nil {
			return done, err
		}
		progress := 0
		for _, q := range due {
			if err := d.deriveWithin(ctx, q); err != nil {
				if ctx.Err() != nil {
					return done, ctx.Err()
				}
				d.logger().Error("deriving imaging study", "study_uid", q.StudyInstanceUID, "err", err)
				continue
			}
			done++
			progress++
		}
		if len(due) < 100 || progress == 0 {
			return done, nil
		}
	}
}

// dueStudies reads up to 100 due studies, within Timeout.
func (d *StudyDeriver) dueStudies(ctx context.Context) ([]StudyDerivation, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout())
	defer cancel()
	return d.Store.DueStudyDerivations(ctx, d.now().Add(-d.settle()), 100)
}

// deriveWithin is derive within Timeout.
func (d *StudyDeriver) deriveWithin(ctx context.Context, q StudyDerivation) error {
	ctx, cancel := context.WithTimeout(ctx, d.timeout())
	defer cancel()
	return d.derive(ctx, q)
}

func (d *StudyDeriver) timeout() time.Duration {
	if d.Timeout > 0 {
		return d.Timeout
	}
	return DefaultWorkTimeout
}

// derive brings one study's ImagingStudy up to date and takes it off the queue.
func (d *StudyDeriver) derive(ctx context.Context, q StudyDerivation) error {
	uid := q.StudyInstanceUID
	link, err := d.Store.StudyLink(ctx, uid)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	var content, order map[string]any
	if link != nil && link.Status == LinkLinked && link.PatientID != "" {
		if content, order, err = d.build(ctx, link); err != nil {
			return err
		}
	}

	tx, err := d.Store.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var mark turnaround.Reached
	cur, err := tx.Resource(ctx, "ImagingStudy", uid)
	switch {
	case errors.Is(err, ErrNotFound):
		cur = nil
	case err != nil:
		return err
	}
	if content == nil && cur != nil {
		// No longer linked: the published study is withdrawn, its last subject kept.
		if content, err = contentOf(cur.JSON); err != nil {
			return err
		}
		content["status"] = "entered-in-error"
	}
	if content != nil {
		if err := d.put(ctx, tx, "ImagingStudy", uid, cur, content); err != nil {
			return err
		}
		if d.DICOMwebURL != "" {
			ep, err := tx.Resource(ctx, "Endpoint", dicomWebEndpointID)
			if err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			if err := d.put(ctx, tx, "Endpoint", dicomWebEndpointID, ep, dicomWebEndpoint(d.DICOMwebURL)); err != nil {
				return err
			}
		}
		if order != nil {
			if err := d.startOrder(ctx, tx, link.ServiceRequestID); err != nil {
				return err
			}
			// The order's study is complete: its SLA clocks start (engine/turnaround).
			if mark, err = turnaround.Reach(ctx, tx, link.ServiceRequestID, fhir.ServiceRequestOf(order), turnaround.Study, d.now()); err != nil {
				return err
			}
		}
	}
	if err := tx.FinishStudyDerivation(ctx, q); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	mark.Observe(d.ObserveTurnaround)
	return nil
}

// build reads what a linked study's ImagingStudy is derived from and derives its content.
func (d *StudyDeriver) build(ctx context.Context, link *StudyLink) (content, order map[string]any, err error) {
	uid := link.StudyInstanceUID
	study, err := d.Store.Study(ctx, uid)
	if err != nil {
		return nil, nil, fmt.Errorf("reading study: %w", err)
	}
	series, err := d.Store.StudySeries(ctx, uid)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, nil, err
	}
	instances := make(map[string][]*Instance, len(series))
	for _, s := range series {
		if instances[s.SeriesInstanceUID], err = d.Store.SeriesInstances(ctx, s.SeriesInstanceUID); err != nil && !errors.Is(err, ErrNotFound) {
			return nil, nil, err
		}
	}
	if link.ServiceRequestID != "" {
		sr, err := d.Store.Resource(ctx, "ServiceRequest", link.ServiceRequestID)
		if err != nil {
			return nil, nil, fmt.Errorf("reading the linked order: %w", err)
		}
		if order, err = contentOf(sr.JSON); err != nil {
			return nil, nil, err
		}
	}
	in := imagingStudyInput{Study: study, Series: series, Instances: instances, PatientID: link.PatientID,
		Order: order, Status: "available", Zone: d.Zone}
	if order != nil {
		in.OrderID = link.ServiceRequestID
	}
	if in.Zone == nil {
		in.Zone = time.Local
	}
	if d.DICOMwebURL != "" {
		in.EndpointID = dicomWebEndpointID
	}
	content, err = imagingStudyContent(in)
	return content, order, err
}

// put writes content as the next version of typ/id (cur, the current version, or nil) unless it
// is what cur already holds; validated first.
func (d *StudyDeriver) put(ctx context.Context, tx Tx, typ, id string, cur *Resource, content map[string]any) error {
	version, keys := int64(1), []string(nil)
	if cur != nil {
		keys = cur.Keys // an order's business keys stay claimed
		old, err := contentOf(cur.JSON)
		if err != nil {
			return err
		}
		if same, err := sameContent(old, content); err != nil || same {
			return err
		}
		version = cur.VersionID + 1
	}
	now := d.now().UTC()
	body, err := resourceJSON(typ, id, version, now, derivedSource, content)
	if err != nil {
		return err
	}
	if d.Validator != nil {
		if err := d.Validator.Validate(body); err != nil {
			return fmt.Errorf("the derived %s is not valid FHIR R4: %w", typ, err)
		}
	}
	index, err := fhir.Index(typ, body)
	if err != nil {
		return err
	}
	return tx.PutResource(ctx, &Resource{Type: typ, ID: id, VersionID: version, LastUpdated: now, JSON: body, Index: index, Keys: keys})
}

// startOrder records that the order's procedure is in progress: its worklist step STARTED
// (DICOM PS3.4 K.6.1.2.2: a modality looking for SCHEDULED steps no longer gets it) and a draft
// order active.
func (d *StudyDeriver) startOrder(ctx context.Context, tx Tx, srID string) error {
	sr, err := tx.Resource(ctx, "ServiceRequest", srID)
	if err != nil {
		return err
	}
	c, err := contentOf(sr.JSON)
	if err != nil {
		return err
	}
	order := fhir.ServiceRequestOf(c)
	if order.Status == "draft" {
		c["status"] = "active"
		if err := d.put(ctx, tx, "ServiceRequest", srID, sr, c); err != nil {
			return err
		}
	}
	for _, id := range order.Identifier {
		acc := id.Value
		if id.TypeCode() != "ACSN" || acc == "" {
			continue
		}
		items, err := tx.WorklistItems(ctx, WorklistFilter{AccessionNumber: acc})
		if err != nil {
			return err
		}
		for _, it := range items {
			if it.ServiceRequestID == srID && it.StepStatus == "SCHEDULED" {
				started := *it
				started.StepStatus = "STARTED"
				if err := tx.PutWorklistItem(ctx, &started); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
