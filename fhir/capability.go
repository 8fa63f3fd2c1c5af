package fhir

import (
	"fmt"
	"slices"
	"time"
)

// CapabilityOptions says what the CapabilityStatement cannot know by itself.
type CapabilityOptions struct {
	// BaseURL is the FHIR base the statement describes, e.g. "https://ferry.example/fhir/r4".
	BaseURL string
	// SoftwareVersion is Ferry's version; "" leaves it out.
	SoftwareVersion string
	// Date is when the statement was last changed (the server's start will do); zero: now.
	Date time.Time
	// PageSize and MaxPageSize are the server's default and largest _count, for the
	// documentation; zero leaves them unsaid.
	PageSize, MaxPageSize int
	// Writable are the types clients may create and update (DiagnosticReport, when reports are
	// taken).
	Writable []string
}

// CapabilityStatement is the part of an R4 CapabilityStatement Ferry fills in.
type CapabilityStatement struct {
	ResourceType   string            `json:"resourceType"` // always "CapabilityStatement"
	Status         string            `json:"status"`
	Date           string            `json:"date"`
	Publisher      string            `json:"publisher"`
	Kind           string            `json:"kind"`
	Software       capSoftware       `json:"software"`
	Implementation capImplementation `json:"implementation"`
	FHIRVersion    string            `json:"fhirVersion"`
	Format         []string          `json:"format"`
	Rest           []capRest         `json:"rest"`
}

type capSoftware struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
}

type capImplementation struct {
	Description string `json:"description"`
	URL         string `json:"url,omitempty"`
}

type capRest struct {
	Mode          string        `json:"mode"`
	Documentation string        `json:"documentation"`
	Security      capSecurity   `json:"security"`
	Resource      []capResource `json:"resource"`
}

type capSecurity struct {
	Description string `json:"description"`
}

type capResource struct {
	Type        string           `json:"type"`
	Interaction []capInteraction `json:"interaction"`
	Versioning  string           `json:"versioning"`
	ReadHistory bool             `json:"readHistory"`
	SearchParam []capSearchParam `json:"searchParam"`
}

type capInteraction struct {
	Code string `json:"code"`
}

type capSearchParam struct {
	Name          string    `json:"name"`
	Definition    string    `json:"definition"`
	Type          ParamType `json:"type"`
	Documentation string    `json:"documentation"`
}

// paramDocs says how Ferry matches each parameter type; the REST API implements exactly this.
var paramDocs = map[ParamType]string{
	ParamToken:     "Exact match; system|code, code (any system) or |code (treated as code). Comma-separated values are ORed.",
	ParamString:    "Starts-with match, ignoring case, accents and repeated white space. Comma-separated values are ORed.",
	ParamDate:      "Prefixes eq (default), gt, ge, lt, le; a value of lower precision matches the whole period (1980 matches 1980-06-01).",
	ParamReference: "Type/id or a bare id. Comma-separated values are ORed.",
}

// NewCapabilityStatement describes Ferry's FHIR server: FHIR 4.0.1 in JSON, and for each type in
// SearchTypes the read, vread, history-instance and search-type interactions with its search
// parameters.
func NewCapabilityStatement(opt CapabilityOptions) *CapabilityStatement {
	date := opt.Date
	if date.IsZero() {
		date = time.Now()
	}
	doc := "Ferry's FHIR R4 API: read, version read, history and search of the resources Ferry keeps. Search results come newest first (by meta.lastUpdated), paged with next and previous links."
	if opt.PageSize > 0 && opt.MaxPageSize > 0 {
		doc += fmt.Sprintf(" Pages hold %d results unless _count says otherwise (at most %d).", opt.PageSize, opt.MaxPageSize)
	}
	rest := capRest{
		Mode:          "server",
		Documentation: doc,
		Security:      capSecurity{Description: "Every request except GET metadata carries the admin token: Authorization: Bearer <token>."},
	}
	for _, typ := range SearchTypes() {
		res := capResource{
			Type: typ,
			Interaction: []capInteraction{
				{Code: "read"}, {Code: "vread"}, {Code: "history-instance"}, {Code: "search-type"},
			},
			Versioning:  "versioned",
			ReadHistory: true,
		}
		if slices.Contains(opt.Writable, typ) {
			res.Interaction = append(res.Interaction, capInteraction{Code: "create"}, capInteraction{Code: "update"})
		}
		for _, p := range SearchParams(typ) {
			res.SearchParam = append(res.SearchParam, capSearchParam{
				Name: p.Name, Definition: p.Definition, Type: p.Type, Documentation: paramDocs[p.Type],
			})
		}
		rest.Resource = append(rest.Resource, res)
	}
	return &CapabilityStatement{
		ResourceType:   "CapabilityStatement",
		Status:         "active",
		Date:           date.UTC().Format(time.RFC3339),
		Publisher:      "Ferry",
		Kind:           "instance",
		Software:       capSoftware{Name: "Ferry", Version: opt.SoftwareVersion},
		Implementation: capImplementation{Description: "Ferry interface engine", URL: opt.BaseURL},
		FHIRVersion:    "4.0.1",
		Format:         []string{"json", "application/fhir+json"},
		Rest:           []capRest{rest},
	}
}

// MarshalJSON writes the statement with resourceType set, whatever the caller left in it.
func (c *CapabilityStatement) MarshalJSON() ([]byte, error) {
	type plain CapabilityStatement
	p := plain(*c)
	p.ResourceType = "CapabilityStatement"
	return Marshal(p)
}
