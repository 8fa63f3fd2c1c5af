package textdiff

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// rebuild returns the two texts the spans stand for.
func rebuild(ss []Span) (old, new string) {
	var o, n strings.Builder
	for _, s := range ss {
		if s.Op != Insert {
			o.WriteString(s.Text)
		}
		if s.Op != Delete {
			n.WriteString(s.Text)
		}
	}
	return o.String(), n.String()
}

func TestDiff(t *testing.T) {
	for _, tc := range []struct {
		name, old, new, html string
	}{
		{"same", "No acute findings.", "No acute findings.", "No acute findings."},
		{"one word", "Small left effusion.", "Small right effusion.", "Small <del>left</del><ins>right</ins> effusion."},
		{"added sentence", "IMPRESSION: Normal.", "IMPRESSION: Normal. Follow-up in 6 months.",
			"IMPRESSION: Normal.<ins> Follow-up in 6 months.</ins>"},
		{"removed word", "There is a 5 mm nodule.", "There is a nodule.", "There is a <del>5 mm </del>nodule."},
		{"escaped", "a < b", "a > b", "a <del>&lt;</del><ins>&gt;</ins> b"},
		{"from nothing", "", "Final report.", "<ins>Final report.</ins>"},
		{"to nothing", "Preliminary.", "", "<del>Preliminary.</del>"},
		{"accents", "Lésion hépatique.", "Lésion rénale.", "Lésion <del>hépatique</del><ins>rénale</ins>."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ss := Diff(tc.old, tc.new)
			if o, n := rebuild(ss); o != tc.old || n != tc.new {
				t.Fatalf("spans rebuild %q / %q", o, n)
			}
			if got := string(HTML(ss)); got != tc.html {
				t.Errorf("HTML\n got %s\nwant %s", got, tc.html)
			}
		})
	}
}

// TestDiffIsMinimal: on random edits of a random text the script found is never longer than the
// edits made (Myers finds a shortest one), and always rebuilds both texts.
func TestDiffIsMinimal(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	words := []string{"no", "acute", "findings", "mild", "effusion", "left", "right", "nodule", "mm", "stable"}
	for range 300 {
		var a []string
		for range rng.IntN(40) {
			a = append(a, words[rng.IntN(len(words))])
		}
		b := append([]string(nil), a...)
		edits := 0
		for range rng.IntN(6) {
			switch i := rng.IntN(len(b) + 1); {
			case rng.IntN(2) == 0 || len(b) == 0 || i == len(b):
				b = append(b[:i], append([]string{words[rng.IntN(len(words))]}, b[i:]...)...)
			default:
				b = append(b[:i], b[i+1:]...)
			}
			edits += 2 // a word and its space
		}
		old, new := strings.Join(a, " "), strings.Join(b, " ")
		ss := Diff(old, new)
		if o, n := rebuild(ss); o != old || n != new {
			t.Fatalf("spans rebuild %q / %q from %q / %q", o, n, old, new)
		}
		changed := 0
		for _, s := range ss {
			if s.Op != Same {
				changed += len(tokens(s.Text))
			}
		}
		if changed > edits {
			t.Fatalf("%d tokens changed for %d edits:\n%q\n%q\n%v", changed, edits, old, new, ss)
		}
	}
}

// TestBounded: texts far apart or huge are answered coarsely, and still exactly.
func TestBounded(t *testing.T) {
	var a, b strings.Builder
	for i := range 3000 {
		a.WriteString("alpha ")
		if i%2 == 0 {
			b.WriteString("beta ")
		} else {
			b.WriteString("alpha ")
		}
	}
	ss := Diff(a.String(), b.String())
	if o, n := rebuild(ss); o != a.String() || n != b.String() {
		t.Fatal("coarse spans do not rebuild the texts")
	}
	huge := strings.Repeat("word ", MaxTokens)
	ss = Diff(huge+"x", "y"+huge)
	if o, n := rebuild(ss); o != huge+"x" || n != "y"+huge {
		t.Fatal("huge spans do not rebuild the texts")
	}
}

func FuzzDiff(f *testing.F) {
	f.Add("Small left effusion.", "Small right effusion.")
	f.Add("", "x")
	f.Add("a\u00a0b\xff", "a b")
	f.Fuzz(func(t *testing.T, old, new string) {
		if o, n := rebuild(Diff(old, new)); o != old || n != new {
			t.Fatalf("spans rebuild %q / %q", o, n)
		}
	})
}

func BenchmarkDiff(b *testing.B) {
	old := strings.Repeat("FINDINGS: The lungs are clear. No pleural effusion. Heart size is normal. ", 40)
	new := strings.Replace(old, "No pleural effusion", "Small left pleural effusion", 3)
	b.ReportAllocs()
	for b.Loop() {
		Diff(old, new)
	}
}
