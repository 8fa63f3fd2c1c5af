package audit

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// The FHIR R4 AuditEvent an Event reads back as (GET /fhir/r4/AuditEvent): its type and
// subtype from the DICOM and FHIR code systems IHE ATNA uses, the agent with its role and network
// address, Ferry as the source, and the patient and the request as entities.

type coding struct {
	System  string `json:"system"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}

type reference struct {
	Reference string `json:"reference,omitempty"`
	Display   string `json:"display,omitempty"`
}

type concept struct {
	Coding []coding `json:"coding,omitempty"`
	Text   string   `json:"text,omitempty"`
}

type auditEvent struct {
	ResourceType string        `json:"resourceType"`
	ID           string        `json:"id"`
	Type         coding        `json:"type"`
	Subtype      []coding      `json:"subtype,omitempty"`
	Action       string        `json:"action,omitempty"`
	Recorded     string        `json:"recorded"`
	Outcome      string        `json:"outcome"`
	OutcomeDesc  string        `json:"outcomeDesc,omitempty"`
	Agent        []auditAgent  `json:"agent"`
	Source       auditSource   `json:"source"`
	Entity       []auditEntity `json:"entity,omitempty"`
}

type auditAgent struct {
	Who          reference     `json:"who"`
	Role         []concept     `json:"role,omitempty"`
	Requestor    bool          `json:"requestor"`
	Network      *auditNetwork `json:"network,omitempty"`
	PurposeOfUse []concept     `json:"purposeOfUse,omitempty"`
}

type auditNetwork struct {
	Address string `json:"address"`
	Type    string `json:"type"` // 2: IP address
}

type auditSource struct {
	Observer reference `json:"observer"`
	Type     []coding  `json:"type"`
}

type auditEntity struct {
	What   reference      `json:"what"`
	Type   *coding        `json:"type,omitempty"`
	Role   *coding        `json:"role,omitempty"`
	Detail []entityDetail `json:"detail,omitempty"`
}

type entityDetail struct {
	Type              string `json:"type"`
	ValueString       string `json:"valueString,omitempty"`
	ValueBase64Binary []byte `json:"valueBase64Binary,omitempty"`
}

const (
	dcm         = "http://dicom.nema.org/resources/ontology/DCM"
	eventType   = "http://terminology.hl7.org/CodeSystem/audit-event-type"
	interaction = "http://hl7.org/fhir/restful-interaction"
	entityType  = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
	objectRole  = "http://terminology.hl7.org/CodeSystem/object-role"
	actReason   = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
	sourceType  = "http://terminology.hl7.org/CodeSystem/security-source-type"
)

// kinds maps an action to AuditEvent.type, subtype and action (C, R, U, E).
var kinds = map[Action]struct {
	typ     coding
	subtype coding
	action  string
}{
	ActionRead:   {coding{eventType, "rest", "RESTful Operation"}, coding{interaction, "read", "read"}, "R"},
	ActionSearch: {coding{eventType, "rest", "RESTful Operation"}, coding{interaction, "search-type", "search type"}, "E"},
	ActionCreate: {coding{eventType, "rest", "RESTful Operation"}, coding{interaction, "create", "create"}, "C"},
	ActionUpdate: {coding{eventType, "rest", "RESTful Operation"}, coding{interaction, "update", "update"}, "U"},
	ActionLink:   {coding{dcm, "110110", "Patient Record"}, coding{interaction, "update", "update"}, "U"},
	ActionReplay: {coding{dcm, "110106", "Export"}, coding{interaction, "operation", "operation"}, "E"},
	ActionLogin:  {coding{dcm, "110114", "User Authentication"}, coding{dcm, "110122", "Login"}, "E"},
	ActionLogout: {coding{dcm, "110114", "User Authentication"}, coding{dcm, "110123", "Logout"}, "E"},
	ActionAccess: {coding{dcm, "110113", "Security Alert"}, coding{}, "E"},
	ActionAdmin:  {coding{dcm, "110136", "Security Roles Changed"}, coding{}, "U"},
	// A break-glass grant: an emergency override of the access rules (DICOM 110113 Security
	// Alert, subtype 110127 Emergency Override Started).
	ActionBreakGlass: {coding{dcm, "110113", "Security Alert"}, coding{dcm, "110127", "Emergency Override Started"}, "E"},
}

// Resource returns e as a FHIR R4 AuditEvent.
func (e *Event) Resource() ([]byte, error) {
	k, ok := kinds[e.Action]
	if !ok {
		k = kinds[ActionAccess]
	}
	r := auditEvent{ResourceType: "AuditEvent", ID: strconv.FormatInt(e.Seq, 10), Type: k.typ, Action: k.action,
		Recorded: e.RecordedAt.UTC().Format(time.RFC3339Nano), Outcome: string(e.Outcome), OutcomeDesc: e.Detail,
		Source: auditSource{Observer: reference{Display: "Ferry"}, Type: []coding{{sourceType, "4", "Application Server"}}}}
	if k.subtype.Code != "" {
		r.Subtype = []coding{k.subtype}
	}
	agent := auditAgent{Who: reference{Display: e.Agent}, Requestor: true}
	if agent.Who.Display == "" {
		agent.Who.Display = "unknown"
	}
	if e.Role != "" {
		agent.Role = []concept{{Text: e.Role}}
	}
	if e.Address != "" {
		agent.Network = &auditNetwork{Address: e.Address, Type: "2"}
	}
	if strings.HasPrefix(e.Detail, BreakGlassDetail) {
		// The grant and every read under it: purpose of use "break the glass".
		agent.PurposeOfUse = []concept{{Coding: []coding{{actReason, "BTG", "break the glass"}}}}
	}
	r.Agent = []auditAgent{agent}
	if e.Patient != "" {
		r.Entity = append(r.Entity, auditEntity{What: reference{Reference: e.Patient},
			Type: &coding{entityType, "1", "Person"}, Role: &coding{objectRole, "1", "Patient"}})
	}
	r.Entity = append(r.Entity, auditEntity{What: reference{Display: e.Entity}, Type: &coding{entityType, "2", "System Object"},
		Detail: []entityDetail{{Type: "chain-hash", ValueBase64Binary: e.Hash}}})
	return json.Marshal(r)
}
