package main

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhealth/ferry/adapters/delivery"
	"github.com/ferryhealth/ferry/adapters/mllp"
	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/outbox"
	"github.com/ferryhealth/ferry/engine/patientid"
	"github.com/ferryhealth/ferry/engine/turnaround"
	"github.com/ferryhealth/ferry/mappings"
)

// Config is ferry serve's configuration: a YAML file (--config), then FERRY_* environment
// variables, then flags, each overriding the one before. Every field has a working default, so
// `ferry serve` with nothing runs on the embedded store under ./ferry-data/.
type Config struct {
	// Database selects the store: "sqlite:PATH" (embedded, the default
	// sqlite:./ferry-data/ferry.db) or "postgres://…" (production). Env: FERRY_DATABASE_URL.
	Database string `yaml:"database"`
	// DataDir holds the embedded database and generated secrets (default ./ferry-data).
	DataDir string `yaml:"data_dir"`
	Listen  Listen `yaml:"listen"`
	// AdminToken is the bearer token for /api/v1/ and /fhir/r4/. Env: FERRY_ADMIN_TOKEN. Empty:
	// a random token is generated once and kept in DATA_DIR/admin-token (mode 0600).
	AdminToken string `yaml:"admin_token"`
	// AdminTokenFile is a file holding the admin token (a secrets mount); env:
	// FERRY_ADMIN_TOKEN_FILE. A token has at least 32 random bytes' worth of characters (43
	// base64url or 64 hex) or Ferry refuses to start. DatabasePasswordFile holds the PostgreSQL
	// password, merged into database; env: FERRY_DATABASE_PASSWORD_FILE, or the password itself
	// in FERRY_DATABASE_PASSWORD (security.go, resolveSecrets).
	AdminTokenFile       string     `yaml:"admin_token_file"`
	DatabasePasswordFile string     `yaml:"database_password_file"`
	MLLP                 MLLPConfig `yaml:"mllp"`
	HTTP                 HTTPConfig `yaml:"http"`
	// Commit tunes how inbound messages are grouped into store transactions.
	Commit CommitConfig `yaml:"commit"`
	// Facilities are the hospitals that send to Ferry, each known by its MSH-4.
	Facilities []Facility `yaml:"facilities"`
	// Mappings says where the site's mappings and code tables are (docs/mappings.md).
	Mappings MappingsConfig `yaml:"mappings"`
	// DICOM tunes the DICOM listener's storage (C-STORE) and who may connect.
	DICOM DICOMConfig `yaml:"dicom"`
	// Delivery tunes how reports are sent to the facilities' destinations (docs/reports.md).
	Delivery DeliveryConfig `yaml:"delivery"`
	// Linking tunes how studies are linked to patients and orders (docs/dicom.md, "Linking").
	Linking LinkingConfig `yaml:"linking"`
	// Sessions and SSO: web sessions' timeouts and single sign-on (people.go).
	Sessions SessionsConfig `yaml:"sessions"`
	SSO      *SSOConfig     `yaml:"sso"`
	// BreakGlassFor is how long a physician's break-glass access to a patient who is not theirs
	// lasts (docs/security.md, "Break-glass"; default 1h).
	BreakGlassFor time.Duration `yaml:"break_glass_for"`
	// Turnaround sets, per order priority (stat, asap, urgent, routine), when the preliminary
	// and the final report are due, counted from the study's completion (docs/reports.md,
	// "Turnaround"). A priority or field left out keeps its default (turnaround.DefaultSLAs).
	Turnaround map[string]TurnaroundSLA `yaml:"turnaround"`
	// Reports tunes critical results (docs/reports.md, "Critical results").
	Reports ReportsConfig `yaml:"reports"`
	// ReadingGroup is the radiology group that reads the studies: the performer of every
	// report (docs/reports.md). Unset: reports name no performer but what the reading
	// platform sends.
	ReadingGroup ReadingGroup `yaml:"reading_group"`
	// LogLevel is debug, info, warn or error (default info).
	LogLevel string `yaml:"log_level"`
	// LogFormat is text (default: key=value lines) or json (one object per line); flag
	// --log-format.
	LogFormat string `yaml:"log_format"`
}

// ReadingGroup names the reading group: its name and, optionally, an identifier (e.g. its NPI:
// system http://hl7.org/fhir/sid/us-npi).
type ReadingGroup struct {
	Name   string `yaml:"name"`
	System string `yaml:"system"`
	Value  string `yaml:"value"`
}

// performer is the reading group as DiagnosticReport.performer takes it (a Reference by
// identifier and display: the group is no resource of Ferry's), or nil.
func (c *Config) performer() map[string]any {
	g := c.ReadingGroup
	if g.Name == "" && g.Value == "" {
		return nil
	}
	ref := map[string]any{"type": "Organization"}
	if g.Name != "" {
		ref["display"] = g.Name
	}
	if g.Value != "" {
		ref["identifier"] = map[string]any{"system": g.System, "value": g.Value}
	}
	return ref
}

// Listen holds the listeners' addresses.
type Listen struct {
	MLLP         string `yaml:"mllp"`           // default ":2575"
	HTTP         string `yaml:"http"`           // default ":8080"
	DICOM        string `yaml:"dicom"`          // default ":11112"
	DICOMAETitle string `yaml:"dicom_ae_title"` // default "FERRY"
	DICOMTLS     string `yaml:"dicom_tls"`      // DICOM TLS; default ":2762" when dicom.tls is set
}

// MLLPConfig tunes the MLLP listener.
type MLLPConfig struct {
	// MaxMessageSize caps one message in bytes (default 16 MiB); a larger one is answered AR.
	MaxMessageSize int `yaml:"max_message_size"`
	// MaxConnections caps concurrent connections (default 1000).
	MaxConnections int `yaml:"max_connections"`
	// ReadTimeout bounds receiving one whole frame once it has started (default 30s).
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// IdleTimeout closes a connection with no frame in progress for this long (default 10m).
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// AcceptMessageTypes lists accepted MSH-9.1 codes (default ADT, ORM, OMI, OMG, ORU).
	AcceptMessageTypes []string `yaml:"accept_message_types"`
	// MaxSegments caps the segments of one message, MSH included (default 10,000), and
	// MaxRepetitions the repetitions of any one field (default 1,000): a message beyond either is
	// answered AR with ERR 207 naming the segment and field, and stored rejected (issue 17).
	MaxSegments    int `yaml:"max_segments"`
	MaxRepetitions int `yaml:"max_repetitions"`
	// Ack says when a mapped message (an order, an ADT) is acknowledged: on_commit (default)
	// once its resources are committed, so AA means processed and AE says what is wrong; or
	// on_receipt once it is stored, processing it afterwards (a failure is then recorded on the
	// message for the analyst, not sent back). docs/orders.md.
	Ack string   `yaml:"ack"`
	TLS TLSFiles `yaml:"tls"`
	// Limits against exhaustion (issue 17, docs/mllp.md); zero values take the defaults.
	// MaxConnectionsPerAddress caps connections from one source IP (default 50; -1: no cap,
	// behind a TCP load balancer). FirstFrameTimeout closes a connection that has sent no frame
	// (default 30s). HandshakeTimeout bounds a TLS handshake, which takes no slot until it is
	// done (default 10s). MaxRejectedBytesPerHour caps the bytes of rejected messages kept per
	// node and hour (default 64 MiB; -1: no cap); beyond it they are stored without their bytes.
	// MaxProcessingBytes bounds the bytes of large messages (1 MiB or more) being mapped,
	// validated and committed at once (default 32 MiB; -1: no bound); the others wait their turn.
	MaxConnectionsPerAddress int           `yaml:"max_connections_per_address"`
	FirstFrameTimeout        time.Duration `yaml:"first_frame_timeout"`
	HandshakeTimeout         time.Duration `yaml:"handshake_timeout"`
	MaxRejectedBytesPerHour  int64         `yaml:"max_rejected_bytes_per_hour"`
	MaxProcessingBytes       int64         `yaml:"max_processing_bytes"`
}

// CommitConfig tunes the group committer (engine.GroupCommitOptions), which turns the messages
// of all connections into store transactions; each message is ACKed once its transaction has
// committed. The defaults suit both stores on one machine; see docs/performance.md.
type CommitConfig struct {
	// Workers is the number of transactions in flight at once (default 1). More can help when
	// PostgreSQL is far away (each commit waits a network round trip); on one machine, and on
	// SQLite (one writer), one worker with Linger makes bigger batches and is faster.
	Workers int `yaml:"workers"`
	// MaxBatch caps the messages in one transaction (default 64).
	MaxBatch int `yaml:"max_batch"`
	// EffectWorkers is the number of transactions that store orders with their resources in
	// flight at once (default 4): they wait on the database between a dozen statements each.
	EffectWorkers int `yaml:"effect_workers"`
	// Linger is how long a batch may wait for messages it expects, such as the next message of
	// each sender its last commit answered (default 500µs; 0s: a batch never waits).
	Linger *time.Duration `yaml:"linger"`
	// Timeout bounds one message's commit (default 4s): past it the message is answered AE
	// (ERR 207) and the sender resends, so a database that hangs (frozen, cut off) never leaves
	// a sender without an answer; a commit that ends later is recognised by the duplicate
	// check when the message comes again (docs/operations.md).
	Timeout time.Duration `yaml:"timeout"`
}

// HTTPConfig tunes the HTTP listener.
type HTTPConfig struct {
	TLS TLSFiles `yaml:"tls"`
	// PublicURL is where clients reach Ferry's HTTP listener, e.g. https://ferry.example.org:
	// FHIR resources point there (the DICOMweb Endpoint of every ImagingStudy). Default:
	// http(s)://localhost:PORT of listen.http.
	PublicURL string `yaml:"public_url"`
	// Limits against exhaustion (issue 17, docs/operations.md); zero values take the defaults.
	// ReadTimeout bounds reading a request, body included (default 1m), WriteTimeout handling it
	// and writing the answer (default 2m); DICOMwebTimeout replaces both for /dicomweb, whose
	// studies may take long to send or fetch (default 30m). ReadHeaderTimeout bounds the request
	// line and headers (default 10s), IdleTimeout a kept-alive connection between requests
	// (default 2m). MaxHeaderBytes caps a request's headers (default 64 KiB). MaxConnections caps
	// connections in all (default 1000) and MaxConnectionsPerAddress from one source IP (default
	// 100; -1: no cap, behind a load balancer); a connection over either is closed at once.
	// AnswerTimeout bounds the answer to a GET or HEAD outside /dicomweb and /debug/pprof
	// (default 15s): one whose reads the database does not answer gets 503 then (issue 18).
	ReadTimeout              time.Duration `yaml:"read_timeout"`
	AnswerTimeout            time.Duration `yaml:"answer_timeout"`
	WriteTimeout             time.Duration `yaml:"write_timeout"`
	DICOMwebTimeout          time.Duration `yaml:"dicomweb_timeout"`
	ReadHeaderTimeout        time.Duration `yaml:"read_header_timeout"`
	IdleTimeout              time.Duration `yaml:"idle_timeout"`
	MaxHeaderBytes           int           `yaml:"max_header_bytes"`
	MaxConnections           int           `yaml:"max_connections"`
	MaxConnectionsPerAddress int           `yaml:"max_connections_per_address"`
	// TrustedProxies are the CIDRs (or single addresses) of the load balancers and reverse
	// proxies in front of Ferry: only from them is X-Forwarded-For / X-Real-IP believed for the
	// audited client address; from anyone else the TCP peer is the client (default: none).
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// TLSFiles names PEM files. Cert and Key enable TLS; ClientCA also requires client certificates
// signed by it (mutual TLS).
type TLSFiles struct {
	Cert     string `yaml:"cert"`
	Key      string `yaml:"key"`
	ClientCA string `yaml:"client_ca"`
}

// Enabled reports whether TLS is configured.
func (t TLSFiles) Enabled() bool { return t.Cert != "" || t.Key != "" }

// MappingsConfig locates the mappings. The shipped ones are always there; Dir overrides them file
// by file, and a facility's Mappings directory overrides both for that facility's messages.
type MappingsConfig struct {
	// Dir holds the site's mappings (*.yaml), code tables (tables/*.yaml) and partials
	// (partials/*.yaml); "" for the shipped mappings alone.
	Dir string `yaml:"dir"`
	// ReloadInterval is how often Dir and the facilities' directories are checked for changes
	// (default 2s; 0s turns hot reload off). A change is loaded and checked before it is put in
	// force; a broken edit is logged and the previous mappings stay.
	ReloadInterval *time.Duration `yaml:"reload_interval"`
}

// DICOMConfig tunes DICOM storage (docs/dicom.md).
type DICOMConfig struct {
	// StorageDir holds received instances as DICOM Part 10 files, STUDY/SERIES/SOP.dcm (default
	// DATA_DIR/dicom). Its .incoming directory takes instances while they arrive.
	StorageDir string `yaml:"storage_dir"`
	// MaxInstanceSize caps one instance in bytes (default 2 GiB); a larger one is refused A700.
	MaxInstanceSize int64 `yaml:"max_instance_size"`
	// AcceptCallingAETitles, when not empty, lists the calling AE titles allowed to associate,
	// from any address; any other is rejected. Older form of Peers (not both).
	AcceptCallingAETitles []string `yaml:"accept_calling_ae_titles"`
	// TLS is DICOM TLS, served on listen.dicom_tls (cmd/ferry/dicom.go, docs/dicom.md).
	TLS DICOMTLS `yaml:"tls"`
	// Peers are the known callers: AE titles bound to addresses and/or client certificates,
	// with their operations. A listed title from elsewhere is rejected.
	Peers []DICOMPeer `yaml:"peers"`
	// UnknownCallers: allow or refuse per operation (echo, find_worklist, store) for callers not
	// among Peers. Default with peers: echo allow, the rest refuse; with none: all allow (demo).
	UnknownCallers DICOMUnknownCallers `yaml:"unknown_callers"`
	// Limits (defaults in adapters/dimse): connections (200), per source address (20; -1: no
	// cap), the largest PDU received (131072), memory for one instance's header (16 MiB),
	// ARTIM (30s: to A-ASSOCIATE-RQ), idle association (1m), one PDU or message (30s), the TLS
	// handshake (10s).
	MaxConnections           int           `yaml:"max_connections"`
	MaxConnectionsPerAddress int           `yaml:"max_connections_per_address"`
	MaxPDULength             int           `yaml:"max_pdu_length"`
	MaxHeaderSize            int64         `yaml:"max_header_size"`
	ARTIMTimeout             time.Duration `yaml:"artim_timeout"`
	IdleTimeout              time.Duration `yaml:"idle_timeout"`
	ReadTimeout              time.Duration `yaml:"read_timeout"`
	HandshakeTimeout         time.Duration `yaml:"handshake_timeout"`
}

// DeliveryConfig tunes the outbox's senders. Every field has a default.
type DeliveryConfig struct {
	// Workers is how many deliveries are in flight at once (default 16 on PostgreSQL, 8 on
	// the embedded store).
	Workers int `yaml:"workers"`
	// PerDestination is how many of them may go to one destination (default half the
	// workers): a hospital whose EHR hangs holds up no other.
	PerDestination int `yaml:"per_destination"`
	// Connections is how many MLLP connections each destination gets (default 2); the order of
	// one patient's reports is kept whatever the number.
	Connections int `yaml:"connections"`
	// Timeout bounds one attempt: connecting, sending and waiting for the ACK or the HTTP
	// answer (default 30s).
	Timeout time.Duration `yaml:"timeout"`
	// RetryFirst and RetryMax bound the wait before a retry of a delivery the receiver answered
	// with an error, doubling from the first to the most (defaults 5s and 10m). This is the only
	// backoff: the MLLP connections have none of their own.
	RetryFirst time.Duration `yaml:"retry_first"`
	RetryMax   time.Duration `yaml:"retry_max"`
	// ProbeEvery is how often a destination found down (no connection, no answer) is probed
	// with a connection of its own (default 3s, at most retry_max); its deliveries wait for the
	// first probe it answers, then all go at once (docs/reports.md).
	ProbeEvery time.Duration `yaml:"probe_every"`
	// MaxAttempts sends a delivery to the dead letters after that many failures (default 0:
	// never; a receiver down for a day gets its reports when it is back).
	MaxAttempts int `yaml:"max_attempts"`
	// OnError is what an AE/CE answer (or HTTP 5xx) does: retry (default) or dead.
	OnError string `yaml:"on_error"`
	// OnReject is what an AR/CR answer (or HTTP 4xx) does: dead (default) or retry.
	OnReject string `yaml:"on_reject"`
}

// retryPolicy is the outbox.RetryPolicy the configuration names.
func (c *Config) retryPolicy() outbox.RetryPolicy {
	return outbox.RetryPolicy{First: c.Delivery.RetryFirst, Max: c.Delivery.RetryMax, MaxAttempts: c.Delivery.MaxAttempts,
		ErrorIsDead: c.Delivery.OnError == "dead", RejectRetries: c.Delivery.OnReject == "retry"}
}

// resultDestination finds a destination by the name a delivery gives it: "FACILITY/NAME".
func (c *Config) resultDestination(name string) (outbox.Destination, bool) {
	facility, dest, _ := strings.Cut(name, "/")
	for _, d := range c.resultDestinations(facility) {
		if d.Name == dest {
			return d, true
		}
	}
	return outbox.Destination{}, false
}

// LinkingConfig tunes the linker (docs/dicom.md, "Linking"). Every field has a default.
type LinkingConfig struct {
	// IdentifierRules are files of one hospital's identifier rules each (engine/patientid; the
	// example is engine/patientid/testdata/STMARYS.yaml): which issuers are one authority, how
	// a Patient ID is normalised, which systems' numbers are other identifiers of the person.
	// The tests in each file run when the configuration is loaded: one failing refuses it.
	IdentifierRules []string `yaml:"identifier_rules"`
	// Issuers is the older, shorter form of identifier rules: per IssuerOfPatientID, which
	// identifier system its patient IDs are in, prefixes to strip and leading zeros. Each
	// becomes an authority of one more set of rules, read after IdentifierRules' files.
	Issuers []IssuerConfig `yaml:"issuers"`
	// rules are IdentifierRules' files and Issuers, loaded by Validate.
	rules []*patientid.Rules
	// AutoLink is the demographic score from which a study is linked without a person (default
	// 22); Review the score from which it goes to the reconciliation worklist rather than being
	// held as unmatched (default 10); Margin the lead the best candidate needs over the next
	// (default 6).
	AutoLink float64 `yaml:"auto_link"`
	Review   float64 `yaml:"review"`
	Margin   float64 `yaml:"margin"`
	// OrderWindowBefore and OrderWindowAfter: how long before and after the study date an
	// order's date may be for rules 3 and 4 to pick it (defaults 720h and 48h).
	OrderWindowBefore time.Duration `yaml:"order_window_before"`
	OrderWindowAfter  time.Duration `yaml:"order_window_after"`
	// StudySettle is how long a study must be quiet (no new instance) before its FHIR
	// ImagingStudy is derived again (default 5s).
	StudySettle time.Duration `yaml:"study_settle"`
}

// TurnaroundSLA is one priority's SLAs, e.g. stat: {preliminary: 30m, final: 4h}; 0s is no
// limit.
type TurnaroundSLA struct {
	Preliminary *time.Duration `yaml:"preliminary"`
	Final       *time.Duration `yaml:"final"`
}

// turnaroundSLAs is the turnaround.SLAs the configuration names (after setDefaults).
func (c *Config) turnaroundSLAs() turnaround.SLAs {
	sla := turnaround.SLAs{}
	for p, s := range c.Turnaround {
		if s.Preliminary != nil && s.Final != nil {
			sla[p] = turnaround.SLA{Preliminary: *s.Preliminary, Final: *s.Final}
		}
	}
	return sla
}

// IssuerConfig is one issuer of patient IDs (an authority of engine/patientid's rules).
type IssuerConfig struct {
	Issuer             string   `yaml:"issuer"`               // IssuerOfPatientID as sent; "" for none
	System             string   `yaml:"system"`               // identifier system in Ferry; "" any
	IgnoreLeadingZeros bool     `yaml:"ignore_leading_zeros"` // 000123 = 123
	Prefixes           []string `yaml:"prefixes"`             // removed from the sent ID
}

// matchConfig is the engine.MatchConfig the configuration names.
func (c *Config) matchConfig() engine.MatchConfig {
	return engine.MatchConfig{AutoLink: c.Linking.AutoLink, Review: c.Linking.Review, Margin: c.Linking.Margin,
		OrderWindowBefore: c.Linking.OrderWindowBefore, OrderWindowAfter: c.Linking.OrderWindowAfter,
		Identifiers: c.Linking.rules}
}

// loadIdentifierRules loads linking.identifier_rules, runs the tests beside each, and turns
// linking.issuers into one more set of rules; every problem is returned, naming its file or
// entry.
func (l *LinkingConfig) loadIdentifierRules() []error {
	var errs []error
	l.rules = nil
	for _, path := range l.IdentifierRules {
		data, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("linking.identifier_rules: %w", err))
			continue
		}
		r, err := patientid.Load(data)
		if err != nil {
			errs = append(errs, fmt.Errorf("linking.identifier_rules: %s: %w", path, err))
			continue
		}
		for _, f := range r.Run() {
			errs = append(errs, fmt.Errorf("linking.identifier_rules: %s: %s", path, f))
		}
		l.rules = append(l.rules, r)
	}
	if len(l.Issuers) == 0 {
		return errs
	}
	legacy := &patientid.Rules{Facility: "linking.issuers"}
	for i, is := range l.Issuers {
		if is.System == "" {
			errs = append(errs, fmt.Errorf("linking.issuers[%d].system: required (the identifier system of the issuer's patient IDs)", i))
			continue
		}
		a := patientid.Authority{Name: "issuer " + is.Issuer, System: is.System, Default: is.Issuer == ""}
		if is.Issuer == "" {
			a.Name = "IDs sent without an issuer"
		} else {
			a.Issuers = []string{is.Issuer}
		}
		if len(is.Prefixes) > 0 {
			a.Steps = append(a.Steps, patientid.Step{StripPrefixes: is.Prefixes})
		}
		if is.IgnoreLeadingZeros {
			a.Steps = append(a.Steps, patientid.Step{DropLeadingZeros: true})
		}
		legacy.Authorities = append(legacy.Authorities, a)
	}
	if err := legacy.Check(); err != nil {
		errs = append(errs, fmt.Errorf("linking.issuers: %w", err))
	}
	l.rules = append(l.rules, legacy)
	return errs
}

// Facility is one sending hospital.
type Facility struct {
	ID              string        `yaml:"id"`
	SendingFacility string        `yaml:"sending_facility"`
	Results         []Destination `yaml:"results"`
	// Mappings is a directory of mappings, tables and partials that override the site's for
	// this facility's messages (MSH-4 = SendingFacility).
	Mappings string `yaml:"mappings"`
	// TimeZone is the hospital's time zone (an IANA name, e.g. America/Chicago): the times in
	// the messages Ferry sends it (MSH-7, OBR-7, OBR-22 …) are written in it, with their
	// offset. Default: the server's zone.
	TimeZone string         `yaml:"timezone"`
	zone     *time.Location // TimeZone, loaded by Validate
	// Senders, when set, are the only sending applications (MSH-3) this facility has, each with
	// the messages it may send and where from (docs/security.md). Unset: any application may send
	// every message type from any address (merges only with AllowMerges).
	Senders []SenderConfig `yaml:"senders"`
	// AllowMerges lets this facility send merges and identifier changes (ADT A18, A40 …; default
	// false: refused AR).
	AllowMerges bool `yaml:"allow_merges"`
	// Issuers are the assigning authorities of the facility's patient identifiers (PID-3.4
	// namespaces or identifier systems); a merge must name two patients of these (default: the
	// sending facility).
	Issuers []string `yaml:"issuers"`
}

// SenderConfig is one sending application of a facility (engine.TrustedSender).
type SenderConfig struct {
	// Application is MSH-3.1 ("" any application of the facility).
	Application string `yaml:"application"`
	// Messages it may send: orders, adt, merges, results, or a message code (MSH-9.1) accepted
	// beyond those (default: all).
	Messages []string `yaml:"messages"`
	// Addresses are the networks it sends from (CIDR, or one address; default anywhere).
	Addresses []string `yaml:"addresses"`
	// Certificates are names its client certificate must carry under mutual TLS (mllp.tls
	// client_ca): the subject DN or its CN, or a DNS, URI or email SAN (default none asked).
	Certificates []string `yaml:"certificates"`
}

// senderTrust is the engine.SenderTrust the configuration names (after Validate).
func (c *Config) senderTrust() *engine.SenderTrust {
	t := &engine.SenderTrust{}
	for _, f := range c.Facilities {
		tf := engine.TrustedFacility{SendingFacility: f.SendingFacility, AllowMerges: f.AllowMerges, Issuers: f.Issuers}
		for _, s := range f.Senders {
			ts := engine.TrustedSender{Application: s.Application, Messages: s.Messages, Certificates: s.Certificates}
			for _, a := range s.Addresses {
				if p, err := parsePrefix(a); err == nil {
					ts.Addresses = append(ts.Addresses, p)
				}
			}
			tf.Senders = append(tf.Senders, ts)
		}
		t.Facilities = append(t.Facilities, tf)
	}
	return t
}

// parsePrefix reads a network in CIDR notation, or one address as a network of its own.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// mappingsConfig is the mappings.Config the configuration names.
func (c *Config) mappingsConfig() mappings.Config {
	mc := mappings.Config{Dir: c.Mappings.Dir}
	for _, f := range c.Facilities {
		if f.Mappings != "" {
			if mc.Facilities == nil {
				mc.Facilities = map[string]string{}
			}
			mc.Facilities[f.SendingFacility] = f.Mappings
		}
	}
	return mc
}

// Destination is where a facility's reports go (docs/reports.md).
type Destination struct {
	// Name tells the facility's destinations apart (default: the kind, then kind-2, …).
	Name    string `yaml:"name"`
	Kind    string `yaml:"kind"`     // mllp or fhir
	Address string `yaml:"address"`  // host:port of the EHR's MLLP listener (mllp)
	BaseURL string `yaml:"base_url"` // the EHR's FHIR base URL (fhir)
	// Version is the ORU's HL7 version: 2.5.1 (default) or 2.3.1 (mllp).
	Version string `yaml:"version"`
	// ReceivingApplication and ReceivingFacility are the ORU's MSH-5 and MSH-6 (default: the
	// facility's sending_facility as MSH-6).
	ReceivingApplication string `yaml:"receiving_application"`
	ReceivingFacility    string `yaml:"receiving_facility"`
	// TLS secures the connection (mllp and fhir; adapters/delivery); Auth authenticates Ferry to a
	// FHIR destination: bearer token or OAuth 2.0 client credentials (fhir only).
	TLS  *delivery.TLS  `yaml:"tls"`
	Auth *delivery.Auth `yaml:"auth"`
}

// resultDestinations returns a facility's destinations as the engine takes them, by its
// sending facility (MSH-4).
func (c *Config) resultDestinations(sendingFacility string) []outbox.Destination {
	var out []outbox.Destination
	for _, f := range c.Facilities {
		if f.SendingFacility != sendingFacility {
			continue
		}
		for i, d := range f.Results {
			name := d.Name
			if name == "" {
				name = d.Kind
				if i > 0 {
					name += "-" + strconv.Itoa(i+1)
				}
			}
			out = append(out, outbox.Destination{Name: name, Kind: d.Kind, Address: d.Address, BaseURL: d.BaseURL,
				Version: cmp.Or(d.Version, "2.5.1"), ReceivingApplication: d.ReceivingApplication,
				ReceivingFacility: cmp.Or(d.ReceivingFacility, f.SendingFacility), Zone: cmp.Or(f.zone, time.Local)})
		}
	}
	return out
}

// loadConfig reads path (may be empty), applies the environment and defaults, and validates.
func loadConfig(path string) (*Config, error) {
	cfg := &Config{}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("reading config: %w", err)
		}
		if errs := decodeConfig(b, cfg); len(errs) > 0 {
			// Every problem at once: what did not decode, and what the rest fails to validate.
			rest := *cfg
			rest.setDefaults()
			if err := rest.Validate(); err != nil {
				errs = append(errs, err)
			}
			return nil, fmt.Errorf("invalid config %s:\n%w", path, errors.Join(errs...))
		}
	}
	if v := os.Getenv("FERRY_DATABASE_URL"); v != "" {
		cfg.Database = v
	}
	if v := os.Getenv("FERRY_ADMIN_TOKEN"); v != "" {
		cfg.AdminToken = v
	}
	return cfg, nil
}

// setDefaults fills every unset field.
func (c *Config) setDefaults() {
	if c.DataDir == "" {
		c.DataDir = "ferry-data"
	}
	if c.DICOM.StorageDir == "" {
		c.DICOM.StorageDir = filepath.Join(c.DataDir, "dicom")
	}
	if c.Database == "" {
		c.Database = "sqlite:" + filepath.Join(c.DataDir, "ferry.db")
	}
	if c.Listen.MLLP == "" {
		c.Listen.MLLP = ":2575"
	}
	if c.Listen.HTTP == "" {
		c.Listen.HTTP = ":8080"
	}
	if c.Listen.DICOM == "" {
		c.Listen.DICOM = ":11112"
	}
	if c.Listen.DICOMAETitle == "" {
		c.Listen.DICOMAETitle = "FERRY"
	}
	c.DICOM.setDefaults()
	if c.MLLP.MaxMessageSize == 0 {
		c.MLLP.MaxMessageSize = 16 << 20
	}
	if c.MLLP.MaxConnections == 0 {
		c.MLLP.MaxConnections = 1000
	}
	if c.MLLP.ReadTimeout == 0 {
		c.MLLP.ReadTimeout = 30 * time.Second
	}
	if c.MLLP.MaxSegments == 0 {
		c.MLLP.MaxSegments = 10_000
	}
	if c.MLLP.MaxRepetitions == 0 {
		c.MLLP.MaxRepetitions = 1_000
	}
	if c.MLLP.IdleTimeout == 0 {
		c.MLLP.IdleTimeout = 10 * time.Minute
	}
	c.setLimitDefaults()
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.Commit.Workers == 0 {
		c.Commit.Workers = 1
	}
	if c.Commit.MaxBatch == 0 {
		c.Commit.MaxBatch = 64
	}
	if c.Commit.Timeout == 0 {
		c.Commit.Timeout = engine.DefaultCommitTimeout
	}
	if c.Commit.Linger == nil {
		linger := DefaultCommitLinger
		c.Commit.Linger = &linger
	}
	if c.HTTP.PublicURL == "" {
		scheme := "http"
		if c.HTTP.TLS.Enabled() {
			scheme = "https"
		}
		host, port, err := net.SplitHostPort(c.Listen.HTTP)
		if err != nil || host == "" || host == "0.0.0.0" || host == "::" {
			host = "localhost"
		}
		c.HTTP.PublicURL = scheme + "://" + net.JoinHostPort(host, port)
	}
	if c.Delivery.Workers == 0 {
		// The embedded store has one writer: each delivery's claim and outcome are commits a
		// report's transaction waits behind, so fewer in flight keep the commit-to-ACK tail
		// short there (docs/performance.md, "A destination that is down").
		c.Delivery.Workers = 16
		if kind, _, _ := storeKind(c.Database); kind == "sqlite" {
			c.Delivery.Workers = 8
		}
	}
	if c.Delivery.Connections == 0 {
		c.Delivery.Connections = 2
	}
	if c.Delivery.PerDestination == 0 {
		c.Delivery.PerDestination = max(c.Delivery.Workers/2, 1)
	}
	if c.Delivery.Timeout == 0 {
		c.Delivery.Timeout = 30 * time.Second
	}
	if c.Linking.StudySettle == 0 {
		c.Linking.StudySettle = 5 * time.Second
	}
	if c.Mappings.ReloadInterval == nil {
		every := 2 * time.Second
		c.Mappings.ReloadInterval = &every
	}
	if c.Turnaround == nil {
		c.Turnaround = map[string]TurnaroundSLA{}
	}
	for p, d := range turnaround.DefaultSLAs() {
		s := c.Turnaround[p]
		if s.Preliminary == nil {
			s.Preliminary = &d.Preliminary
		}
		if s.Final == nil {
			s.Final = &d.Final
		}
		c.Turnaround[p] = s
	}
}

// setLimitDefaults fills the MLLP and HTTP limits against exhaustion (issue 17).
func (c *Config) setLimitDefaults() {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if c.MLLP.MaxConnectionsPerAddress == 0 {
		c.MLLP.MaxConnectionsPerAddress = mllp.DefaultMaxConnsPerAddress
	}
	def(&c.MLLP.FirstFrameTimeout, mllp.DefaultFirstFrameTimeout)
	def(&c.MLLP.HandshakeTimeout, mllp.DefaultHandshakeTimeout)
	if c.MLLP.MaxRejectedBytesPerHour == 0 {
		c.MLLP.MaxRejectedBytesPerHour = engine.DefaultRejectedBytesPerHour
	}
	if c.MLLP.MaxProcessingBytes == 0 {
		c.MLLP.MaxProcessingBytes = engine.DefaultProcessingBytes
	}
	def(&c.HTTP.ReadTimeout, time.Minute)
	def(&c.HTTP.WriteTimeout, 2*time.Minute)
	def(&c.HTTP.DICOMwebTimeout, 30*time.Minute)
	def(&c.HTTP.AnswerTimeout, DefaultAnswerTimeout)
	def(&c.HTTP.ReadHeaderTimeout, 10*time.Second)
	def(&c.HTTP.IdleTimeout, 2*time.Minute)
	if c.HTTP.MaxHeaderBytes == 0 {
		c.HTTP.MaxHeaderBytes = 64 << 10
	}
	if c.HTTP.MaxConnections == 0 {
		c.HTTP.MaxConnections = 1000
	}
	if c.HTTP.MaxConnectionsPerAddress == 0 {
		c.HTTP.MaxConnectionsPerAddress = 100
	}
}

// DefaultCommitLinger is commit.linger's default: a little more than the time a closed-loop
// sender on the same network takes to read its ACK and send again (docs/performance.md).
const DefaultCommitLinger = 500 * time.Microsecond

// validateMappings checks where the mappings are: what `ferry serve` and `ferry mappings lint`
// both refuse.
func (c *Config) validateMappings() []error {
	var errs []error
	if r := c.Mappings.ReloadInterval; r != nil && *r < 0 {
		errs = append(errs, errors.New("mappings.reload_interval: must not be negative"))
	}
	for _, name := range slices.Sorted(maps.Keys(c.mappingsConfig().Facilities)) {
		dir := c.mappingsConfig().Facilities[name]
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			errs = append(errs, fmt.Errorf("facilities (%s).mappings: %q is not a directory", name, dir))
		}
	}
	if d := c.Mappings.Dir; d != "" {
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			errs = append(errs, fmt.Errorf("mappings.dir: %q is not a directory", d))
		}
	}
	return errs
}

// Validate reports every problem at once, each naming its field.
func (c *Config) Validate() error {
	var errs []error
	if _, _, err := storeKind(c.Database); err != nil {
		errs = append(errs, fmt.Errorf("database: %w", err))
	}
	errs = append(errs, c.resolveSecrets()...)
	errs = append(errs, c.validateOutbound()...)
	errs = append(errs, c.Reports.validate()...)
	errs = append(errs, c.validateAccess()...)
	if c.MLLP.MaxMessageSize < 1024 {
		errs = append(errs, errors.New("mllp.max_message_size: must be at least 1024 bytes"))
	}
	if c.MLLP.MaxConnections < 1 {
		errs = append(errs, errors.New("mllp.max_connections: must be at least 1"))
	}
	// A path addresses at most the 1,000,000th segment or repetition (docs/hl7-paths.md).
	if c.MLLP.MaxSegments < 2 || c.MLLP.MaxSegments > 1_000_000 {
		errs = append(errs, errors.New("mllp.max_segments: must be from 2 to 1000000"))
	}
	if c.MLLP.MaxRepetitions < 1 || c.MLLP.MaxRepetitions > 1_000_000 {
		errs = append(errs, errors.New("mllp.max_repetitions: must be from 1 to 1000000"))
	}
	if c.Commit.Workers < 1 || c.Commit.Workers > 64 {
		errs = append(errs, errors.New("commit.workers: must be from 1 to 64"))
	}
	if c.Commit.MaxBatch < 1 || c.Commit.MaxBatch > 1000 {
		errs = append(errs, errors.New("commit.max_batch: must be from 1 to 1000"))
	}
	if l := c.Commit.Linger; l != nil && (*l < 0 || *l > 100*time.Millisecond) {
		errs = append(errs, errors.New("commit.linger: must be from 0s to 100ms"))
	}
	if c.Commit.Timeout < 100*time.Millisecond || c.Commit.Timeout > 10*time.Minute {
		errs = append(errs, errors.New("commit.timeout: must be from 100ms to 10m"))
	}
	switch c.MLLP.Ack {
	case "", "on_commit", "on_receipt":
	default:
		errs = append(errs, fmt.Errorf("mllp.ack: want on_commit or on_receipt, got %q", c.MLLP.Ack))
	}
	if c.DICOM.MaxInstanceSize < 0 {
		errs = append(errs, errors.New("dicom.max_instance_size: must not be negative"))
	}
	errs = append(errs, c.DICOM.validate(c.Listen.DICOMTLS)...)
	if d := c.Delivery; d.Workers < 0 || d.PerDestination < 0 || d.Connections < 0 || d.Timeout < 0 || d.RetryFirst < 0 || d.RetryMax < 0 || d.MaxAttempts < 0 || d.ProbeEvery < 0 {
		errs = append(errs, errors.New("delivery: workers, per_destination, connections, timeout, retry_first, retry_max, probe_every and max_attempts must not be negative"))
	}
	if v := c.Delivery.OnError; v != "" && v != "retry" && v != "dead" {
		errs = append(errs, fmt.Errorf("delivery.on_error: want retry or dead, got %q", v))
	}
	if v := c.Delivery.OnReject; v != "" && v != "retry" && v != "dead" {
		errs = append(errs, fmt.Errorf("delivery.on_reject: want dead or retry, got %q", v))
	}
	if u, err := url.Parse(c.HTTP.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("http.public_url: %q is not an http(s) URL", c.HTTP.PublicURL))
	}
	if _, err := c.HTTP.trustedProxies(); err != nil {
		errs = append(errs, err)
	}
	if l := c.Linking; l.AutoLink < 0 || l.Review < 0 || l.Margin < 0 || (l.AutoLink != 0 && l.Review > l.AutoLink) {
		errs = append(errs, errors.New("linking: auto_link, review and margin must not be negative, and review must not exceed auto_link"))
	}
	if l := c.Linking; l.OrderWindowBefore < 0 || l.OrderWindowAfter < 0 || l.StudySettle < 0 {
		errs = append(errs, errors.New("linking: order_window_before, order_window_after and study_settle must not be negative"))
	}
	seenIssuer := map[string]bool{}
	for i, is := range c.Linking.Issuers {
		if seenIssuer[is.Issuer] {
			errs = append(errs, fmt.Errorf("linking.issuers[%d].issuer: %q is listed twice", i, is.Issuer))
		}
		seenIssuer[is.Issuer] = true
	}
	errs = append(errs, c.Linking.loadIdentifierRules()...)
	for _, p := range slices.Sorted(maps.Keys(c.Turnaround)) {
		s := c.Turnaround[p]
		if _, ok := turnaround.DefaultSLAs()[p]; !ok {
			errs = append(errs, fmt.Errorf("turnaround.%s: not an order priority: want stat, asap, urgent or routine", p))
			continue
		}
		if (s.Preliminary != nil && *s.Preliminary < 0) || (s.Final != nil && *s.Final < 0) {
			errs = append(errs, fmt.Errorf("turnaround.%s: preliminary and final must not be negative (0s: no limit)", p))
		} else if s.Preliminary != nil && s.Final != nil && *s.Final > 0 && *s.Preliminary > *s.Final {
			errs = append(errs, fmt.Errorf("turnaround.%s: the preliminary (%s) cannot be due after the final (%s)", p, *s.Preliminary, *s.Final))
		}
	}
	errs = append(errs, c.validateMappings()...)
	for name, t := range map[string]TLSFiles{"mllp.tls": c.MLLP.TLS, "http.tls": c.HTTP.TLS} {
		if t.Enabled() && (t.Cert == "" || t.Key == "") {
			errs = append(errs, fmt.Errorf("%s: cert and key must both be set", name))
		}
		if t.ClientCA != "" && !t.Enabled() {
			errs = append(errs, fmt.Errorf("%s.client_ca: needs cert and key", name))
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log_level: %q is not debug, info, warn or error", c.LogLevel))
	}
	switch c.LogFormat {
	case "", "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log_format: %q is not text or json", c.LogFormat))
	}
	if g := c.ReadingGroup; g.Value != "" && g.System == "" || g.System != "" && g.Value == "" {
		errs = append(errs, errors.New("reading_group: system and value go together"))
	}
	seen := map[string]bool{}
	for i, f := range c.Facilities {
		if f.ID == "" {
			errs = append(errs, fmt.Errorf("facilities[%d].id: required", i))
		}
		if f.SendingFacility == "" {
			errs = append(errs, fmt.Errorf("facilities[%d].sending_facility: required", i))
		}
		if seen[f.SendingFacility] {
			errs = append(errs, fmt.Errorf("facilities[%d].sending_facility: %q listed twice", i, f.SendingFacility))
		}
		seen[f.SendingFacility] = true
		if f.TimeZone != "" {
			zone, err := time.LoadLocation(f.TimeZone)
			if err != nil {
				errs = append(errs, fmt.Errorf("facilities[%d].timezone: %w", i, err))
			}
			c.Facilities[i].zone = zone
		}
		for j, d := range f.Results {
			switch d.Kind {
			case "mllp":
				if d.Address == "" {
					errs = append(errs, fmt.Errorf("facilities[%d].results[%d].address: required for kind mllp", i, j))
				}
			case "fhir":
				if d.BaseURL == "" {
					errs = append(errs, fmt.Errorf("facilities[%d].results[%d].base_url: required for kind fhir", i, j))
				}
			default:
				errs = append(errs, fmt.Errorf("facilities[%d].results[%d].kind: %q is not mllp or fhir", i, j, d.Kind))
			}
			if d.Version != "" && d.Version != "2.5.1" && d.Version != "2.3.1" {
				errs = append(errs, fmt.Errorf("facilities[%d].results[%d].version: %q is not 2.5.1 or 2.3.1", i, j, d.Version))
			}
		}
		for j, sc := range f.Senders {
			at := fmt.Sprintf("facilities[%d].senders[%d]", i, j)
			for _, m := range sc.Messages {
				if !slices.Contains(engine.MessageClasses, m) && !isMessageCode(m) {
					errs = append(errs, fmt.Errorf("%s.messages: %q is not orders, adt, merges, results or a message code (MSH-9.1)", at, m))
				}
			}
			for _, a := range sc.Addresses {
				if _, err := parsePrefix(a); err != nil {
					errs = append(errs, fmt.Errorf("%s.addresses: %q is not an address or a CIDR network", at, a))
				}
			}
			if len(sc.Certificates) > 0 && c.MLLP.TLS.ClientCA == "" {
				errs = append(errs, fmt.Errorf("%s.certificates: needs mutual TLS (mllp.tls.client_ca) to verify them", at))
			}
			if slices.Contains(sc.Messages, engine.ClassMerges) && !f.AllowMerges {
				errs = append(errs, fmt.Errorf("%s.messages: merges needs allow_merges: true on the facility", at))
			}
		}
		names := map[string]bool{}
		for _, d := range c.resultDestinations(f.SendingFacility) {
			if names[d.Name] {
				errs = append(errs, fmt.Errorf("facilities[%d].results: two destinations are named %q", i, d.Name))
			}
			names[d.Name] = true
		}
	}
	return errors.Join(errs...)
}

// isMessageCode reports whether s has a message code's form (MSH-9.1, table 0076): three
// upper-case letters or digits.
func isMessageCode(s string) bool {
	if len(s) != 3 {
		return false
	}
	for _, c := range s {
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// storeKind splits a database URL into the store kind and what to open.
func storeKind(url string) (kind, target string, err error) {
	switch {
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		return "postgres", url, nil
	case strings.HasPrefix(url, "sqlite:"):
		p := strings.TrimPrefix(strings.TrimPrefix(url, "sqlite:"), "//")
		if p == "" {
			return "", "", errors.New("sqlite: needs a file path, e.g. sqlite:./ferry-data/ferry.db")
		}
		return "sqlite", p, nil
	}
	return "", "", fmt.Errorf("%q: want sqlite:PATH or postgres://…", redactURL(url))
}

// redactURL hides a password in a database URL before it is printed.
func redactURL(u string) string {
	at := strings.LastIndex(u, "@")
	scheme := strings.Index(u, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return u
	}
	userinfo := u[scheme+3 : at]
	if i := strings.IndexByte(userinfo, ':'); i >= 0 {
		return u[:scheme+3] + userinfo[:i] + ":***" + u[at:]
	}
	return u
}
