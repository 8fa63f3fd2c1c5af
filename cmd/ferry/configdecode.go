package main

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// decodeConfig decodes a config file into cfg. A file that decodes cleanly takes one strict pass.
// One that does not is walked key by key, so that every problem is reported at once, each
// naming its key as an analyst writes it (`mllp.read_timeout`) and saying what to write
// instead — a YAML decoder stops at the first and names Go's struct fields. A file that is not
// YAML at all keeps the parser's own message, which points at the line.
func decodeConfig(b []byte, cfg *Config) []error {
	strictErr := yaml.UnmarshalWithOptions(b, cfg, yaml.Strict())
	if strictErr == nil {
		return nil
	}
	file, err := parser.ParseBytes(b, 0)
	if err != nil || len(file.Docs) != 1 {
		return []error{strictErr}
	}
	*cfg = Config{}
	var errs []error
	if body := file.Docs[0].Body; body != nil {
		decodeNode(body, reflect.ValueOf(cfg).Elem(), "", &errs)
	}
	if len(errs) == 0 {
		// The walk found nothing the strict pass did (an anchor, say): keep the decoder's word.
		return []error{strictErr}
	}
	return errs
}

var durationType = reflect.TypeOf(time.Duration(0))

// decodeNode decodes node into v (addressable), descending into structs and lists of structs
// so that each problem is reported at the deepest key that has it.
func decodeNode(node ast.Node, v reflect.Value, path string, errs *[]error) {
	if _, null := node.(*ast.NullNode); null {
		return
	}
	t := v.Type()
	switch {
	case t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct:
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		decodeNode(node, v.Elem(), path, errs)
		return
	case t.Kind() == reflect.Struct:
		pairs, ok := mappingPairs(node)
		if !ok {
			*errs = append(*errs, fmt.Errorf("%s: want a mapping (key: value lines), got %s", pathName(path), shown(node)))
			return
		}
		fields := yamlFields(v)
		for _, kv := range pairs {
			key := keyText(kv.Key)
			f, ok := fields[key]
			if !ok {
				*errs = append(*errs, fmt.Errorf("%s: unknown key%s", join(path, key), suggestion(key, fields)))
				continue
			}
			decodeNode(kv.Value, f, join(path, key), errs)
		}
		return
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
		seq, ok := node.(*ast.SequenceNode)
		if !ok {
			*errs = append(*errs, fmt.Errorf("%s: want a list (lines starting with -), got %s", pathName(path), shown(node)))
			return
		}
		list := reflect.MakeSlice(t, len(seq.Values), len(seq.Values))
		for i, item := range seq.Values {
			decodeNode(item, list.Index(i), fmt.Sprintf("%s[%d]", path, i), errs)
		}
		v.Set(list)
		return
	}
	if err := yaml.NodeToValue(node, v.Addr().Interface(), yaml.Strict()); err != nil {
		*errs = append(*errs, fmt.Errorf("%s: %s", pathName(path), valueProblem(node, t)))
	}
}

// valueProblem says why node does not fit a field of type t, and what to write instead.
func valueProblem(node ast.Node, t reflect.Type) string {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	got := shown(node)
	if t == durationType {
		if _, isInt := node.(*ast.IntegerNode); isInt {
			return fmt.Sprintf("%s has no unit: write %ss (a duration takes a unit: 500ms, 30s, 2m, 1h)", got, strings.TrimSpace(node.String()))
		}
		return fmt.Sprintf("%s is not a duration: write e.g. 500ms, 30s, 2m or 1h", got)
	}
	var want string
	switch t.Kind() {
	case reflect.String:
		want = "text"
	case reflect.Bool:
		want = "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		want = "a whole number"
	case reflect.Float32, reflect.Float64:
		want = "a number"
	case reflect.Slice, reflect.Array:
		want = "a list (lines starting with -, or [a, b])"
	case reflect.Map:
		want = "a mapping (key: value lines)"
	default:
		want = "a " + t.String()
	}
	return fmt.Sprintf("want %s, got %s", want, got)
}

// mappingPairs returns a mapping node's key/value pairs (a one-key mapping may parse as the pair
// itself).
func mappingPairs(node ast.Node) ([]*ast.MappingValueNode, bool) {
	switch n := node.(type) {
	case *ast.MappingNode:
		return n.Values, true
	case *ast.MappingValueNode:
		return []*ast.MappingValueNode{n}, true
	}
	return nil, false
}

// yamlFields maps each YAML key of struct v to its field, descending into `,inline` fields.
func yamlFields(v reflect.Value) map[string]reflect.Value {
	out := map[string]reflect.Value{}
	t := v.Type()
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			for k, f := range yamlFields(v.Field(i)) {
				out[k] = f
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(sf.Name)
		}
		out[name] = v.Field(i)
	}
	return out
}

func keyText(k ast.MapKeyNode) string {
	if s, ok := k.(*ast.StringNode); ok {
		return s.Value
	}
	return strings.TrimSpace(k.String())
}

// shown is a value as the file has it, cut short: a message names the key, not a whole block.
func shown(node ast.Node) string {
	s := strings.TrimSpace(node.String())
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i] + " …"
	}
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return strconv.Quote(s)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func pathName(path string) string {
	if path == "" {
		return "the file"
	}
	return path
}

// suggestion names the known key closest to a misspelt one (one edit away for a short key, at
// most two for a longer one), else lists the keys known at that level.
func suggestion(key string, fields map[string]reflect.Value) string {
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	best, bestD := "", max(1, min(2, len(key)/3))+1
	for _, k := range names {
		if d := editDistance(key, k); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" {
		return " (known here: " + strings.Join(names, ", ") + ")"
	}
	return " (did you mean " + best + "?)"
}

// editDistance is the Levenshtein distance of two short keys (bounded: keys are config names).
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
