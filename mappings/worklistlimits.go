package mappings

import (
	"strings"

	exprast "github.com/expr-lang/expr/ast"
	"github.com/goccy/go-yaml/ast"
)

// worklistLimits is the longest value each worklist field may hold: the maximum length of the
// DICOM value representation of the attribute it becomes in a Modality Worklist answer (PS3.5
// Table 6.2-1: AE, CS, SH 16; LO, PN, UI 64; DA 8; TM 14). A longer value would make the
// worklist answer invalid DICOM, and a modality may refuse or truncate it, so the compiler
// refuses it where it can see it: a literal in the template, or a code table column a lookup
// feeds into the field (a 34-character coding scheme in a 16-character field is a YAML slip
// lint must catch). Keys are the field paths under worklist:.
var worklistLimits = map[string]struct {
	max  int
	name string
}{
	"accession_number":                 {16, "Accession Number (SH)"},
	"requested_procedure_id":           {16, "Requested Procedure ID (SH)"},
	"requested_procedure_description":  {64, "Requested Procedure Description (LO)"},
	"requested_procedure_code.value":   {16, "Code Value (SH)"},
	"requested_procedure_code.scheme":  {16, "Coding Scheme Designator (SH)"},
	"requested_procedure_code.meaning": {64, "Code Meaning (LO)"},
	"requested_procedure_priority":     {16, "Requested Procedure Priority (CS)"},
	"reason_for_requested_procedure":   {64, "Reason for the Requested Procedure (LO)"},
	"study_instance_uid":               {64, "Study Instance UID (UI)"},
	"placer_order_number":              {64, "Placer Order Number (LO)"},
	"filler_order_number":              {64, "Filler Order Number (LO)"},
	"admission_id":                     {64, "Admission ID (LO)"},
	"modality":                         {16, "Modality (CS)"},
	"station_ae_title":                 {16, "Scheduled Station AE Title (AE)"},
	"station_name":                     {16, "Scheduled Station Name (SH)"},
	"step_id":                          {16, "Scheduled Procedure Step ID (SH)"},
	"step_description":                 {64, "Scheduled Procedure Step Description (LO)"},
	"step_code.value":                  {16, "Code Value (SH)"},
	"step_code.scheme":                 {16, "Coding Scheme Designator (SH)"},
	"step_code.meaning":                {64, "Code Meaning (LO)"},
	"step_status":                      {16, "Scheduled Procedure Step Status (CS)"},
	"requested_procedure_code.version": {16, "Coding Scheme Version (SH)"},
	"step_code.version":                {16, "Coding Scheme Version (SH)"},
	"issuer_of_patient_id":             {64, "Issuer of Patient ID (LO)"},
	"patient_id":                       {64, "Patient ID (LO)"},
	"patient_sex":                      {16, "Patient's Sex (CS)"},
	"start_date":                       {8, "Scheduled Procedure Step Start Date (DA)"},
	"start_time":                       {14, "Scheduled Procedure Step Start Time (TM)"},
}

// worklistField is the field a template path fills under worklist: ("step_code.scheme"), or "".
func worklistField(path string) string {
	const seg = "worklist."
	i := strings.LastIndex(path, "."+seg)
	switch {
	case i >= 0:
		return path[i+1+len(seg):]
	case strings.HasPrefix(path, seg):
		return path[len(seg):]
	}
	return ""
}

// checkWorklistLength reports a value that cannot fit the worklist field path fills: a literal
// longer than the field, or a code table column looked up into the field (`lookup("T", key,
// "column")`) with a row longer than it, each such row named.
func (c *compiler) checkWorklistLength(n ast.Node, s, path string, e *expression) {
	limit, ok := worklistLimits[worklistField(path)]
	if !ok || c.out != nil {
		return
	}
	if !strings.HasPrefix(s, "=") {
		if len(s) > limit.max {
			c.problem(n, path, "%q is %d characters; DICOM's %s holds at most %d", s, len(s), limit.name, limit.max)
		}
		return
	}
	if e == nil {
		return
	}
	root := e.prog.Node()
	exprast.Walk(&root, lookupVisitor(func(table, column string) {
		t := c.tables[table]
		if t == nil {
			return // reported by checkTables
		}
		for _, key := range sortedKeys(t.Rows) {
			if v := t.Rows[key][column]; len(v) > limit.max {
				c.problem(n, path, "code table %q, row %q: %s %q is %d characters; it fills DICOM's %s, which holds at most %d",
					table, key, column, v, len(v), limit.name, limit.max)
			}
		}
	}))
}

// lookupVisitor calls found with the table and column of every `lookup(ctx, "T", key, "column")`
// call whose table and column are written as strings.
type lookupVisitor func(table, column string)

func (f lookupVisitor) Visit(n *exprast.Node) {
	call, ok := (*n).(*exprast.CallNode)
	if !ok || len(call.Arguments) != 4 {
		return
	}
	if id, ok := call.Callee.(*exprast.IdentifierNode); !ok || id.Value != "lookup" {
		return
	}
	table, ok1 := call.Arguments[1].(*exprast.StringNode)
	column, ok2 := call.Arguments[3].(*exprast.StringNode)
	if ok1 && ok2 {
		f(table.Value, column.Value)
	}
}
