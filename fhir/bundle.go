package fhir

import (
	"encoding/json"
	"strconv"
	"time"
)

// Bundle is a FHIR R4 Bundle as Ferry builds it: searchset and history Bundles whose entries
// carry stored resources as they are (never round-tripped through typed models, which would drop
// what they do not know). Write it with Marshal, which only drops white space between tokens.
type Bundle struct {
	ResourceType string        `json:"resourceType"` // always "Bundle"
	Type         string        `json:"type"`         // "searchset" or "history"
	Total        *int          `json:"total,omitempty"`
	Link         []BundleLink  `json:"link,omitempty"`
	Entry        []BundleEntry `json:"entry,omitempty"`
}

// BundleLink is one Bundle.link: relation "self", "next" or "previous" and an absolute URL.
type BundleLink struct {
	Relation string `json:"relation"`
	URL      string `json:"url"`
}

// BundleEntry is one Bundle.entry. Search is set in a searchset only (bdl-2); Request and
// Response in a history only (bdl-3, bdl-4).
type BundleEntry struct {
	FullURL  string          `json:"fullUrl,omitempty"`
	Resource json.RawMessage `json:"resource,omitempty"`
	Search   *EntrySearch    `json:"search,omitempty"`
	Request  *EntryRequest   `json:"request,omitempty"`
	Response *EntryResponse  `json:"response,omitempty"`
}

// EntrySearch is Bundle.entry.search: why the entry is in the searchset.
type EntrySearch struct {
	Mode string `json:"mode"` // "match" (Ferry does not _include)
}

// EntryRequest is Bundle.entry.request: in a history, the interaction that made the version.
type EntryRequest struct {
	Method string `json:"method"` // POST for a version 1, PUT after
	URL    string `json:"url"`
}

// EntryResponse is Bundle.entry.response: in a history, the outcome of that interaction.
type EntryResponse struct {
	Status       string `json:"status"`
	Etag         string `json:"etag,omitempty"`
	LastModified string `json:"lastModified,omitempty"`
}

// StoredResource is one stored resource version, as the Bundle builders need it.
type StoredResource struct {
	Type        string
	ID          string
	VersionID   int64
	LastUpdated time.Time
	JSON        []byte // the whole resource, already valid FHIR JSON
}

// NewSearchset builds a searchset Bundle. base is the server's FHIR base URL
// ("https://ferry.example/fhir/r4") for the entries' fullUrl; total < 0 means unknown and is
// left out; links are the self/next/previous links of the page.
func NewSearchset(base string, matches []StoredResource, total int, links []BundleLink) *Bundle {
	b := &Bundle{ResourceType: "Bundle", Type: "searchset", Link: links, Entry: make([]BundleEntry, 0, len(matches))}
	if total >= 0 {
		b.Total = &total
	}
	for _, r := range matches {
		b.Entry = append(b.Entry, BundleEntry{
			FullURL:  base + "/" + r.Type + "/" + r.ID,
			Resource: json.RawMessage(r.JSON),
			Search:   &EntrySearch{Mode: "match"},
		})
	}
	return b
}

// NewHistory builds the history Bundle of one resource from its versions, newest first. A
// version 1 is shown as created (POST, 201), later ones as updated (PUT, 200).
func NewHistory(base string, versions []StoredResource, links []BundleLink) *Bundle {
	total := len(versions)
	b := &Bundle{ResourceType: "Bundle", Type: "history", Total: &total, Link: links, Entry: make([]BundleEntry, 0, len(versions))}
	for _, r := range versions {
		req := &EntryRequest{Method: "PUT", URL: r.Type + "/" + r.ID}
		resp := &EntryResponse{Status: "200 OK"}
		if r.VersionID == 1 {
			req = &EntryRequest{Method: "POST", URL: r.Type}
			resp.Status = "201 Created"
		}
		resp.Etag = ETag(r.VersionID)
		if !r.LastUpdated.IsZero() {
			resp.LastModified = FormatInstant(r.LastUpdated)
		}
		b.Entry = append(b.Entry, BundleEntry{
			FullURL:  base + "/" + r.Type + "/" + r.ID,
			Resource: json.RawMessage(r.JSON),
			Request:  req,
			Response: resp,
		})
	}
	return b
}

// ETag is the HTTP entity tag of a resource version, W/"<versionId>" as FHIR's REST API has it.
func ETag(versionID int64) string {
	return `W/"` + strconv.FormatInt(versionID, 10) + `"`
}

// MarshalJSON writes the Bundle with resourceType set, whatever the caller left in it.
func (b *Bundle) MarshalJSON() ([]byte, error) {
	type plain Bundle
	p := plain(*b)
	p.ResourceType = "Bundle"
	return Marshal(p)
}
