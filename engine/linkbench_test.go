package engine_test

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/lib/pq"

	"github.com/ferryhealth/ferry/adapters/postgres"
	"github.com/ferryhealth/ferry/adapters/sqlite"
	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/patientid"
	"github.com/ferryhealth/ferry/mappings"
)

// BenchmarkLinkDecision measures one linking decision — the rules run against the store and
// the decision recorded — with FERRY_BENCH_LINK_PATIENTS patients (default 100,000) holding two
// orders each, in the PostgreSQL database FERRY_BENCH_LINK_DSN names (created and filled through
// the real inbound path on first use, ~5 minutes; kept for the next run), or in the SQLite file
// a DSN of the form sqlite:PATH names. It reports the p50 and
// p99 latency over a mix of studies: by accession, by patient ID without zeros, and by
// demographics with swapped names, a typo or a transposed birth date. docs/performance.md,
// "Linking", has the figures and the command.
//
//	FERRY_BENCH_LINK_DSN=postgres://postgres@127.0.0.1:5432/ferry_linkbench?sslmode=disable \
//	  go test -run '^$' -bench BenchmarkLinkDecision -benchtime 5000x ./engine/
func BenchmarkLinkDecision(b *testing.B) {
	dsn := os.Getenv("FERRY_BENCH_LINK_DSN")
	if dsn == "" {
		b.Skip("set FERRY_BENCH_LINK_DSN to a PostgreSQL database for the linking benchmark (docs/performance.md)")
	}
	patients := 100_000
	if v := os.Getenv("FERRY_BENCH_LINK_PATIENTS"); v != "" {
		fmt.Sscan(v, &patients)
	}
	ctx := context.Background()
	var st linkBenchStore
	if path, ok := strings.CutPrefix(dsn, "sqlite:"); ok {
		s, err := sqlite.Open(ctx, path)
		if err != nil {
			b.Fatal(err)
		}
		st = s
	} else {
		createDatabase(b, dsn)
		s, err := postgres.Open(ctx, dsn)
		if err != nil {
			b.Fatal(err)
		}
		st = s
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	pop := linkPopulation{n: patients}
	pop.fill(b, st)

	links := &timedLinks{LinkStore: st}
	linker := &engine.Linker{Resources: st, Links: links, Match: engine.MatchConfig{Identifiers: []*patientid.Rules{{
		Authorities: []patientid.Authority{{Name: "St Mary's MRN", System: "urn:oid:2.16.840.1.113883.3.9999.1",
			Issuers: []string{"STMARYS"}, Steps: []patientid.Step{{DropLeadingZeros: true}}}}}}}}
	rng := rand.New(rand.NewPCG(7, uint64(time.Now().UnixNano())))
	latencies := make([]time.Duration, 0, b.N)
	deciding := make([]time.Duration, 0, b.N) // without recording the decision
	counts := map[engine.LinkStatus]int{}
	b.ResetTimer()
	for i := range b.N {
		s := pop.study(rng, i)
		start := time.Now()
		links.put = 0
		l, err := linker.LinkStudy(ctx, s)
		latencies = append(latencies, time.Since(start))
		deciding = append(deciding, latencies[len(latencies)-1]-links.put)
		if err != nil {
			b.Fatal(err)
		}
		counts[l.Status]++
	}
	b.StopTimer()
	q := func(d []time.Duration, p float64) float64 {
		slices.Sort(d)
		return float64(d[int(p*float64(len(d)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(q(latencies, 0.50), "p50-ms")
	b.ReportMetric(q(latencies, 0.99), "p99-ms")
	b.ReportMetric(q(deciding, 0.50), "decide-p50-ms")
	b.ReportMetric(q(deciding, 0.99), "decide-p99-ms")
	b.ReportMetric(float64(counts[engine.LinkLinked])/float64(b.N), "linked-share")
}

// timedLinks times the recording of each decision (a durable commit), which the benchmark
// reports apart from deciding.
type timedLinks struct {
	engine.LinkStore
	put time.Duration
}

func (t *timedLinks) PutStudyLink(ctx context.Context, l *engine.StudyLink) error {
	start := time.Now()
	err := t.LinkStore.PutStudyLink(ctx, l)
	t.put += time.Since(start)
	return err
}

// linkBenchStore is either store.
type linkBenchStore interface {
	engine.Store
	engine.LinkStore
	Migrate(ctx context.Context) error
	Close() error
}

// createDatabase creates dsn's database when it does not exist (connecting to "postgres").
func createDatabase(b *testing.B, dsn string) {
	i := strings.LastIndexByte(dsn, '/')
	j := strings.IndexByte(dsn[i:], '?')
	name, admin := dsn[i+1:], dsn[:i]+"/postgres"
	if j >= 0 {
		name, admin = dsn[i+1:i+j], dsn[:i]+"/postgres"+dsn[i+j:]
	}
	db, err := sql.Open("postgres", admin)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	var exists bool
	if err := db.QueryRow(`SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		b.Fatal(err)
	}
	if !exists {
		if _, err := db.Exec(`CREATE DATABASE "` + name + `"`); err != nil {
			b.Fatal(err)
		}
	}
}

var (
	benchFamilies = strings.Fields(`SMITH JOHNSON WILLIAMS BROWN JONES GARCIA MILLER DAVIS RODRIGUEZ MARTINEZ
		HERNANDEZ LOPEZ GONZALEZ WILSON ANDERSON THOMAS TAYLOR MOORE JACKSON MARTIN LEE PEREZ THOMPSON WHITE
		HARRIS SANCHEZ CLARK RAMIREZ LEWIS ROBINSON WALKER YOUNG ALLEN KING WRIGHT SCOTT TORRES NGUYEN HILL
		FLORES GREEN ADAMS NELSON BAKER HALL RIVERA CAMPBELL MITCHELL CARTER ROBERTS MULLER SCHMIDT SCHNEIDER
		FISCHER WEBER MEYER WAGNER BECKER SCHULZ HOFFMANN KOCH RICHTER KLEIN WOLF SCHRODER NEUMANN SCHWARZ
		ZIMMERMANN BRAUN KRUGER HOFMANN HARTMANN LANGE SCHMITT WERNER KRAUSE MEIER LEHMANN SCHMID ROSSI RUSSO
		FERRARI ESPOSITO BIANCHI ROMANO COLOMBO RICCI MARINO GRECO BRUNO GALLO CONTI DELUCA MANCINI COSTA
		GIORDANO RIZZO LOMBARDI MORETTI DUBOIS LAMBERT FONTAINE ROUSSEAU VINCENT MULLER LEFEBVRE FAURE ANDRE
		MERCIER BLANC GUERIN BOYER GARNIER CHEVALIER FRANCOIS LEGRAND GAUTHIER PERRIN ROBIN CLEMENT MOREL
		NICOLAS HENRY ROUSSEL MATHIEU OBRIEN MURPHY KELLY SULLIVAN WALSH SMYTH OCONNOR MCCARTHY BYRNE RYAN
		NOWAK KOWALSKI WISNIEWSKI WOJCIK KOWALCZYK KAMINSKI LEWANDOWSKI ZIELINSKI SZYMANSKI WOZNIAK DABROWSKI
		YAMAMOTO TANAKA WATANABE ITO NAKAMURA KOBAYASHI SATO SUZUKI TAKAHASHI KIM PARK CHOI JUNG KANG CHO
		SINGH KUMAR SHARMA PATEL GUPTA KHAN ALI AHMED HASSAN IBRAHIM SILVA SANTOS OLIVEIRA SOUZA PEREIRA
		ALVES LIMA GOMES RIBEIRO CARVALHO ALMEIDA COSTA ROCHA DIAS MENDES BARBOSA CASTRO ARAUJO FERNANDES`)
	benchGivens = strings.Fields(`JAMES MARY ROBERT PATRICIA JOHN JENNIFER MICHAEL LINDA DAVID ELIZABETH WILLIAM
		BARBARA RICHARD SUSAN JOSEPH JESSICA THOMAS SARAH CHARLES KAREN CHRISTOPHER LISA DANIEL NANCY MATTHEW
		BETTY ANTHONY MARGARET MARK SANDRA DONALD ASHLEY STEVEN KIMBERLY PAUL EMILY ANDREW DONNA JOSHUA
		MICHELLE KENNETH CAROL KEVIN AMANDA BRIAN DOROTHY GEORGE MELISSA TIMOTHY DEBORAH RONALD STEPHANIE
		EDWARD REBECCA JASON SHARON JEFFREY LAURA RYAN CYNTHIA JACOB KATHLEEN GARY AMY NICHOLAS ANGELA ERIC
		SHIRLEY JONATHAN ANNA STEPHEN BRENDA LARRY PAMELA JUSTIN EMMA SCOTT NICOLE BRANDON HELEN BENJAMIN
		SAMANTHA SAMUEL KATHERINE GREGORY CHRISTINE ALEXANDER DEBRA FRANK RACHEL PATRICK CAROLYN RAYMOND
		JANET JACK CATHERINE DENNIS MARIA JERRY HEATHER TYLER DIANE AARON RUTH JOSE JULIE ADAM OLIVIA NATHAN
		JOYCE HENRY VIRGINIA DOUGLAS VICTORIA ZACHARY KELLY PETER LAUREN KYLE CHRISTINA ETHAN JOAN WALTER
		EVELYN NOAH JUDITH JEREMY MEGAN CHRISTIAN ANDREA KEITH CHERYL ROGER HANNAH TERRY JACQUELINE GERALD
		MARTHA HAROLD GLORIA SEAN TERESA AUSTIN ANN CARL SARA ARTHUR MADISON LAWRENCE FRANCES DYLAN KATHRYN`)
)

// linkPopulation is the benchmark's patients: patient i has MRN 00i (with zeros), a name and
// birth date drawn from a fixed seed, and two CT/MR orders with accessions A<i>-1 and A<i>-2.
type linkPopulation struct{ n int }

func (p linkPopulation) patient(i int) (family, given, birth, sex string) {
	r := rand.New(rand.NewPCG(uint64(i), 42))
	family = benchFamilies[r.IntN(len(benchFamilies))]
	given = benchGivens[r.IntN(len(benchGivens))]
	day := time.Date(1940, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, r.IntN(80*365))
	sex = "F"
	if r.IntN(2) == 0 {
		sex = "M"
	}
	return family, given, day.Format("20060102"), sex
}

// fill loads the population through the inbound path (ORM^O01, shipped mappings, group commit)
// unless the database holds it already.
func (p linkPopulation) fill(b *testing.B, st linkBenchStore) {
	ctx := context.Background()
	probe, err := st.SearchResources(ctx, engine.ResourceQuery{Type: "ServiceRequest", Count: 1, Filters: []engine.SearchFilter{
		{Param: "identifier", Op: engine.SearchEq, Values: []engine.SearchValue{{Value: fmt.Sprintf("A%d-2", p.n-1)}}}}})
	if err != nil {
		b.Fatal(err)
	}
	if len(probe) == 1 {
		return
	}
	set, err := mappings.Load(mappings.Source{Base: []fs.FS{mappings.Shipped()}})
	if err != nil {
		b.Fatal(err)
	}
	gc := engine.NewGroupCommitter(st, engine.GroupCommitOptions{Workers: 4, EffectWorkers: 4})
	defer gc.Close()
	in := engine.NewInbound("bench", gc, nil, nil)
	in.Processor = &engine.Processor{Mappings: func() engine.MappingSource { return set }}
	start := time.Now()
	var wg sync.WaitGroup
	work := make(chan int)
	for range 16 {
		wg.Go(func() {
			for i := range work {
				family, given, birth, sex := p.patient(i)
				for k := 1; k <= 2; k++ {
					code, modality := "71260^CT CHEST W/O CONTRAST^C4", "CT"
					if k == 2 {
						code, modality = "70551^MRI BRAIN W/O CONTRAST^C4", "MR"
					}
					raw := fmt.Sprintf("MSH|^~\\&|RIS|STMARYS|FERRY|FERRY|20261127083000-0500||ORM^O01^ORM_O01|B%d-%d|P|2.5.1\r"+
						"PID|1||%09d^^^STMARYS^MR||%s^%s||%s|%s\r"+
						"ORC|NW|P%d-%d^RIS|||SC||^^^2026112%d093000^^R||20261127082500\r"+
						"OBR|1|P%d-%d^RIS||%s||||||||||||||A%d-%d||||||%s\r",
						i, k, i, family, given, birth, sex, i, k, k, i, k, code, i, k, modality)
					ack := in.Receive(ctx, engine.Received{Data: []byte(raw), ReceivedAt: time.Now()})
					if !strings.Contains(string(ack), "MSA|AA") {
						b.Errorf("patient %d order %d: %s", i, k, ack)
						return
					}
				}
			}
		})
	}
	for i := range p.n {
		if i%10000 == 0 && i > 0 {
			b.Logf("loaded %d patients in %s", i, time.Since(start).Round(time.Second))
		}
		work <- i
	}
	close(work)
	wg.Wait()
	b.Logf("loaded %d patients, %d orders in %s", p.n, 2*p.n, time.Since(start).Round(time.Second))
}

// study returns the k-th benchmark study: a fresh Study UID, a random patient, one of five kinds.
func (p linkPopulation) study(r *rand.Rand, k int) *engine.Study {
	i := r.IntN(p.n)
	family, given, birth, sex := p.patient(i)
	s := &engine.Study{StudyInstanceUID: fmt.Sprintf("2.25.%d%d", time.Now().UnixNano(), k), StudyDate: "20261127",
		ModalitiesInStudy: []string{"CT"}, PatientName: family + "^" + given, PatientBirthDate: birth, PatientSex: sex}
	switch k % 5 {
	case 0: // the order's accession
		s.AccessionNumber, s.PatientID, s.IssuerOfPatientID = fmt.Sprintf("A%d-1", i), fmt.Sprint(i), "STMARYS"
	case 1: // patient ID without zeros
		s.PatientID, s.IssuerOfPatientID = fmt.Sprint(i), "STMARYS"
	case 2: // demographics, names swapped
		s.PatientName = given + "^" + family
	case 3: // demographics, a typo in the family name
		s.PatientName = family[:len(family)-1] + "X^" + given
	case 4: // demographics, transposed birth date
		s.PatientBirthDate = birth[:6] + birth[7:8] + birth[6:7]
	}
	return s
}
