package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/access"
)

// accessStatements are who may see which patient and the break-glass grants
// (migrations/*/00040_patient_access.sql): engine.PatientAccessWriter in a transaction,
// access.PatientStore on the pools.
type accessStatements struct {
	addPatientAccess, sharePatientAccess                 string
	patientAccessOf, patientsByValue, patientsByFacility string
	putBreakGlass, breakGlassGrants                      string
}

const patientAccessColumns = `patient_id, facility, system, value`

func newAccessStatements(rebind func(string) string, d Dialect) accessStatements {
	return accessStatements{
		addPatientAccess: rebind(`INSERT INTO patient_access (` + patientAccessColumns + `) VALUES (?, ?, ?, ?)
ON CONFLICT DO NOTHING`),
		// Both ways at once: each patient takes the other's rows.
		sharePatientAccess: rebind(`INSERT INTO patient_access (` + patientAccessColumns + `)
SELECT CASE WHEN patient_id = ? THEN ? ELSE ? END, facility, system, value
FROM patient_access WHERE patient_id IN (?, ?)
ON CONFLICT DO NOTHING`),
		patientAccessOf:    rebind(`SELECT ` + patientAccessColumns + ` FROM patient_access WHERE ` + d.InList("patient_id", "?")),
		patientsByValue:    rebind(`SELECT ` + patientAccessColumns + ` FROM patient_access WHERE ` + d.InList("value", "?")),
		patientsByFacility: rebind(`SELECT DISTINCT patient_id FROM patient_access WHERE ` + d.InList("facility", "?")),
		putBreakGlass: rebind(`INSERT INTO break_glass (user_name, patient_id, reason, granted_at, expires_at)
VALUES (?, ?, ?, ?, ?)`),
		breakGlassGrants: rebind(`SELECT user_name, patient_id, reason, granted_at, expires_at FROM break_glass
WHERE user_name = ? AND expires_at > ? ORDER BY granted_at`),
	}
}

// AddPatientAccess records rows, each once.
func (s *Store) AddPatientAccess(ctx context.Context, c Conn, rows []engine.PatientAccess) error {
	for _, r := range rows {
		if _, err := c.Exec(ctx, s.addPatientAccess, engine.StorableText(r.PatientID), engine.StorableText(r.Facility),
			engine.StorableText(r.System), engine.StorableText(r.Value)); err != nil {
			return fmt.Errorf("recording who may see patient %s: %w", r.PatientID, s.d.InterpretError(err))
		}
	}
	return nil
}

// SharePatientAccess gives each of a and b the rows of the other.
func (s *Store) SharePatientAccess(ctx context.Context, c Conn, a, b string) error {
	a, b = engine.StorableText(a), engine.StorableText(b)
	if _, err := c.Exec(ctx, s.sharePatientAccess, a, b, a, a, b); err != nil {
		return fmt.Errorf("sharing who may see patients %s and %s: %w", a, b, s.d.InterpretError(err))
	}
	return nil
}

func (s *Store) patientAccessRows(ctx context.Context, c Conn, what, query string, values []string) ([]engine.PatientAccess, error) {
	if len(values) == 0 {
		return nil, nil
	}
	list := make([]string, len(values))
	for i, v := range values {
		list[i] = engine.StorableText(v)
	}
	rows, err := c.Query(ctx, query, s.d.List(list))
	out, err := scanAll(s, rows, err, func(r rowScanner) (engine.PatientAccess, error) {
		var a engine.PatientAccess
		return a, r.Scan(&a.PatientID, &a.Facility, &a.System, &a.Value)
	})
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	return out, nil
}

// PatientAccessOf returns the rows of the patients.
func (s *Store) PatientAccessOf(ctx context.Context, c Conn, patientIDs []string) ([]engine.PatientAccess, error) {
	return s.patientAccessRows(ctx, c, "who may see a patient", s.patientAccessOf, patientIDs)
}

// PatientsByPractitioner returns the rows naming any of the identifier values (any system).
func (s *Store) PatientsByPractitioner(ctx context.Context, c Conn, values []string) ([]engine.PatientAccess, error) {
	return s.patientAccessRows(ctx, c, "a practitioner's patients", s.patientsByValue, values)
}

// PatientsOfFacilities returns the ids of the patients with an order from any of facilities.
func (s *Store) PatientsOfFacilities(ctx context.Context, c Conn, facilities []string) ([]string, error) {
	if len(facilities) == 0 {
		return nil, nil
	}
	list := make([]string, len(facilities))
	for i, f := range facilities {
		list[i] = engine.StorableText(f)
	}
	rows, err := c.Query(ctx, s.patientsByFacility, s.d.List(list))
	out, err := scanAll(s, rows, err, func(r rowScanner) (id string, err error) { return id, r.Scan(&id) })
	if err != nil {
		return nil, fmt.Errorf("reading the patients of facilities: %w", err)
	}
	return out, nil
}

// PutBreakGlass records a grant.
func (s *Store) PutBreakGlass(ctx context.Context, c Conn, g *access.BreakGlass) error {
	ts, err := s.times(g.GrantedAt, g.ExpiresAt)
	if err != nil {
		return err
	}
	if _, err := c.Exec(ctx, s.putBreakGlass, engine.StorableText(g.User), engine.StorableText(g.PatientID),
		engine.StorableText(g.Reason), ts[0], ts[1]); err != nil {
		return fmt.Errorf("recording a break-glass grant: %w", s.d.InterpretError(err))
	}
	return nil
}

// BreakGlassGrants returns user's grants that have not expired at now, oldest first.
func (s *Store) BreakGlassGrants(ctx context.Context, c Conn, user string, now time.Time) ([]*access.BreakGlass, error) {
	ts, err := s.times(now)
	if err != nil {
		return nil, err
	}
	rows, err := c.Query(ctx, s.breakGlassGrants, engine.StorableText(user), ts[0])
	out, err := scanAll(s, rows, err, func(r rowScanner) (*access.BreakGlass, error) {
		var g access.BreakGlass
		return &g, r.Scan(&g.User, &g.PatientID, &g.Reason, scanTime{&g.GrantedAt}, scanTime{&g.ExpiresAt})
	})
	if err != nil {
		return nil, fmt.Errorf("reading break-glass grants: %w", err)
	}
	return out, nil
}

// Who may see which patient on a store's pools (access.PatientStore) and in its transactions
// (engine.PatientAccessWriter).
var (
	_ access.PatientStore        = Pool{}
	_ engine.PatientAccessWriter = TxSteps{}
)

func (p Pool) PatientAccessOf(ctx context.Context, patientIDs []string) ([]engine.PatientAccess, error) {
	return p.S.PatientAccessOf(ctx, p.C, patientIDs)
}

func (p Pool) PatientsByPractitioner(ctx context.Context, values []string) ([]engine.PatientAccess, error) {
	return p.S.PatientsByPractitioner(ctx, p.C, values)
}

func (p Pool) PatientsOfFacilities(ctx context.Context, facilities []string) ([]string, error) {
	return p.S.PatientsOfFacilities(ctx, p.C, facilities)
}

func (p Pool) PutBreakGlass(ctx context.Context, g *access.BreakGlass) error {
	return p.S.PutBreakGlass(ctx, p.C, g)
}

func (p Pool) BreakGlassGrants(ctx context.Context, user string, now time.Time) ([]*access.BreakGlass, error) {
	return p.S.BreakGlassGrants(ctx, p.C, user, now)
}

func (t TxSteps) AddPatientAccess(ctx context.Context, rows []engine.PatientAccess) error {
	if err := t.G.Usable(); err != nil {
		return err
	}
	return t.G.Check(t.S.AddPatientAccess(ctx, t.C, rows))
}

func (t TxSteps) SharePatientAccess(ctx context.Context, a, b string) error {
	if err := t.G.Usable(); err != nil {
		return err
	}
	return t.G.Check(t.S.SharePatientAccess(ctx, t.C, a, b))
}
