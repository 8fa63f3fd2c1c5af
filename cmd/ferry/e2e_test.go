package main

// End-to-end tests: the real ferry binary, started as a process on a real store (SQLite in a
// temporary directory, PostgreSQL in a fresh schema), driven over real TCP sockets and its HTTP
// API. This file holds the harness (build, start, stop, peers, API client) and the tests of the
// smaller commands; interop_test.go, badinput_test.go and crash_test.go hold the long ones.
//
// Environment:
//
//	TEST_DATABASE_URL       PostgreSQL for the postgres variants
//	                        (default postgres://postgres@127.0.0.1:5432/test?sslmode=disable)
//	FERRY_REQUIRE_POSTGRES  1: fail instead of skipping when PostgreSQL is unreachable
//	FERRY_REQUIRE_PEERS     1: fail instead of skipping when mllp_send is missing
//
// -short skips the slow tests (interop, bad input, crash, graceful shutdown).

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/lib/pq" // the test creates and drops a schema per PostgreSQL test

	"github.com/ferryhealth/ferry/hl7"
)

// ferryBin is the binary TestMain builds once for every test in this package.
var ferryBin string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "ferry-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: creating temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	ferryBin = filepath.Join(dir, "ferry")
	// The test's working directory is cmd/ferry: build this package.
	build := exec.Command("go", "build", "-o", ferryBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building ferry:", err)
		return 1
	}
	return m.Run()
}

// ---------------------------------------------------------------------------------------------
// Stores

const defaultTestDatabaseURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// storeCase names a store kind and makes a fresh, empty store of that kind for one test.
type storeCase struct {
	name string
	// newDB returns the --db URL of a fresh store; dir is the test's data directory.
	newDB func(t *testing.T, dir string) string
}

func storeCases() []storeCase {
	return []storeCase{
		{"sqlite", func(t *testing.T, dir string) string { return "sqlite:" + filepath.Join(dir, "ferry.db") }},
		{"postgres", freshPostgresSchema},
	}
}

// forEachStore runs f as a parallel subtest per store kind.
func forEachStore(t *testing.T, f func(t *testing.T, db, dir string)) {
	t.Helper()
	for _, sc := range storeCases() {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			f(t, sc.newDB(t, dir), dir)
		})
	}
}

var (
	pgOnce        sync.Once
	pgAdmin       *sql.DB
	pgURL         string
	pgUnreachable string
)

// freshPostgresSchema creates schema ferry_e2e_<random> in TEST_DATABASE_URL, drops it when the
// test ends, and returns a DSN whose search_path is that schema. It skips the test when
// PostgreSQL is unreachable, unless FERRY_REQUIRE_POSTGRES=1.
func freshPostgresSchema(t *testing.T, _ string) string {
	t.Helper()
	pgOnce.Do(func() {
		pgURL = os.Getenv("TEST_DATABASE_URL")
		if pgURL == "" {
			pgURL = defaultTestDatabaseURL
		}
		db, err := sql.Open("postgres", pgURL)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err = db.PingContext(ctx)
			cancel()
		}
		if err != nil {
			pgUnreachable = fmt.Sprintf("PostgreSQL at %s unreachable (%v); set TEST_DATABASE_URL, or FERRY_REQUIRE_POSTGRES=1 to fail", redactURL(pgURL), err)
			if db != nil {
				db.Close()
			}
			return
		}
		pgAdmin = db
	})
	if pgAdmin == nil {
		if os.Getenv("FERRY_REQUIRE_POSTGRES") == "1" {
			t.Fatal(pgUnreachable)
		}
		t.Skip(pgUnreachable)
	}
	schema := "ferry_e2e_" + randomHex(6)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := pgAdmin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("creating schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := pgAdmin.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("dropping schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(pgURL)
	if err != nil {
		t.Fatalf("TEST_DATABASE_URL: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// ---------------------------------------------------------------------------------------------
// The ferry process

const testAdminToken = "e2e-admin-token-0123456789-abcdefghijklmnopqrstuvwxyz"

// ferryProcess is one running `ferry serve`.
type ferryProcess struct {
	t        *testing.T
	cmd      *exec.Cmd
	DB       string
	Dir      string
	MLLPAddr string
	HTTPAddr string
	// DICOMAddr is the DICOM listener (C-ECHO today).
	DICOMAddr string
	Store     string
	Version   string

	stdout, stderr *lockedBuffer
	exited         chan struct{} // closed when the process has exited
	waitErr        error         // set before exited is closed
	stopped        atomic.Bool   // Stop or Kill was called
}

// serveOptions are the knobs of startFerry beyond the store.
type serveOptions struct {
	// Config, if set, is written to DIR/ferry.yaml and passed as --config.
	Config string
	// MLLP and DICOM, if set, are the listen addresses (default 127.0.0.1:0).
	MLLP, DICOM string
}

var servingLine = regexp.MustCompile(`(?m)^ferry (\S+) serving: mllp=(\S+) http=(\S+) store=(\S+) dicom=(\S+)$`)

// startFerry starts `ferry serve` on db with its working directory dir, waits for the line that
// names its addresses, and stops it with SIGTERM when the test ends, failing the test unless it
// exits 0 (a graceful drain).
func startFerry(t *testing.T, db, dir string, opt serveOptions) *ferryProcess {
	t.Helper()
	args := []string{"serve", "--mllp", cmp.Or(opt.MLLP, "127.0.0.1:0"), "--http", "127.0.0.1:0", "--dicom", cmp.Or(opt.DICOM, "127.0.0.1:0"), "--db", db}
	if opt.Config != "" {
		path := filepath.Join(dir, "ferry.yaml")
		if err := os.WriteFile(path, []byte(opt.Config), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--config", path)
	}
	p := &ferryProcess{t: t, DB: db, Dir: dir, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(ferryBin, args...)
	p.cmd.Dir = dir
	p.cmd.Env = append(filteredEnv("FERRY_DATABASE_URL", "FERRY_ADMIN_TOKEN"), "FERRY_ADMIN_TOKEN="+testAdminToken)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting ferry serve: %v", err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("ferry serve (pid %d) stderr, last 8 KiB:\n%s", p.cmd.Process.Pid, p.stderr.tail(8<<10))
		}
	})

	out := awaitOutput(t, p.stdout, p.exited, "the serving line", servingLine.MatchString)
	m := servingLine.FindStringSubmatch(out)
	p.Version, p.MLLPAddr, p.HTTPAddr, p.Store, p.DICOMAddr = m[1], m[2], m[3], m[4], m[5]
	return p
}

// filteredEnv is the test's environment without the named variables.
func filteredEnv(drop ...string) []string {
	var env []string
next:
	for _, kv := range os.Environ() {
		for _, d := range drop {
			if strings.HasPrefix(kv, d+"=") {
				continue next
			}
		}
		env = append(env, kv)
	}
	return env
}

// Stop sends SIGTERM and waits for the process to exit; the test fails unless it exits 0 (within
// hangGuard, which only guards against hanging). Calling it again, or after Kill, does nothing.
func (p *ferryProcess) Stop() {
	p.t.Helper()
	if p.stopped.Swap(true) {
		return
	}
	select {
	case <-p.exited:
		p.t.Errorf("ferry serve had already exited: %v", p.waitErr)
		return
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Errorf("sending SIGTERM: %v", err)
	}
	select {
	case <-p.exited:
		if p.waitErr != nil {
			p.t.Errorf("ferry serve after SIGTERM: %v (want exit status 0, a graceful drain)", p.waitErr)
		}
	case <-time.After(hangGuard):
		_ = p.cmd.Process.Kill()
		<-p.exited
		p.t.Errorf("ferry serve did not exit within %v of SIGTERM; killed", hangGuard)
	}
}

// Kill ends the process with SIGKILL (a crash) and waits for it.
func (p *ferryProcess) Kill() {
	p.t.Helper()
	p.stopped.Store(true)
	if err := p.cmd.Process.Kill(); err != nil {
		p.t.Errorf("killing ferry serve: %v", err)
	}
	<-p.exited
}

// lockedBuffer collects a process's output; safe for the writer goroutine and readers.
type lockedBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	written chan struct{} // closed at the next Write (made by next)
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.written != nil {
		close(b.written)
		b.written = nil
	}
	return b.buf.Write(p)
}

// next returns what was written so far and a channel closed at the next Write.
func (b *lockedBuffer) next() (string, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.written == nil {
		b.written = make(chan struct{})
	}
	return b.buf.String(), b.written
}

// hangGuard bounds every wait of these tests for something that must happen. It is not a
// limit on how fast Ferry must be (a busy machine may take many times longer than an idle one):
// it only turns a hang into a failure that says what did not happen.
const hangGuard = 2 * time.Minute

// awaitOutput waits until match holds for what a process has written to b, looking again at
// each write (no polling, no sleep), and returns the output then. It fails the test after
// hangGuard, or when exited (if not nil) closes first.
func awaitOutput(t *testing.T, b *lockedBuffer, exited <-chan struct{}, what string, match func(string) bool) string {
	t.Helper()
	hang := time.After(hangGuard)
	for {
		out, written := b.next()
		if match(out) {
			return out
		}
		select {
		case <-written:
		case <-exited:
			if out, _ := b.next(); match(out) {
				return out
			}
			t.Fatalf("the process exited while waiting for %s; its output, last 8 KiB:\n%s", what, b.tail(8<<10))
		case <-hang:
			t.Fatalf("still waiting for %s after %v (a hang guard, not a speed limit); output, last 8 KiB:\n%s", what, hangGuard, b.tail(8<<10))
		}
	}
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *lockedBuffer) tail(n int) string {
	s := b.String()
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// ---------------------------------------------------------------------------------------------
// An MLLP peer
//
// The tests speak MLLP with this small client of their own rather than adapters/mllp, so a bug
// in Ferry's framing cannot cancel out in its own tests.

type mllpPeer struct {
	conn net.Conn
	r    *bufio.Reader
}

func dialMLLP(t *testing.T, addr string) *mllpPeer {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dialing MLLP %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return &mllpPeer{conn: conn, r: bufio.NewReader(conn)}
}

// frame wraps msg in an MLLP block: 0x0B msg 0x1C 0x0D.
func frame(msg []byte) []byte {
	out := make([]byte, 0, len(msg)+3)
	out = append(out, 0x0B)
	out = append(out, msg...)
	return append(out, 0x1C, 0x0D)
}

// write sends raw bytes (a frame or anything else).
func (c *mllpPeer) write(b []byte, timeout time.Duration) error {
	_ = c.conn.SetWriteDeadline(time.Now().Add(timeout))
	_, err := c.conn.Write(b)
	return err
}

// readFrame reads one MLLP frame and returns its content. Bytes before the start block are an
// error: Ferry must send nothing but frames.
func (c *mllpPeer) readFrame(timeout time.Duration) ([]byte, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(timeout))
	b, err := c.r.ReadByte()
	if err != nil {
		return nil, err
	}
	if b != 0x0B {
		return nil, fmt.Errorf("got byte 0x%02X before a start block", b)
	}
	content, err := c.r.ReadBytes(0x1C)
	if err != nil {
		return nil, fmt.Errorf("reading frame: %w", err)
	}
	if cr, err := c.r.ReadByte(); err != nil || cr != 0x0D {
		return nil, fmt.Errorf("frame not ended by 0x1C 0x0D (got 0x%02X, %v)", cr, err)
	}
	return content[:len(content)-1], nil
}

// roundTrip sends msg framed and returns the ACK.
func (c *mllpPeer) roundTrip(msg []byte, timeout time.Duration) (*ackInfo, error) {
	if err := c.write(frame(msg), timeout); err != nil {
		return nil, fmt.Errorf("writing: %w", err)
	}
	raw, err := c.readFrame(timeout)
	if err != nil {
		return nil, fmt.Errorf("reading ACK: %w", err)
	}
	return parseACK(raw)
}

// ackInfo is what the tests read from an ACK.
type ackInfo struct {
	Raw      []byte
	Code     string   // MSA-1
	MSA2     string   // MSA-2
	ERRCodes []string // HL7 table 0357 codes of every ERR segment (ERR-3.1, or ERR-1.4.1 before v2.5)
	ERR      string   // the ERR segments as sent, for failure messages
}

func parseACK(raw []byte) (*ackInfo, error) {
	m, err := hl7.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("ACK does not parse (%v): %q", err, raw)
	}
	a := &ackInfo{Raw: raw, Code: m.Value("MSA-1"), MSA2: m.Value("MSA-2")}
	if a.Code == "" {
		return nil, fmt.Errorf("ACK without MSA-1: %q", raw)
	}
	// ERR segments, read with the ACK's own delimiters so this does not depend on the codec's
	// path syntax for subcomponents.
	if len(raw) < 8 {
		return a, nil
	}
	fieldSep, compSep, subSep := raw[3], raw[4], raw[7]
	var errSegs []string
	for _, seg := range bytes.Split(raw, []byte{'\r'}) {
		if !bytes.HasPrefix(seg, []byte("ERR")) || len(seg) < 4 || seg[3] != fieldSep {
			continue
		}
		errSegs = append(errSegs, string(seg))
		fields := bytes.Split(seg, []byte{fieldSep})
		// v2.5+: ERR-3 = code^text^table.
		if len(fields) > 3 && len(fields[3]) > 0 {
			a.ERRCodes = append(a.ERRCodes, string(bytes.Split(fields[3], []byte{compSep})[0]))
			continue
		}
		// Before v2.5: ERR-1 = segment^sequence^field^code&text&table.
		if len(fields) > 1 {
			comps := bytes.Split(fields[1], []byte{compSep})
			if len(comps) > 3 {
				a.ERRCodes = append(a.ERRCodes, string(bytes.Split(comps[3], []byte{subSep})[0]))
			}
		}
	}
	a.ERR = strings.Join(errSegs, " | ")
	return a, nil
}

func (a *ackInfo) hasERRCode(code string) bool {
	for _, c := range a.ERRCodes {
		if c == code {
			return true
		}
	}
	return false
}

func (a *ackInfo) String() string {
	if a == nil {
		return "<no ACK>"
	}
	return fmt.Sprintf("MSA-1=%s MSA-2=%q ERR=%q", a.Code, a.MSA2, a.ERR)
}

// ---------------------------------------------------------------------------------------------
// Messages the tests write (synthetic: no real patient data)

// ormMessage is a valid ORM^O01 (v2.3, original mode) from E2E/facility with control ID id.
func ormMessage(facility, id string) []byte {
	return []byte(strings.Join([]string{
		`MSH|^~\&|E2E|` + facility + `|FERRY|FERRY|20261127083000||ORM^O01|` + id + `|P|2.3`,
		`PID|1||MRN` + id + `^^^` + facility + `^MR||TEST^PATIENT||19800101|F`,
		`ORC|NW|PO` + id + `|||SC`,
		`OBR|1|PO` + id + `||71046^XR CHEST 2V^CPT`,
	}, "\r") + "\r")
}

// ---------------------------------------------------------------------------------------------
// The HTTP API

// apiMessage is one message of the admin API (GET /api/v1/messages, /api/v1/messages/{id}).
type apiMessage struct {
	ID                 int64           `json:"id"`
	Channel            string          `json:"channel"`
	ReceivedAt         time.Time       `json:"received_at"`
	PeerAddr           string          `json:"peer_addr"`
	SendingApplication string          `json:"sending_application"`
	SendingFacility    string          `json:"sending_facility"`
	MessageType        string          `json:"message_type"`
	ControlID          string          `json:"control_id"`
	Version            string          `json:"version"`
	Status             string          `json:"status"`
	ACKCode            string          `json:"ack_code"`
	Error              string          `json:"error"`
	DuplicateOf        int64           `json:"duplicate_of"`
	Size               int             `json:"size"`
	Raw                *string         `json:"raw"`
	RawBase64          string          `json:"raw_base64"`
	Parsed             json.RawMessage `json:"parsed"`
	ParseError         string          `json:"parse_error"`
	ACK                string          `json:"ack"`
	MappingVersion     string          `json:"mapping_version"`
	ProcessingError    string          `json:"processing_error"`
	Reprocessing       []struct {
		State          string `json:"state"`
		Reason         string `json:"reason"`
		MappingVersion string `json:"mapping_version"`
		Error          string `json:"error"`
	} `json:"reprocessing"`
}

type apiMessageList struct {
	Messages []apiMessage `json:"messages"`
	Next     string       `json:"next"`
}

var httpClient = &http.Client{Timeout: 30 * time.Second}

// get fetches path from the process's HTTP listener with the admin token and decodes the JSON
// body into out (if not nil); it returns the status code.
func (p *ferryProcess) get(t *testing.T, path string, out any) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+p.HTTPAddr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", path, err)
	}
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("GET %s: decoding %q: %v", path, body, err)
		}
	}
	return resp.StatusCode
}

// post sends body as JSON to path with the admin token and returns the status code.
func (p *ferryProcess) post(t *testing.T, path string, body any) int {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, "http://"+p.HTTPAddr+path, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		t.Logf("POST %s: HTTP %d: %s", path, resp.StatusCode, msg)
	}
	return resp.StatusCode
}

// messages returns every message matching query (url.Values encoded), following `next`.
func (p *ferryProcess) messages(t *testing.T, query url.Values) []apiMessage {
	t.Helper()
	q := url.Values{}
	for k, v := range query {
		q[k] = v
	}
	if q.Get("limit") == "" {
		q.Set("limit", "1000")
	}
	path := "/api/v1/messages?" + q.Encode()
	var all []apiMessage
	for pages := 0; path != ""; pages++ {
		if pages > 10000 {
			t.Fatal("paging through the message log does not end")
		}
		var page apiMessageList
		if code := p.get(t, path, &page); code != http.StatusOK {
			t.Fatalf("GET %s: status %d", path, code)
		}
		all = append(all, page.Messages...)
		path = page.Next
	}
	return all
}

// message returns one message with its bytes and ACK.
func (p *ferryProcess) message(t *testing.T, id int64) apiMessage {
	t.Helper()
	var m apiMessage
	if code := p.get(t, "/api/v1/messages/"+strconv.FormatInt(id, 10), &m); code != http.StatusOK {
		t.Fatalf("GET /api/v1/messages/%d: status %d", id, code)
	}
	return m
}

// byControlID returns the stored messages with control ID id.
func (p *ferryProcess) byControlID(t *testing.T, id string) []apiMessage {
	t.Helper()
	return p.messages(t, url.Values{"control_id": {id}})
}

// rawBytes decodes a message's raw_base64.
func (m apiMessage) rawBytes(t *testing.T) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(m.RawBase64)
	if err != nil {
		t.Fatalf("message %d: raw_base64: %v", m.ID, err)
	}
	return b
}

// metric returns the sum of every sample of the named series on /metrics (0 when absent).
func (p *ferryProcess) metric(t *testing.T, name string) float64 {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+p.HTTPAddr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testAdminToken) // metrics are for admins (issue 12)
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: status %d", resp.StatusCode)
	}
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading /metrics: %v", err)
	}
	return sum
}

// runFerry runs a ferry command to completion and returns its output and exit status.
func runFerry(t *testing.T, dir string, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ferryBin, args...)
	cmd.Dir = dir
	cmd.Env = filteredEnv("FERRY_DATABASE_URL", "FERRY_ADMIN_TOKEN")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		status = ee.ExitCode()
	default:
		t.Fatalf("running ferry %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errOut.String(), status
}

// ---------------------------------------------------------------------------------------------
// Tests

func TestVersion(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"version", "--version", "-v"} {
		t.Run(arg, func(t *testing.T) {
			t.Parallel()
			out, errOut, status := runFerry(t, t.TempDir(), arg)
			if status != 0 {
				t.Fatalf("exit status %d, stderr %q", status, errOut)
			}
			if !regexp.MustCompile(`^ferry \S+\n$`).MatchString(out) {
				t.Errorf("stdout %q, want one line \"ferry <version>\"", out)
			}
		})
	}
	t.Run("serve prints the same version", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		out, _, _ := runFerry(t, dir, "version")
		p := startFerry(t, "sqlite:"+filepath.Join(dir, "ferry.db"), dir, serveOptions{})
		if want := "ferry " + p.Version + "\n"; out != want {
			t.Errorf("ferry version printed %q, serve's line names %q", out, p.Version)
		}
	})
	t.Run("help exits 0 everywhere", func(t *testing.T) {
		t.Parallel()
		for _, args := range [][]string{{"--help"}, {"help"}, {"serve", "--help"}, {"migrate", "-h"},
			{"send", "--help"}, {"inspect", "--help"}, {"users", "--help"}, {"users", "add", "--help"},
			{"tokens", "--help"}, {"tokens", "create", "--help"}, {"audit", "--help"}, {"bench", "--help"},
			{"mappings", "--help"}, {"mappings", "lint", "--help"}, {"deliveries", "--help"}} {
			if _, errOut, status := runFerry(t, t.TempDir(), args...); status != 0 {
				t.Errorf("ferry %s: exit status %d, want 0 (stderr %q)", strings.Join(args, " "), status, errOut)
			}
		}
		if _, _, status := runFerry(t, t.TempDir(), "users"); status != 2 {
			t.Errorf("ferry users with no subcommand: exit status %d, want 2", status)
		}
	})
	t.Run("unknown command", func(t *testing.T) {
		t.Parallel()
		_, errOut, status := runFerry(t, t.TempDir(), "frobnicate")
		if status != 2 || !strings.Contains(errOut, `unknown command "frobnicate"`) {
			t.Errorf("exit status %d, stderr %q; want 2 and the unknown command named", status, errOut)
		}
	})
}

func TestMigrateCommand(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, db, dir string) {
		for i := 1; i <= 2; i++ { // the second run finds nothing to do: migrations are idempotent
			out, errOut, status := runFerry(t, dir, "migrate", "--db", db)
			if status != 0 {
				t.Fatalf("run %d: ferry migrate: exit status %d, stderr:\n%s", i, status, errOut)
			}
			// The first run says what it applied; the second that there was nothing to do.
			want := regexp.MustCompile(`: applied \d+ migrations \(1 to \d+\); now at schema version \d+\n$`)
			if i == 2 {
				want = regexp.MustCompile(`was already up to date \(schema version \d+\)\n$`)
			}
			if !want.MatchString(out) {
				t.Errorf("run %d: stdout %q, want it to match %s", i, out, want)
			}
			if strings.Contains(out+errOut, testAdminToken) {
				t.Errorf("run %d: output shows a secret", i)
			}
		}
		// The migrated store serves.
		p := startFerry(t, db, dir, serveOptions{})
		if code := p.get(t, "/readyz", nil); code != http.StatusOK {
			t.Errorf("/readyz on the migrated store: %d", code)
		}
	})
	t.Run("bad database URL", func(t *testing.T) {
		t.Parallel()
		_, errOut, status := runFerry(t, t.TempDir(), "migrate", "--db", "mysql://u:secret@host/db")
		if status != 1 || !strings.Contains(errOut, "database:") {
			t.Errorf("exit status %d, stderr %q; want 1 and a message naming database", status, errOut)
		}
		if strings.Contains(errOut, "secret") {
			t.Errorf("stderr shows the password: %q", errOut)
		}
	})
}

func TestInspect(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "order.hl7")
	// LF segment ends, as files often have them.
	msg := strings.ReplaceAll(string(ormMessage("INSPECT", "INS0001")), "\r", "\n")
	if err := os.WriteFile(good, []byte(msg), 0o600); err != nil {
		t.Fatal(err)
	}
	// An MSH, then a segment whose ID is not three capitals or digits: the message does not parse.
	broken := filepath.Join(dir, "broken.hl7")
	if err := os.WriteFile(broken, []byte("MSH|^~\\&|E2E|INSPECT|FERRY|FERRY|20261127083000||ORM^O01|INS0002|P|2.3\rP!D|1\r"), 0o600); err != nil {
		t.Fatal(err)
	}
	notHL7 := filepath.Join(dir, "not-hl7.txt")
	if err := os.WriteFile(notHL7, []byte("this is not HL7\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("tree", func(t *testing.T) {
		t.Parallel()
		out, errOut, status := runFerry(t, dir, "inspect", good)
		if status != 0 {
			t.Fatalf("exit status %d, stderr %q", status, errOut)
		}
		for _, want := range []string{"# " + good + " [1]", "MSH", "PID", "ORC", "OBR", "INS0001", "71046"} {
			if !strings.Contains(out, want) {
				t.Errorf("tree lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("json", func(t *testing.T) {
		t.Parallel()
		out, errOut, status := runFerry(t, dir, "inspect", "--json", good)
		if status != 0 {
			t.Fatalf("exit status %d, stderr %q", status, errOut)
		}
		var got []struct {
			File    string          `json:"file"`
			Index   int             `json:"index"`
			Message json.RawMessage `json:"message"`
			Error   string          `json:"error"`
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("--json output does not decode: %v\n%s", err, out)
		}
		if len(got) != 1 || got[0].File != good || got[0].Index != 1 || got[0].Error != "" {
			t.Fatalf("--json: %+v, want one message of %s without error", got, good)
		}
		var tree any
		if err := json.Unmarshal(got[0].Message, &tree); err != nil || tree == nil {
			t.Fatalf("message tree does not decode: %v: %s", err, got[0].Message)
		}
		if !bytes.Contains(got[0].Message, []byte("INS0001")) || !bytes.Contains(got[0].Message, []byte("OBR")) {
			t.Errorf("message tree lacks MSH-10 or OBR: %s", got[0].Message)
		}
	})
	t.Run("unparsable message exits 1", func(t *testing.T) {
		t.Parallel()
		out, _, status := runFerry(t, dir, "inspect", "--json", good, broken)
		if status != 1 {
			t.Errorf("exit status %d, want 1", status)
		}
		var got []struct {
			File  string `json:"file"`
			Error string `json:"error"`
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("--json output does not decode: %v\n%s", err, out)
		}
		if len(got) != 2 || got[0].Error != "" || got[1].File != broken || !strings.Contains(got[1].Error, "segment 2") {
			t.Errorf("--json: %+v, want the good message, then an error at segment 2 of %s", got, broken)
		}
	})
	t.Run("not HL7 exits 1", func(t *testing.T) {
		t.Parallel()
		_, errOut, status := runFerry(t, dir, "inspect", notHL7)
		if status != 1 || !strings.Contains(errOut, notHL7) {
			t.Errorf("exit status %d, stderr %q; want 1 and the file named", status, errOut)
		}
	})
	t.Run("no file", func(t *testing.T) {
		t.Parallel()
		if _, _, status := runFerry(t, dir, "inspect"); status != 2 {
			t.Errorf("exit status %d, want 2 (usage)", status)
		}
	})
}

func TestSendCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := startFerry(t, "sqlite:"+filepath.Join(dir, "ferry.db"), dir, serveOptions{})
	id := "S" + randomHex(4)

	write := func(name string, msg []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, msg, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	f1 := write("one.hl7", ormMessage("SENDCMD", id+"-1"))
	// CRLF segment ends and two messages in one file.
	two := string(ormMessage("SENDCMD", id+"-2")) + string(ormMessage("SENDCMD", id+"-3"))
	f2 := write("two.hl7", []byte(strings.ReplaceAll(two, "\r", "\r\n")))
	// VXU is not accepted on the default channel: AR with ERR 200.
	vxu := strings.Replace(string(ormMessage("SENDCMD", id+"-4")), "ORM^O01", "VXU^V04", 1)
	f3 := write("vxu.hl7", []byte(vxu))

	t.Run("accepted", func(t *testing.T) {
		out, errOut, status := runFerry(t, dir, "send", "--to", p.MLLPAddr, "--no-progress", f1, f2)
		if status != 0 {
			t.Fatalf("exit status %d; stdout:\n%s\nstderr:\n%s", status, out, errOut)
		}
		want := fmt.Sprintf("%s\t%s-1\tAA\n%s\t%s-2\tAA\n%s\t%s-3\tAA\n", f1, id, f2, id, f2, id)
		if out != want {
			t.Errorf("stdout:\n%q\nwant:\n%q", out, want)
		}
		for i := 1; i <= 3; i++ {
			got := p.byControlID(t, fmt.Sprintf("%s-%d", id, i))
			if len(got) != 1 || got[0].Status != "accepted" {
				t.Errorf("%s-%d stored as %+v, want once, accepted", id, i, got)
			}
		}
		// Segment ends are sent as CR.
		if got := p.byControlID(t, id+"-2"); len(got) == 1 {
			raw := p.message(t, got[0].ID).rawBytes(t)
			if bytes.Contains(raw, []byte("\n")) {
				t.Errorf("message sent with LF in it: %q", raw)
			}
		}
	})
	t.Run("rejected exits 1", func(t *testing.T) {
		out, errOut, status := runFerry(t, dir, "send", "--to", p.MLLPAddr, "--no-progress", f1, f3)
		if status != 1 {
			t.Fatalf("exit status %d, want 1; stdout:\n%s\nstderr:\n%s", status, out, errOut)
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) != 2 {
			t.Fatalf("stdout %q, want two lines", out)
		}
		// f1 again: a duplicate, answered AA like its original.
		if lines[0] != fmt.Sprintf("%s\t%s-1\tAA", f1, id) {
			t.Errorf("line 1 %q, want the duplicate answered AA", lines[0])
		}
		if !strings.HasPrefix(lines[1], fmt.Sprintf("%s\t%s-4\tAR\t", f3, id)) {
			t.Errorf("line 2 %q, want %s, %s-4, AR and the ERR text", lines[1], f3, id)
		}
		if !strings.Contains(errOut, "1 of 2 messages not accepted") {
			t.Errorf("stderr %q, want the count of messages not accepted", errOut)
		}
		if got := p.byControlID(t, id+"-4"); len(got) != 1 || got[0].Status != "rejected" || got[0].ACKCode != "AR" {
			t.Errorf("%s-4 stored as %+v, want once, rejected, AR", id, got)
		}
		if got := p.byControlID(t, id+"-1"); len(got) != 2 {
			t.Errorf("%s-1 stored %d times, want 2 (original and duplicate)", id, len(got))
		}
	})
	t.Run("no peer exits 1", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close() // nobody listens there now
		_, _, status := runFerry(t, dir, "send", "--to", addr, "--timeout", "2s", "--no-progress", f1)
		if status != 1 {
			t.Errorf("exit status %d, want 1", status)
		}
	})
	t.Run("usage", func(t *testing.T) {
		if _, _, status := runFerry(t, dir, "send", f1); status != 2 {
			t.Errorf("without --to: exit status %d, want 2", status)
		}
	})
}

func TestServeGracefulShutdown(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: -short")
	}
	t.Parallel()
	forEachStore(t, func(t *testing.T, db, dir string) {
		p := startFerry(t, db, dir, serveOptions{})
		const conns = 4
		run := "G" + randomHex(3)
		var (
			mu      sync.Mutex
			acked   = map[string]bool{}
			unacked []string // in flight when the server closed the connection
			wg      sync.WaitGroup
			// busy closes once 100 messages are answered AA: SIGTERM then comes with every
			// connection in full flow, however fast the machine.
			busy = make(chan struct{})
		)
		const drainAfterACKs = 100
		var sent atomic.Int64
		for c := range conns {
			peer := dialMLLP(t, p.MLLPAddr)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; ; n++ {
					id := fmt.Sprintf("%s-%d-%d", run, c, n)
					sent.Add(1)
					ack, err := peer.roundTrip(ormMessage("GRACEFUL", id), 10*time.Second)
					if err != nil { // the server closed the connection while draining
						mu.Lock()
						unacked = append(unacked, id)
						mu.Unlock()
						return
					}
					if ack.Code != "AA" || ack.MSA2 != id {
						t.Errorf("%s: %v, want AA", id, ack)
						return
					}
					mu.Lock()
					acked[id] = true
					if len(acked) == drainAfterACKs {
						close(busy)
					}
					mu.Unlock()
				}
			}()
		}
		select {
		case <-busy:
		case <-time.After(hangGuard): // only guards against hanging
			t.Fatalf("fewer than %d messages answered AA after %v", drainAfterACKs, hangGuard)
		}
		start := time.Now()
		p.Stop() // SIGTERM; fails the test unless exit 0
		drain := time.Since(start)
		wg.Wait()
		if len(acked) == 0 {
			t.Fatal("no message was acknowledged before SIGTERM")
		}
		t.Logf("%d messages AA'd of %d sent before the drain (drain took %v)", len(acked), sent.Load(), drain.Round(time.Millisecond))

		// Every AA'd message is in the store once, accepted.
		p2 := startFerry(t, db, dir, serveOptions{})
		counts := map[string][]apiMessage{}
		for _, m := range p2.messages(t, url.Values{"sending_facility": {"GRACEFUL"}}) {
			counts[m.ControlID] = append(counts[m.ControlID], m)
		}
		lost := 0
		for id := range acked {
			if got := counts[id]; len(got) != 1 || got[0].Status != "accepted" {
				lost++
				if lost <= 10 {
					t.Errorf("AA'd %s stored as %+v, want once, accepted", id, got)
				}
			}
		}
		if lost > 0 {
			t.Errorf("%d of %d AA'd messages not stored exactly once as accepted", lost, len(acked))
		}
		// A message sent as the connection closed got no ACK: it may be stored, but only once.
		for _, id := range unacked {
			if got := counts[id]; len(got) > 1 || (len(got) == 1 && got[0].Status != "accepted") {
				t.Errorf("un-ACKed %s stored as %v, want at most once, accepted", id, statuses(got))
			}
		}
	})
}
