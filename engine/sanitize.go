package engine

import (
	"encoding/base64"
	"regexp"
	"strings"
	"sync"

	"github.com/microcosm-cc/bluemonday"

	"github.com/ferryhealth/ferry/fhir"
)

// HTML that arrives in a report — the narrative text.div, a text/html presentedForm (from the
// reading platform, or an ORU's OBX ED ^text^html) — is sanitised with an allow list before it
// is stored or forwarded (issue 17 item 7). The list follows FHIR R4 Narrative (§2.4.0,
// invariants txt-1/txt-2): the basic HTML formatting elements and attributes of HTML 4.0
// chapters 7–11 and 15, <a> with name or href, images and inline style; no head or body, no
// scripts, forms, base/link/xlink, frames, iframes, objects or event attributes. Ferry narrows
// it further where a report needs nothing more:
//   - links only to a fragment of the same document (#id) or to http(s) (then rel="nofollow
//     noreferrer noopener"); no javascript:, data: or other schemes;
//   - images only in-line (data:image/png|jpeg|gif|webp;base64) or by fragment (#id): an external
//     image would be fetched by every viewer (a tracking beacon);
//   - style only with a few text properties whose values bluemonday checks (no url(), no
//     expression());
//   - the content of script, style, iframe, object, title and the like is dropped, not shown.
//
// Plain-text fields (conclusion, text/plain forms, ORU TX/FT/ST text) are not markup and are
// kept word for word ("A<B", "< 5 mm"); Ferry escapes them wherever it renders HTML.
var (
	narrativePolicy = sync.OnceValue(func() *bluemonday.Policy {
		p := bluemonday.NewPolicy()
		p.AllowElements("div", "p", "br", "hr", "span", "b", "i", "u", "s", "em", "strong", "small", "big",
			"sub", "sup", "tt", "code", "pre", "blockquote", "q", "cite", "abbr", "acronym", "dfn", "kbd",
			"samp", "var", "del", "ins", "h1", "h2", "h3", "h4", "h5", "h6", "address", "bdo",
			"ul", "ol", "li", "dl", "dt", "dd",
			"table", "caption", "thead", "tbody", "tfoot", "tr", "th", "td", "colgroup", "col")
		p.AllowAttrs("xmlns").Matching(regexp.MustCompile(`^http://www\.w3\.org/1999/xhtml$`)).OnElements("div")
		p.AllowAttrs("id", "class", "title", "lang", "xml:lang", "dir").Globally()
		p.AllowAttrs("colspan", "rowspan", "headers", "scope", "abbr", "align", "valign").OnElements("th", "td")
		p.AllowAttrs("span", "align", "valign").OnElements("colgroup", "col")
		p.AllowAttrs("border", "cellpadding", "cellspacing", "summary", "width").OnElements("table")
		p.AllowAttrs("type", "start").OnElements("ol")
		p.AllowAttrs("cite", "datetime").OnElements("del", "ins", "q", "blockquote")
		p.AllowStyles("color", "background-color", "font-weight", "font-style", "font-size",
			"text-align", "text-decoration", "vertical-align", "white-space", "border", "padding", "margin").Globally()

		p.AllowURLSchemes("http", "https")
		p.AllowRelativeURLs(true) // only #fragments get through the href/src patterns below
		p.AllowDataURIImages()
		p.AllowAttrs("href").Matching(regexp.MustCompile(`^(#[\w.:-]*|https?://[^\s"'<>]+)$`)).OnElements("a")
		p.AllowAttrs("name").Matching(regexp.MustCompile(`^[\w.:-]+$`)).OnElements("a")
		p.RequireNoFollowOnLinks(true)
		p.RequireNoReferrerOnLinks(true)
		p.AllowAttrs("src").Matching(regexp.MustCompile(`^(#[\w.:-]+|data:image/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/=]+)$`)).OnElements("img")
		p.AllowAttrs("alt", "width", "height").OnElements("img")
		return p
	})
)

// SanitizeNarrativeHTML returns an XHTML fragment (a text.div) with everything the allow list
// does not name removed.
func SanitizeNarrativeHTML(div string) string { return narrativePolicy().Sanitize(div) }

// sanitizeReportHTML sanitises, in place, the HTML a DiagnosticReport's content carries: text.div
// (dropped with its text when nothing readable is left, as a narrative must have content:
// txt-2) and every text/html or XHTML presentedForm's data (kept as a small document). It
// returns how many places it changed, for a log line that names no content.
func sanitizeReportHTML(c map[string]any) (changed int) {
	if div, ok := fhir.NarrativeDiv(c); ok {
		clean := SanitizeNarrativeHTML(div)
		if clean != div {
			changed++
			fhir.SetNarrativeDiv(c, clean)
		}
		if strings.TrimSpace(narrativeText(clean)) == "" {
			delete(c, "text")
		}
	}
	for _, f := range fhir.AttachmentsOf(c["presentedForm"]) {
		mediaType, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(f.ContentType)), ";")
		if mediaType != "text/html" && mediaType != "application/xhtml+xml" {
			continue
		}
		if f.Data == "" {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(f.Data)
		if err != nil {
			f.DropData() // not base64: nothing a viewer could show safely
			changed++
			continue
		}
		clean := narrativePolicy().Sanitize(string(raw))
		doc := "<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body>" + clean + "</body></html>"
		if clean != string(raw) && doc != string(raw) {
			f.ReplaceData(base64.StdEncoding.EncodeToString([]byte(doc))) // hash and size no longer hold
			changed++
		}
	}
	return changed
}

// narrativeText is the text of an HTML fragment, tags removed, for the txt-2 check.
func narrativeText(s string) string {
	return bluemonday.StrictPolicy().Sanitize(s)
}
