// Package access is who may use Ferry and for what: users with one role each, the practitioner
// identifiers and facilities that narrow a physician's or radiologist's view, API tokens (only
// their hash is kept), web sessions, argon2id passwords, login throttling, and the permissions
// each role and each system token's scopes grant (docs/security.md, "People and access").
//
// It depends on a small Store (adapters/sqlstore keeps it on either database) and never on
// HTTP, HTML or SQL: adapters/httpapi and adapters/web ask a Service who a request is and
// whether it may do what it asks.
package access

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Role is what a user is for; each user has exactly one.
type Role string

const (
	// RoleAdmin may do everything, including managing users and reading the audit trail.
	RoleAdmin Role = "admin"
	// RoleAnalyst runs the interfaces: the message log, mappings, deliveries, reconciliation,
	// dashboards.
	RoleAnalyst Role = "analyst"
	// RolePhysician is a referring physician: only the patients of their own orders.
	RolePhysician Role = "physician"
	// RoleRadiologist reads studies and orders of the facilities it reads for and writes reports.
	RoleRadiologist Role = "radiologist"
	// RoleSystem is a machine (a dictation system, a gateway): only its tokens' scopes.
	RoleSystem Role = "system"
)

// Roles lists every role, in the order docs/security.md shows them.
var Roles = []Role{RoleAdmin, RoleAnalyst, RolePhysician, RoleRadiologist, RoleSystem}

// ParseRole returns the role named s, or an error listing the roles.
func ParseRole(s string) (Role, error) {
	r := Role(strings.ToLower(strings.TrimSpace(s)))
	if slices.Contains(Roles, r) {
		return r, nil
	}
	return "", fmt.Errorf("unknown role %q: want one of admin, analyst, physician, radiologist, system", s)
}

// Permission is one kind of access a route needs. Routes name the permission they need; roles
// and scopes grant them (Grants).
type Permission string

const (
	PermMessages       Permission = "messages:read"      // the message log
	PermReprocess      Permission = "messages:reprocess" // the error queue: reprocess, dismiss
	PermMappings       Permission = "mappings"           // mapping tests
	PermDeliveries     Permission = "deliveries"         // the outbox, dead letters, replay
	PermReconciliation Permission = "reconciliation"     // studies, links, the reconciliation worklist
	PermDashboards     Permission = "dashboards"         // turnaround
	PermFHIRRead       Permission = "fhir:read"          // FHIR read and search
	PermReportsWrite   Permission = "reports:write"      // DiagnosticReport create and update
	PermDICOMwebRead   Permission = "dicomweb:read"      // QIDO-RS, WADO-RS
	PermDICOMwebWrite  Permission = "dicomweb:write"     // STOW-RS
	PermUsers          Permission = "users"              // users and tokens
	PermAudit          Permission = "audit:read"         // the audit trail
	PermOperations     Permission = "operations"         // metrics and profiles
	PermBreakGlass     Permission = "break-glass"        // a physician opens another patient's record, giving a reason
	permAll            Permission = "*"                  // admin
)

// Scopes are the permissions a system token may be given (ferry tokens create --scope).
// PermOperations lets a system user (Prometheus) scrape /metrics without an admin's rights.
var Scopes = []Permission{PermMessages, PermFHIRRead, PermReportsWrite, PermDICOMwebRead, PermDICOMwebWrite, PermOperations}

// ParseScope returns the scope named s, or an error listing them.
func ParseScope(s string) (Permission, error) {
	p := Permission(strings.TrimSpace(s))
	if slices.Contains(Scopes, p) {
		return p, nil
	}
	names := make([]string, len(Scopes))
	for i, sc := range Scopes {
		names[i] = string(sc)
	}
	return "", fmt.Errorf("unknown scope %q: want one of %s", s, strings.Join(names, ", "))
}

// rolePermissions are what each role may do. A physician reads FHIR and DICOMweb only through
// the readers that limit it to its own patients (Reader, Studies; the HTTP gate refuses a
// Limited identity where none is in place) and may break the glass. A system user has only its
// token's scopes.
var rolePermissions = map[Role][]Permission{
	RoleAdmin:       {permAll},
	RoleAnalyst:     {PermMessages, PermReprocess, PermMappings, PermDeliveries, PermReconciliation, PermDashboards},
	RoleRadiologist: {PermFHIRRead, PermReportsWrite, PermDICOMwebRead},
	RolePhysician:   {PermFHIRRead, PermDICOMwebRead, PermBreakGlass},
	RoleSystem:      nil,
}

// Practitioner is an identifier of a physician or radiologist as orders carry it (ORC-12,
// OBR-16, PV1-7, PV1-8): a system (NPI's URI, the hospital's assigning authority) and a value.
// An empty System matches the value under any system.
type Practitioner struct {
	System string
	Value  string
}

// ParsePractitioner reads "[SYSTEM|]VALUE".
func ParsePractitioner(s string) (Practitioner, error) {
	system, value, found := strings.Cut(strings.TrimSpace(s), "|")
	if !found {
		system, value = "", system
	}
	system, value = strings.TrimSpace(system), strings.TrimSpace(value)
	if value == "" || strings.Contains(value, "|") {
		return Practitioner{}, fmt.Errorf("practitioner %q: want [SYSTEM|]VALUE", s)
	}
	if found && system == "" {
		return Practitioner{}, fmt.Errorf("practitioner %q: an empty SYSTEM before |; give VALUE alone to match any system", s)
	}
	return Practitioner{System: system, Value: value}, nil
}

func (p Practitioner) String() string {
	if p.System == "" {
		return p.Value
	}
	return p.System + "|" + p.Value
}

// Matches reports whether an identifier of system and value names p.
func (p Practitioner) Matches(system, value string) bool {
	return p.Value == value && (p.System == "" || p.System == system)
}

// User is a person or a machine known to Ferry.
type User struct {
	Name          string
	Role          Role
	Practitioners []Practitioner // physician, radiologist: whose orders are theirs
	Facilities    []string       // when set, the only facilities (facilities[].id) the user sees
	// PasswordHash is the argon2id hash of the password in PHC form, "" for a user who cannot
	// log in with a password (a system, a single sign-on user).
	PasswordHash string
	CreatedAt    time.Time
	DisabledAt   time.Time // zero while enabled
}

// Disabled reports whether the user was disabled: no login, token or session of theirs works.
func (u *User) Disabled() bool { return !u.DisabledAt.IsZero() }

// maxNameLen bounds a user name (a login form field, a column).
const maxNameLen = 128

// Validate checks u before it is stored.
func (u *User) Validate() error {
	var errs []error
	if u.Name == "" || len(u.Name) > maxNameLen || strings.TrimSpace(u.Name) != u.Name ||
		strings.ContainsFunc(u.Name, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		errs = append(errs, fmt.Errorf("user name %q: want 1 to %d printable characters without surrounding spaces", u.Name, maxNameLen))
	}
	if u.Name == BootstrapAdmin {
		errs = append(errs, fmt.Errorf("user name %q is the bootstrap admin token's in the audit trail: choose another", u.Name))
	}
	if _, err := ParseRole(string(u.Role)); err != nil {
		errs = append(errs, err)
	}
	if len(u.Practitioners) > 0 && u.Role != RolePhysician && u.Role != RoleRadiologist {
		errs = append(errs, fmt.Errorf("user %s: only a physician or radiologist carries practitioner identifiers", u.Name))
	}
	if u.Role == RolePhysician && len(u.Practitioners) == 0 {
		errs = append(errs, fmt.Errorf("user %s: a physician needs at least one --practitioner identifier", u.Name))
	}
	for _, p := range u.Practitioners {
		if _, err := ParsePractitioner(p.String()); err != nil {
			errs = append(errs, err)
		}
	}
	for _, f := range u.Facilities {
		if f == "" || strings.ContainsAny(f, "\n\r") {
			errs = append(errs, fmt.Errorf("user %s: facility %q is empty or spans lines", u.Name, f))
		}
	}
	return errors.Join(errs...)
}

// Identity is who made a request and what they may do: a user (through a token or a web
// session) or the bootstrap admin token.
type Identity struct {
	User          string
	Role          Role
	Practitioners []Practitioner
	Facilities    []string
	// Scopes narrow a system user's token; other roles' permissions come from their role.
	Scopes []Permission
	// TokenID is the API token used ("" for a session or the bootstrap token).
	TokenID string
	// Session is the hash of the web session used (nil for a token).
	Session []byte
}

// BootstrapAdmin is the identity of FERRY_ADMIN_TOKEN / ferry-data/admin-token.
const BootstrapAdmin = "admin-token"

// Grants reports whether id may do p.
func (id *Identity) Grants(p Permission) bool {
	if id == nil {
		return false
	}
	if id.Role == RoleSystem {
		return slices.Contains(id.Scopes, p)
	}
	perms := rolePermissions[id.Role]
	return slices.Contains(perms, permAll) || slices.Contains(perms, p)
}
