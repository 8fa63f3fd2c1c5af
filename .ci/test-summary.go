//go:build ignore

// test-summary reads `go test -json` on stdin and prints what `go test` prints without -v — one
// line per package, the whole output of each failing test — and then every skipped test grouped
// by the reason it gave, so a skip (PostgreSQL unreachable, ../shared absent, dcmtk missing) is
// visible in `make test`'s output. A skip that gives no reason is listed as such. It exits 1 when
// a test or a package failed or the input was not go test's.
//
//	go test -json ./... | go run .ci/test-summary.go
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

// location is the file:line prefix testing puts before a t.Skip message.
var location = regexp.MustCompile(`^\s*[\w.-]+\.go:\d+: `)

func main() {
	var (
		outputs = map[string][]string{} // package + test → its output lines
		skips   = map[string][]string{} // reason → package.Test
		failed  bool
		events  int
	)
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	for in.Scan() {
		line := in.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			fmt.Println(string(line)) // not an event (a build error, go vet): pass it on
			if strings.Contains(string(line), "FAIL") {
				failed = true
			}
			continue
		}
		events++
		key := e.Package + " " + e.Test
		switch e.Action {
		case "output", "build-output":
			if e.Test == "" {
				if o := strings.TrimSpace(e.Output); o != "PASS" && o != "FAIL" && o != "" && !strings.HasPrefix(o, "=== ") {
					fmt.Print(e.Output) // "ok …", "FAIL …", "? … [no test files]", TestMain's notes
				}
				continue
			}
			outputs[key] = append(outputs[key], e.Output)
		case "fail", "build-fail":
			failed = true
			if e.Test != "" {
				fmt.Print(strings.Join(outputs[key], ""))
			}
			delete(outputs, key)
		case "skip":
			if e.Test != "" {
				skips[skipReason(outputs[key])] = append(skips[skipReason(outputs[key])], e.Package+"."+e.Test)
			}
			delete(outputs, key)
		case "pass":
			delete(outputs, key)
		}
	}
	if err := in.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "test-summary:", err)
		os.Exit(1)
	}
	if len(skips) > 0 {
		reasons := make([]string, 0, len(skips))
		n := 0
		for r, tests := range skips {
			reasons = append(reasons, r)
			n += len(tests)
		}
		sort.Strings(reasons)
		fmt.Printf("\nskipped tests: %d, for %d reasons:\n", n, len(reasons))
		for _, r := range reasons {
			tests := skips[r]
			sort.Strings(tests)
			shown := tests
			if len(shown) > 3 {
				shown = shown[:3]
			}
			more := ""
			if len(tests) > len(shown) {
				more = fmt.Sprintf(" and %d more", len(tests)-len(shown))
			}
			fmt.Printf("  SKIP ×%d %s\n       %s%s\n", len(tests), r, strings.Join(shown, ", "), more)
		}
	}
	if failed || events == 0 {
		os.Exit(1)
	}
}

// skipReason is the message a skipped test printed, without testing's framing lines and file:line
// prefixes.
func skipReason(lines []string) string {
	var parts []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		if m := strings.TrimSpace(location.ReplaceAllString(l, "")); m != "" {
			parts = append(parts, m)
		}
	}
	if len(parts) == 0 {
		return "(no reason given)"
	}
	return strings.Join(parts, " / ")
}
