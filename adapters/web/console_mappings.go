package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/access"
	"github.com/ferryhealth/ferry/engine/audit"
	"github.com/ferryhealth/ferry/internal/textdiff"
	"github.com/ferryhealth/ferry/mappings"
)

// ConsoleMappings is what the console's mappings pages read and change (docs/console.md,
// "Mappings"): the files in force through Editor (which tries, tests and writes them and has
// the reloader apply them), the set in force, and the history of every file.
type ConsoleMappings struct {
	Editor  *mappings.Editor
	Current func() *mappings.Set
	History engine.MappingHistory
	Now     func() time.Time // nil: time.Now
}

func (m *ConsoleMappings) now() time.Time {
	if m.Now != nil {
		return m.Now().UTC()
	}
	return time.Now().UTC()
}

// SyncHistory records, as by "files", every file of the site's and the facilities' mappings
// directories whose content the history does not have as its latest: at start (history begins
// with what was deployed) and after each reload that found the files changed (edits made
// outside the console). cmd/ferry calls it; it is safe to call on every node at once.
func (m *ConsoleMappings) SyncHistory(ctx context.Context) error {
	return m.Editor.Sync(func(f mappings.File) error {
		_, err := m.History.RecordMappingRevision(ctx, &engine.MappingRevision{Facility: f.Facility, Path: f.Path,
			Content: f.Content, Author: engine.MappingFilesAuthor, Note: "found on disk", At: m.now()})
		return err
	})
}

// maxMappingForm caps a mappings form: the file (engine.MaxMappingFile) and a pasted message.
const maxMappingForm = 2*engine.MaxMappingFile + 64<<10

// mappingsView is what the mappings pages show.
type mappingsView struct {
	consoleView
	Files     []mappingRow
	Facility  string // "" for the site's layer
	Path      string
	Layer     string // "site (mappings.dir)", "shipped", "facility STMARYS"
	Kind      string
	InForce   string // the version in force of the mapping the file is
	Content   string
	Note      string
	Loaded    *engine.MappingRevision // the revision loaded into the editor (a rollback to preview)
	Revisions []*engine.MappingRevision
	Problems  []mappings.Problem
	Tests     []mappings.TestResult
	Ran       bool // tests ran (Tests may be empty)
	Failed    int
	Sample    string // the tester's message
	SampleID  string // the tester's stored message ID
	Tried     bool
	Output    []outputPart
	TryError  *mappings.TryError
	TriedWith string // the mapping version the tester applied
	From, To  *engine.MappingRevision
	Diff      template.HTML
}

// mappingRow is one file of the list.
type mappingRow struct {
	mappings.File
	What, Layer, Link string
}

// what says what a file is: "mapping (inbound)", "test (outbound)", "table".
func what(f mappings.File) string {
	kind := string(f.Kind)
	if f.Kind == mappings.KindOutbound {
		kind = "mapping"
	}
	if d := f.Direction(); d != "" {
		return kind + " (" + d + ")"
	}
	return kind
}

// outputPart is one top-level part of a mapping's output (a resource, the worklist entry), as
// indented JSON.
type outputPart struct{ Name, JSON string }

// registerMappings adds the mappings pages under /console/mappings (permission mappings:
// analysts and admins).
func (cn *console) registerMappings(g *echo.Group) error {
	m := cn.data.Mappings
	if m == nil {
		return nil
	}
	t, err := cn.pages.Clone()
	if err == nil {
		t, err = t.ParseFS(templateFiles, "templates/console_mappings.html")
	}
	if err != nil {
		return fmt.Errorf("web: parsing the mappings pages: %w", err)
	}
	cm := &consoleMappingPages{console: cn, m: m, t: t}
	limit := func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			c.Request().Body = http.MaxBytesReader(c.Response(), c.Request().Body, maxMappingForm)
			return next(c)
		}
	}
	g.GET("/mappings", cm.list)
	g.GET("/mappings/edit", cm.edit)
	g.POST("/mappings/edit", cm.post, limit)
	g.POST("/mappings/rollback", cm.rollback, limit)
	g.GET("/mappings/diff", cm.diff)
	return nil
}

type consoleMappingPages struct {
	*console
	m *ConsoleMappings
	t *template.Template
}

func layerName(f mappings.File) string {
	switch {
	case f.Shipped:
		return "shipped"
	case f.Facility != "":
		return "facility " + f.Facility
	}
	return "site"
}

func editLink(facility, path string) string {
	return "/console/mappings/edit?" + url.Values{"facility": {facility}, "path": {path}}.Encode()
}

// list serves GET /console/mappings: every mapping, code table, partial and test file in force.
func (cm *consoleMappingPages) list(c echo.Context) error {
	ident, sess, err := cm.identity(c, access.PermMappings)
	if ident == nil {
		return err
	}
	files, err := cm.m.Editor.Config.Files(cm.m.Current())
	if err != nil {
		return err
	}
	v := mappingsView{consoleView: cm.base(ident, sess, "Mappings and code tables", "mappings")}
	for _, f := range files {
		f.Content = nil
		v.Files = append(v.Files, mappingRow{File: f, What: what(f), Layer: layerName(f), Link: editLink(f.Facility, f.Path)})
	}
	cm.audit(c, ident, audit.ActionSearch, "")
	return cm.p.render(c, http.StatusOK, cm.t, "mappings", v)
}

// file reads the form's facility and path and the file's view: the content in force, the
// history. A facility or path that names no editable file is 404.
func (cm *consoleMappingPages) file(c echo.Context, ident *access.Identity, sess *access.Session, facility, path string) (mappingsView, error) {
	v := mappingsView{consoleView: cm.base(ident, sess, path, "mappings"), Facility: facility, Path: path}
	f, err := cm.m.Editor.Config.File(facility, path)
	if errors.Is(err, fs.ErrNotExist) && mappings.CheckPath(path) == nil {
		// A new file (a facility's override of a table, say): start empty.
		f, err = mappings.File{Facility: facility, Path: path}, nil
	}
	if err != nil {
		return v, echo.NewHTTPError(http.StatusNotFound, "no such mapping file: "+err.Error())
	}
	v.Content, v.Kind = string(f.Content), string(mappings.File{Path: path}.Direction())
	v.Layer = layerName(f)
	if f.Shipped {
		v.Layer = "shipped (saving writes an override to mappings.dir)"
	}
	if cur := cm.m.Current(); cur != nil {
		files, err := cm.m.Editor.Config.Files(cur)
		if err == nil {
			for _, ff := range files {
				if ff.Path == path && ff.Facility == facility && ff.Version != "" && !ff.Overridden {
					v.InForce = ff.Version
				}
			}
		}
	}
	if v.Revisions, err = cm.m.History.MappingRevisions(c.Request().Context(), facility, path); err != nil {
		return v, err
	}
	return v, nil
}

// edit serves GET /console/mappings/edit?facility=&path=[&revision=ID]: the editor, the tester
// and the history; with revision, that revision's content is loaded into the editor (saving it
// is a rollback).
func (cm *consoleMappingPages) edit(c echo.Context) error {
	ident, sess, err := cm.identity(c, access.PermMappings)
	if ident == nil {
		return err
	}
	v, err := cm.file(c, ident, sess, c.QueryParam("facility"), c.QueryParam("path"))
	if err != nil {
		return err
	}
	if id, _ := strconv.ParseInt(c.QueryParam("revision"), 10, 64); id > 0 {
		rev, err := cm.revisionOf(c.Request().Context(), id, v.Facility, v.Path)
		if err != nil {
			return err
		}
		v.Loaded, v.Content = rev, string(rev.Content)
	}
	v.Notice = mappingNotice(c.QueryParam("done"))
	cm.audit(c, ident, audit.ActionRead, "mapping "+layerName(mappings.File{Facility: v.Facility})+" "+v.Path)
	return cm.p.render(c, http.StatusOK, cm.t, "mapping", v)
}

// revisionOf reads revision id, 404 unless it is of the file named.
func (cm *consoleMappingPages) revisionOf(ctx context.Context, id int64, facility, path string) (*engine.MappingRevision, error) {
	rev, err := cm.m.History.MappingRevision(ctx, id)
	if errors.Is(err, engine.ErrNotFound) || (err == nil && (rev.Facility != facility || rev.Path != path)) {
		return nil, echo.NewHTTPError(http.StatusNotFound, "no such revision of this file")
	}
	return rev, err
}

func mappingNotice(done string) string {
	switch done {
	case "saved":
		return "Saved: it loaded, every test passed, and it is in force now. The history records it under your name."
	case "unchanged":
		return "Nothing to save: the file already holds this."
	case "rolled-back":
		return "Rolled back: the revision loaded, every test passed, and it is in force now."
	}
	return ""
}

// post serves POST /console/mappings/edit: action save, tests (run the tests against the
// edited file) or try (put the tester's message through the edited mappings). Nothing is
// written unless a save loads and passes every test.
func (cm *consoleMappingPages) post(c echo.Context) error {
	ident, sess, err := cm.identity(c, access.PermMappings)
	if ident == nil {
		return err
	}
	if err := checkCSRF(c, sess); err != nil {
		return err
	}
	var mbe *http.MaxBytesError
	if _, err := c.FormParams(); errors.As(err, &mbe) {
		return echo.NewHTTPError(http.StatusRequestEntityTooLarge, "the form exceeds 2 MiB")
	}
	v, err := cm.file(c, ident, sess, c.FormValue("facility"), c.FormValue("path"))
	if err != nil {
		return err
	}
	v.Content = normalizeNewlines(c.FormValue("content"))
	v.Note = strings.TrimSpace(c.FormValue("note"))
	v.Sample, v.SampleID = c.FormValue("message"), strings.TrimSpace(c.FormValue("message_id"))
	ctx := c.Request().Context()
	switch c.FormValue("action") {
	case "save":
		return cm.save(c, ident, v, "saved")
	case "tests":
		cand, err := cm.m.Editor.Config.Try(v.Facility, v.Path, []byte(v.Content))
		if err != nil {
			return echo.NewHTTPError(http.StatusBadRequest, err.Error())
		}
		v.Problems, v.Tests, v.Failed, v.Ran = cand.Problems, cand.Results, cand.Failed, cand.Set != nil
		cm.audit(c, ident, audit.ActionRead, "mapping tests "+v.Path)
	case "try":
		if err := cm.try(ctx, c, ident, &v); err != nil {
			return err
		}
	default:
		return echo.NewHTTPError(http.StatusBadRequest, "choose save, tests or try")
	}
	return cm.p.render(c, http.StatusOK, cm.t, "mapping", v)
}

// try puts the tester's message (pasted, or a stored one by ID) through the mappings as they
// would be with the edited file: the same Set.Try POST /api/v1/mappings/test runs.
func (cm *consoleMappingPages) try(ctx context.Context, c echo.Context, ident *access.Identity, v *mappingsView) error {
	raw := []byte(normalizeNewlines(v.Sample))
	what := "mapping test (pasted message)"
	if v.SampleID != "" {
		id, err := strconv.ParseInt(v.SampleID, 10, 64)
		if err != nil || id <= 0 {
			v.Problem = "Message ID: write the number from the message log (Messages, the message's page)."
			return nil
		}
		msg, err := cm.data.Messages.Message(ctx, id)
		if errors.Is(err, engine.ErrNotFound) {
			v.Problem = "No message " + v.SampleID + " in the message log."
			return nil
		}
		if err != nil {
			return err
		}
		raw, what = msg.Raw, "mapping test (message "+v.SampleID+")"
		v.Sample = strings.ReplaceAll(string(raw), "\r", "\n")
	}
	cm.audit(c, ident, audit.ActionRead, what)
	if len(strings.TrimSpace(string(raw))) == 0 {
		v.Problem = "Paste a message or give a stored message's ID to try the mapping on."
		return nil
	}
	cand, err := cm.m.Editor.Config.Try(v.Facility, v.Path, []byte(v.Content))
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, err.Error())
	}
	v.Problems, v.Tried = cand.Problems, true
	if cand.Set == nil {
		return nil
	}
	res, err := cand.Set.Try(raw)
	if err != nil {
		// Parse and routing errors describe the header, never field contents.
		v.Problem = err.Error()
		return nil
	}
	v.TriedWith, v.TryError = res.Mapping, res.Error
	for _, k := range slices.Sorted(maps.Keys(res.Output)) {
		// The page escapes the text: the JSON need not (a name holding <script> reads as written).
		var b strings.Builder
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res.Output[k]); err != nil {
			return err
		}
		v.Output = append(v.Output, outputPart{Name: k, JSON: b.String()})
	}
	return nil
}

// save saves v.Content as the file through the Editor (tried, tested, written atomically,
// applied), recording the revision under the analyst's name; on a refusal the page shows why
// and nothing has changed.
func (cm *consoleMappingPages) save(c echo.Context, ident *access.Identity, v mappingsView, done string) error {
	ctx := c.Request().Context()
	content := []byte(v.Content)
	if len(content) > engine.MaxMappingFile {
		v.Problem = "The file exceeds 1 MiB: a mapping or table is a few kilobytes."
		return cm.p.render(c, http.StatusUnprocessableEntity, cm.t, "mapping", v)
	}
	recorded := false
	cand, err := cm.m.Editor.Save(v.Facility, v.Path, content, func() error {
		var err error
		recorded, err = cm.m.History.RecordMappingRevision(ctx, &engine.MappingRevision{Facility: v.Facility, Path: v.Path,
			Content: content, Author: ident.User, Note: v.Note, At: cm.m.now()})
		return err
	})
	if cand == nil && err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, err.Error())
	}
	what := "mapping " + layerName(mappings.File{Facility: v.Facility}) + " " + v.Path
	if !cand.OK() {
		v.Problems, v.Tests, v.Failed, v.Ran = cand.Problems, cand.Results, cand.Failed, cand.Set != nil
		v.Problem = "Not saved: nothing has changed. Fix what is listed below and save again."
		cm.p.record(c, &audit.Event{Action: audit.ActionUpdate, Outcome: audit.OutcomeMinor, Agent: ident.User,
			Role: string(ident.Role), Entity: c.Request().URL.Path + " (" + what + ")", Detail: "refused: problems or failed tests"})
		return cm.p.render(c, http.StatusUnprocessableEntity, cm.t, "mapping", v)
	}
	if err != nil {
		return err // written and applied, but the history could not record it: say so loudly
	}
	if !recorded && done == "saved" {
		done = "unchanged"
	}
	cm.audit(c, ident, audit.ActionUpdate, what+" "+done)
	return c.Redirect(http.StatusSeeOther, editLink(v.Facility, v.Path)+"&done="+done)
}

// rollback serves POST /console/mappings/rollback (revision, note): a save of that revision's
// content, tried and tested as any save.
func (cm *consoleMappingPages) rollback(c echo.Context) error {
	ident, sess, err := cm.identity(c, access.PermMappings)
	if ident == nil {
		return err
	}
	if err := checkCSRF(c, sess); err != nil {
		return err
	}
	id, _ := strconv.ParseInt(c.FormValue("revision"), 10, 64)
	rev, err := cm.m.History.MappingRevision(c.Request().Context(), id)
	if errors.Is(err, engine.ErrNotFound) || id <= 0 {
		return echo.NewHTTPError(http.StatusNotFound, "no such revision")
	}
	if err != nil {
		return err
	}
	v, err := cm.file(c, ident, sess, rev.Facility, rev.Path)
	if err != nil {
		return err
	}
	v.Content, v.Loaded = string(rev.Content), rev
	v.Note = strings.TrimSpace("rollback to revision " + strconv.Itoa(rev.Seq) + ". " + strings.TrimSpace(c.FormValue("note")))
	return cm.save(c, ident, v, "rolled-back")
}

// diff serves GET /console/mappings/diff?facility=&path=&from=ID&to=ID: what changed between
// two revisions of a file, word by word (internal/textdiff, bounded work).
func (cm *consoleMappingPages) diff(c echo.Context) error {
	ident, sess, err := cm.identity(c, access.PermMappings)
	if ident == nil {
		return err
	}
	v, err := cm.file(c, ident, sess, c.QueryParam("facility"), c.QueryParam("path"))
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	from, _ := strconv.ParseInt(c.QueryParam("from"), 10, 64)
	to, _ := strconv.ParseInt(c.QueryParam("to"), 10, 64)
	if v.From, err = cm.revisionOf(ctx, from, v.Facility, v.Path); err != nil {
		return err
	}
	if v.To, err = cm.revisionOf(ctx, to, v.Facility, v.Path); err != nil {
		return err
	}
	v.Title = v.Path + ": revision " + strconv.Itoa(v.From.Seq) + " → " + strconv.Itoa(v.To.Seq)
	v.Diff = textdiff.HTML(textdiff.Diff(string(v.From.Content), string(v.To.Content)))
	cm.audit(c, ident, audit.ActionRead, "mapping diff "+v.Path)
	return cm.p.render(c, http.StatusOK, cm.t, "mapping-diff", v)
}

// normalizeNewlines makes a textarea's CRLF (what browsers post) LF, as the files are written.
func normalizeNewlines(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n")
}
