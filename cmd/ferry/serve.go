package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ferryhealth/ferry/adapters/dicomweb"
	"github.com/ferryhealth/ferry/adapters/dimse"
	"github.com/ferryhealth/ferry/adapters/httpapi"
	"github.com/ferryhealth/ferry/adapters/mllp"
	"github.com/ferryhealth/ferry/adapters/web"
	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/access"
	"github.com/ferryhealth/ferry/engine/audit"
	"github.com/ferryhealth/ferry/engine/critical"
	"github.com/ferryhealth/ferry/engine/outbox"
	"github.com/ferryhealth/ferry/engine/turnaround"
	"github.com/ferryhealth/ferry/fhir"
	"github.com/ferryhealth/ferry/hl7"
	"github.com/ferryhealth/ferry/internal/lograte"
	"github.com/ferryhealth/ferry/internal/tlsconfig"
	"github.com/ferryhealth/ferry/mappings"
)

// drainTimeout bounds a graceful shutdown: connections finish the message in hand.
const drainTimeout = 30 * time.Second

// serve runs Ferry until SIGTERM/SIGINT, then drains and returns nil (exit 0). It assembles the
// parts of an app (app.go) and waits for them to stop.
func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := serveConfig(args, stderr)
	if err != nil {
		return err
	}
	logger := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	// Mapping and FHIR validation allocate a lot per message and Ferry's live heap is small:
	// collecting less often buys ~10% of CPU (docs/performance.md). GOGC in the environment wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}

	a := newApp(ctx, drainTimeout, logger)
	defer a.abort() // an assembly that fails stops what had started

	// One serve per embedded store, released last (after the store closes).
	unlock, err := lockEmbeddedStore(cfg.Database)
	if err != nil {
		return err
	}
	a.closer("embedded store lock", func() error { unlock(); return nil })
	st, kind, err := openStore(ctx, cfg.Database)
	if err != nil {
		return err
	}
	a.closer("store", st.Close)
	if err := st.Migrate(ctx); err != nil {
		return fmt.Errorf("migrating %s store: %w", kind, err)
	}
	warnMaintenance(ctx, st, logger)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := engine.NewMetrics(reg)
	clocks := turnaround.NewMetrics(reg)

	committer := engine.NewGroupCommitter(st, engine.GroupCommitOptions{
		Workers:       cfg.Commit.Workers,
		MaxBatch:      cfg.Commit.MaxBatch,
		EffectWorkers: cfg.Commit.EffectWorkers,
		Linger:        *cfg.Commit.Linger,
		Timeout:       cfg.Commit.Timeout,
		Observe:       metrics.ObserveCommit,
	})
	a.closer("group committer", func() error { committer.Close(); return nil })

	inbound := engine.NewInbound("mllp", committer, logger, metrics)
	if len(cfg.MLLP.AcceptMessageTypes) > 0 {
		inbound.AcceptTypes = cfg.MLLP.AcceptMessageTypes
	}
	inbound.Limits = hl7.Limits{MaxSegments: cfg.MLLP.MaxSegments, MaxRepetitions: cfg.MLLP.MaxRepetitions}
	// Orders and patient updates are mapped to resources in the transaction that stores them.
	reloader, err := mappings.NewReloader(cfg.mappingsConfig(), logger)
	if err != nil {
		return fmt.Errorf("loading mappings:\n%w", err)
	}
	// The console's mappings pages: saves are tried and tested, written atomically and applied
	// by the reloader; the history starts with the files as deployed and records every change
	// the reloader finds on disk (docs/mappings.md).
	mappingPages := &web.ConsoleMappings{Editor: &mappings.Editor{Config: cfg.mappingsConfig(), Reloader: reloader},
		Current: reloader.Current, History: st}
	if err := mappingPages.SyncHistory(ctx); err != nil {
		logger.Error("recording the mappings' history failed", "err", err)
	}
	reloader.Changed = func() {
		if err := mappingPages.SyncHistory(context.WithoutCancel(ctx)); err != nil {
			logger.Error("recording the mappings' history failed", "err", err)
		}
	}
	if every := *cfg.Mappings.ReloadInterval; every > 0 {
		a.worker("mapping reloads", func(ctx context.Context) { reloader.Watch(ctx, every) })
	}
	validator, err := fhir.NewValidator()
	if err != nil {
		return err
	}
	// Who may send what from where (facilities[].senders); none configured: demo mode.
	trust := cfg.senderTrust()
	for _, f := range trust.Unbound() {
		logger.Warn("facility trusted on its MSH-4 alone: its results or merges may come from any address; bind its senders to addresses or certificates (docs/security.md)", "sending_facility", f)
	}
	if len(cfg.DICOM.AcceptCallingAETitles) > 0 {
		logger.Warn("dicom.accept_calling_ae_titles trusts a listed AE title from any address; bind the callers with dicom.peers (docs/security.md)")
	}
	inbound.Trust = trust
	inbound.Processor = &engine.Processor{
		Mappings:  func() engine.MappingSource { return reloader.Current() },
		Validator: validator,
		Trust:     trust,
	}
	// Messages acknowledged on receipt (here, or by a node that stopped before processing them)
	// are processed by the pending worker; every node runs one.
	pending := &engine.PendingWorker{Store: st, Processor: inbound.Processor, Logger: logger, Metrics: metrics}
	inbound.AckOnReceipt = cfg.MLLP.Ack == "on_receipt"
	inbound.Pending = pending
	a.worker("pending messages", pending.Run)
	// The error queue's reprocessing, run as the pending worker runs (docs/orders.md).
	reprocessor := &engine.Reprocessor{Store: st, Processor: inbound.Processor, Logger: logger}
	a.worker("reprocessing", reprocessor.Run)
	reg.MustRegister(engine.NewErrorQueueCollector(st, logger))
	// The messages stored before search keys were kept get them, in the background, once
	// (docs/console.md, "Finding a message"); every node may run it: it is idempotent.
	a.worker("search backfill", func(ctx context.Context) { engine.BackfillSearchKeys(ctx, st, logger) })

	token, err := adminToken(cfg, logger)
	if err != nil {
		return err
	}

	// DICOM storage: C-STORE and STOW-RS share the intake and its incoming area.
	storage, err := dicomStorage(cfg, st, logger)
	if err != nil {
		return err
	}
	// Every read of patient data through the API is limited to the patients its caller reaches
	// (physicians, radiologists limited to facilities): FHIR through httpapi's access.Reader,
	// DICOMweb's study search — which WADO-RS also finds its studies by — here.
	patients := cfg.patients(st)
	stow, err := dicomweb.NewSTOW(storage.intake, dicomweb.Config{IncomingDir: storage.incoming,
		Studies: &access.Studies{Patients: patients, Studies: st}, Identities: storage.intake.Linker,
		Instances: st, DataDir: storage.intake.Dir, AuditPatient: httpapi.SetAuditPatient,
		MaxInstanceSize: cfg.DICOM.MaxInstanceSize, MaxHeaderSize: cfg.DICOM.MaxHeaderSize, Logger: logger})
	if err != nil {
		return fmt.Errorf("dicomweb: %w", err)
	}

	// Linked studies are published as FHIR ImagingStudy once quiet; every node runs a deriver.
	deriver := &engine.StudyDeriver{Store: st, Validator: validator, Settle: cfg.Linking.StudySettle,
		DICOMwebURL: strings.TrimRight(cfg.HTTP.PublicURL, "/") + dicomweb.BasePath, Logger: logger,
		ObserveTurnaround: clocks.Observe}
	a.worker("study derivation", deriver.Run)

	mllpSrv := &mllp.Server{
		Handler: mllp.HandlerFunc(func(ctx context.Context, f *mllp.Frame) []byte {
			return inbound.Receive(ctx, engine.Received{
				Data: f.Data, TooLarge: f.TooLarge, Size: f.Size,
				ReceivedAt: f.ReceivedAt, PeerAddr: f.RemoteAddr, PeerCertificate: verifiedClient(f.TLS),
			})
		}),
		MaxConns:       cfg.MLLP.MaxConnections,
		MaxMessageSize: cfg.MLLP.MaxMessageSize,
		ReadTimeout:    cfg.MLLP.ReadTimeout,
		IdleTimeout:    cfg.MLLP.IdleTimeout,
		Logger:         logger,
		Metrics:        mllpMetrics{m: metrics, channel: "mllp"},
	}
	cfg.MLLP.applyLimits(mllpSrv, inbound)
	if cfg.MLLP.TLS.Enabled() {
		if mllpSrv.TLSConfig, err = tlsconfig.Server(cfg.MLLP.TLS.Cert, cfg.MLLP.TLS.Key, cfg.MLLP.TLS.ClientCA); err != nil {
			return fmt.Errorf("mllp.tls: %w", err)
		}
	}
	mllpListen := cfg.Listen.MLLP
	if trust.Demo() {
		// Demo mode trusts every sender, so only this machine may reach it.
		mllpListen = loopback(mllpListen)
		logger.Warn("no facilities configured: demo mode, MLLP accepts any sender but listens on the loopback interface only (docs/security.md)", "mllp", mllpListen)
	}
	mllpLn, err := a.listen(mllpListen)
	if err != nil {
		return fmt.Errorf("listening for MLLP: %w", err)
	}

	// Reports from the reading platform, stored with their deliveries to the ordering hospital,
	// which every node's deliverer sends.
	// A report written through the API is audited in its own transaction (audit.Changes).
	reports := &engine.Reports{Store: audit.Changes{ChangeStore: st}, Validator: validator, Destinations: cfg.resultDestinations, Logger: logger, Performer: cfg.performer(),
		ObserveTurnaround: clocks.Observe, Render: engine.RenderORU(reloader.Current)}
	inbound.Processor.Reports = reports // ORU^R01 from dictation systems
	if reports.Nudge, err = a.startDeliverer(cfg, st, logger); err != nil {
		return err
	}
	trustedProxies, _ := cfg.HTTP.trustedProxies() // checked by Validate
	// People and access: tokens and sessions of the users in the store, the bootstrap admin
	// token beside them; every access to patient data audited (docs/security.md).
	people := cfg.accessService(st, token)
	sso, err := cfg.sso()
	if err != nil {
		return err
	}
	trail := &audit.Recorder{Begin: st.Begin}
	// Critical results: the ordering physician's acknowledgement, and the alert (metrics and
	// webhook) when none comes in time (docs/reports.md, "Critical results").
	acks := &critical.Service{Store: st, Patients: patients, Reports: st, Audit: trail, Logger: logger}
	alerter, err := cfg.criticalAlerter(st, reg, logger)
	if err != nil {
		return err
	}
	a.worker("critical result alerts", alerter.Run)
	api, err := httpapi.New(httpapi.Options{TrustedProxies: trustedProxies, Messages: st, Resources: st, Studies: st, Unlearner: storage.intake.Linker, CrossReference: storage.intake.Linker, Reports: reports, Deliveries: st, Rerender: reports, Turnaround: st, TurnaroundSLAs: cfg.turnaroundSLAs(), Readiness: readinessChecks(committer, storage.incoming, st), Mappings: func() httpapi.MappingTester { return reloader.Current() }, DICOMweb: stow, Gatherer: reg, Logger: logger,
		Access: people, SessionCookie: web.SessionCookie, Audit: trail, AuditEvents: st, Patients: patients,
		ErrorQueue: st, Reprocessed: reprocessor.Nudge, Critical: acks})
	if err != nil {
		return err
	}
	if err := web.Register(api, web.Options{Access: people, Audit: trail, Logger: logger, SSO: sso,
		Console: &web.Console{Messages: st, Reprocessed: reprocessor.Nudge, Mappings: mappingPages,
			Deliveries: &web.ConsoleDeliveries{Log: st, Rerender: reports, Replayed: reports.Nudge},
			Studies:    &web.ConsoleStudies{Store: st, Unlearner: storage.intake.Linker},
			Turnaround: &web.ConsoleTurnaround{Clocks: st, SLAs: cfg.turnaroundSLAs(), Orders: st}},
		Physician: &web.Physician{Patients: patients, Resources: st, Reads: st, Turnaround: st, SLAs: cfg.turnaroundSLAs()},
		Critical:  acks,
		Studies:   &web.Studies{Search: &access.Studies{Patients: patients, Studies: st}, Instances: st, Links: st}}); err != nil {
		return err
	}
	httpSrv := cfg.HTTP.server(api)
	if cfg.HTTP.TLS.Enabled() {
		if httpSrv.TLSConfig, err = tlsconfig.Server(cfg.HTTP.TLS.Cert, cfg.HTTP.TLS.Key, cfg.HTTP.TLS.ClientCA); err != nil {
			return fmt.Errorf("http.tls: %w", err)
		}
	}
	httpLn, err := a.listen(cfg.Listen.HTTP)
	if err != nil {
		return fmt.Errorf("listening for HTTP: %w", err)
	}
	httpLn = cfg.HTTP.limitListener(httpLn, logger)
	if httpSrv.TLSConfig != nil {
		httpLn = tls.NewListener(httpLn, httpSrv.TLSConfig)
	}

	// DICOM: C-ECHO (Verification, built in), the Modality Worklist (C-FIND) built from orders,
	// and storage (C-STORE) into the DICOM data directory.
	// Who may call, DICOM TLS and the limits: cmd/ferry/dicom.go.
	dicomSrv, err := cfg.dicomServer(logger, append([]dimse.Service{dimse.WorklistService(st, logger)}, storage.services...))
	if err != nil {
		return err
	}
	dicomListen := cfg.Listen.DICOM
	if cfg.DICOM.demo() {
		// Demo mode lets any caller read the worklist and store studies: this machine only.
		dicomListen = loopback(dicomListen)
	}
	dicomLn, err := a.listen(dicomListen)
	if err != nil {
		return fmt.Errorf("listening for DICOM: %w", err)
	}
	var dicomTLSLn net.Listener
	if addr := cfg.dicomTLSAddr(); addr != "" {
		if dicomTLSLn, err = a.listen(addr); err != nil {
			return fmt.Errorf("listening for DICOM TLS: %w", err)
		}
	}
	if cfg.DICOM.demo() {
		logger.Warn("DICOM: no dicom.peers configured: demo mode, any caller may query the worklist and store studies, so the listener serves the loopback interface only; list the peers in dicom.peers", "dicom", dicomLn.Addr().String())
	}

	// The servers stop first (the last started first): MLLP, then DICOM (both its listeners),
	// then HTTP, each draining the connections it has; then the workers and the store.
	a.server("HTTP", httpLn, httpSrv.Serve, httpSrv.Shutdown, http.ErrServerClosed)
	if dicomTLSLn != nil {
		a.server("DICOM TLS", dicomTLSLn, dicomSrv.ServeTLS, nil, dimse.ErrServerClosed) // drained with DICOM
	}
	a.server("DICOM", dicomLn, dicomSrv.Serve, dicomSrv.Shutdown, dimse.ErrServerClosed)
	a.server("MLLP", mllpLn, mllpSrv.Serve, mllpSrv.Shutdown, mllp.ErrServerClosed)
	if dicomTLSLn != nil {
		logger.Info("DICOM TLS serving", "dicom_tls", dicomTLSLn.Addr().String(),
			"client_certificates", cfg.DICOM.TLS.ClientCertificates)
	}
	// http_tls is what the listener does, not what the config asks: a TLS handshake with it.
	httpTLS := false
	if httpSrv.TLSConfig != nil {
		if version, err := probeTLS(httpLn.Addr(), httpSrv.TLSConfig, 5*time.Second); err != nil {
			logger.Error("http.tls is configured but the HTTP listener did not complete a TLS handshake", "err", err)
		} else {
			httpTLS = true
			logger.Info("HTTP listener serving TLS", "http", httpLn.Addr().String(), "tls_version", version, "mutual", httpSrv.TLSConfig.ClientCAs != nil)
		}
	}
	logger.Info("ferry serving", "version", versionString(), "store", kind,
		"mllp", mllpLn.Addr().String(), "http", httpLn.Addr().String(), "dicom", dicomLn.Addr().String(), "dicom_ae_title", dicomSrv.AETitle,
		"mllp_tls", mllpSrv.TLSConfig != nil, "http_tls", httpTLS)
	fmt.Fprintf(stdout, "ferry %s serving: mllp=%s http=%s store=%s dicom=%s\n", versionString(), mllpLn.Addr(), httpLn.Addr(), kind, dicomLn.Addr())
	return a.wait()
}

// serveConfig is serve's configuration: the file its flags name, the environment, and the flags
// that override them, with defaults, validated.
func serveConfig(args []string, stderr io.Writer) (*Config, error) {
	fs := newFlagSet("serve", stderr)
	configPath := fs.String("config", "", "config file (YAML)")
	db := fs.String("db", "", "database URL: sqlite:PATH or postgres://… (overrides config and FERRY_DATABASE_URL)")
	mllpAddr := fs.String("mllp", "", "MLLP listen address (default :2575)")
	httpAddr := fs.String("http", "", "HTTP listen address (default :8080)")
	dicomAddr := fs.String("dicom", "", "DICOM listen address (default :11112)")
	logFormat := fs.String("log-format", "", "log lines as text (default) or json (overrides log_format)")
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		return nil, err
	}
	for flagVal, field := range map[*string]*string{db: &cfg.Database, mllpAddr: &cfg.Listen.MLLP, httpAddr: &cfg.Listen.HTTP, dicomAddr: &cfg.Listen.DICOM, logFormat: &cfg.LogFormat} {
		if *flagVal != "" {
			*field = *flagVal
		}
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid config:\n%w", err)
	}
	return cfg, nil
}

// startDeliverer starts the parts that send the outbox's deliveries — the transports to the
// configured destinations and the deliverer every node runs — and returns the deliverer's
// Nudge, for whoever commits a report version.
func (a *app) startDeliverer(cfg *Config, st outbox.Store, logger *slog.Logger) (nudge func(), err error) {
	sends, err := cfg.deliveryTransports(logger)
	if err != nil {
		return nil, err
	}
	a.closer("delivery transports", func() error { sends.Close(); return nil })
	// A claimed delivery is held for one attempt and a margin: a node killed mid-attempt delays
	// its delivery that long, then any node sends it again.
	deliverer := &outbox.Deliverer{Store: st, Transport: sends.Send, Probe: sends.Probe, ProbeEvery: cfg.Delivery.ProbeEvery, Destination: cfg.resultDestination,
		Retry: cfg.retryPolicy(), Workers: cfg.Delivery.Workers, PerDestination: cfg.Delivery.PerDestination, Lease: cfg.Delivery.Timeout + cfg.Delivery.Timeout/4 + 2*time.Second, Logger: logger}
	a.worker("deliverer", func(ctx context.Context) { deliverer.Run(ctx, 200*time.Millisecond) })
	return deliverer.Nudge, nil
}

// loopback is addr with its host replaced by the loopback interface (127.0.0.1 for any IPv4 or
// unspecified host, ::1 for IPv6), keeping the port.
func loopback(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() || host == "localhost" {
		return addr
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is6() && !ip.Is4In6() {
		return net.JoinHostPort("::1", port)
	}
	return net.JoinHostPort("127.0.0.1", port)
}

// verifiedClient is the client certificate of a TLS connection when its chain was verified
// (mutual TLS with a client CA), else nil: an unverified certificate names nobody.
func verifiedClient(cs *tls.ConnectionState) *x509.Certificate {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
		return nil
	}
	return cs.PeerCertificates[0]
}

// newLogger is the service's logger: text on w from level up, a flood of the same warning or
// error cut to a few lines and a count per window (internal/lograte).
func newLogger(w io.Writer, level, format string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: l}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if format == "json" {
		h = slog.NewJSONHandler(w, opts) // one JSON object per line, for a log shipper
	}
	return slog.New(lograte.New(h, lograte.Options{}))
}

// adminToken returns the configured admin token, or the one kept in DATA_DIR/admin-token,
// generating it on first start, so the admin API is never open without a token.
func adminToken(cfg *Config, logger *slog.Logger) (string, error) {
	if cfg.AdminToken != "" {
		return cfg.AdminToken, nil
	}
	path := filepath.Join(cfg.DataDir, "admin-token")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		if err := checkAdminToken(strings.TrimSpace(string(b))); err != nil {
			return "", fmt.Errorf("%s (generated by an older Ferry?): %w; delete it to have a new one generated, or set FERRY_ADMIN_TOKEN", path, err)
		}
		logger.Info("admin token read from file (set FERRY_ADMIN_TOKEN to choose one)", "file", path)
		return strings.TrimSpace(string(b)), nil
	}
	var b [32]byte // 256 bits, 64 hex digits (checkAdminToken)
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generating admin token: %w", err)
	}
	token := hex.EncodeToString(b[:])
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return "", fmt.Errorf("creating data dir: %w", err)
	}
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("writing admin token: %w", err)
	}
	logger.Info("admin token generated (set FERRY_ADMIN_TOKEN to choose one)", "file", path)
	return token, nil
}

// mllpMetrics feeds the MLLP listener's events into the engine's Prometheus series.
type mllpMetrics struct {
	m       *engine.Metrics
	channel string
}

func (o mllpMetrics) ConnOpened()   { o.m.OpenConns.WithLabelValues(o.channel).Inc() }
func (o mllpMetrics) ConnClosed()   { o.m.OpenConns.WithLabelValues(o.channel).Dec() }
func (o mllpMetrics) ConnRejected() { o.m.ConnsRefused.WithLabelValues(o.channel).Inc() }
func (o mllpMetrics) Discarded(n int64) {
	o.m.DiscardedBytes.WithLabelValues(o.channel).Add(float64(n))
}
func (o mllpMetrics) FrameError(kind string) { o.m.FrameErrors.WithLabelValues(o.channel, kind).Inc() }

// dicomStorageSetup is the DICOM storage both receivers share: the C-STORE services, the intake
// that keeps instances, and the incoming area where files arrive (STOW-RS writes there too).
type dicomStorageSetup struct {
	services []dimse.Service
	intake   *engine.Intake
	incoming string
}

// dicomStorage prepares the DICOM data directory and returns the C-STORE services with the
// intake and incoming area they use. Files left in its incoming area by an earlier run were
// never acknowledged: they are removed.
func dicomStorage(cfg *Config, st store, logger *slog.Logger) (*dicomStorageSetup, error) {
	incoming := filepath.Join(cfg.DICOM.StorageDir, ".incoming")
	if err := os.RemoveAll(incoming); err != nil {
		return nil, fmt.Errorf("dicom.storage_dir: clearing %s: %w", incoming, err)
	}
	if err := os.MkdirAll(incoming, 0o750); err != nil {
		return nil, fmt.Errorf("dicom.storage_dir: %w", err)
	}
	intake := &engine.Intake{Store: st, Dir: cfg.DICOM.StorageDir, Logger: logger, Timeout: cfg.Commit.Timeout,
		Linker: &engine.Linker{Resources: st, Links: st, Match: cfg.matchConfig()}}
	services, err := dimse.StorageServices(intake, dimse.StorageConfig{IncomingDir: incoming, MaxInstanceSize: cfg.DICOM.MaxInstanceSize,
		MaxHeaderSize: cfg.DICOM.MaxHeaderSize}, logger)
	if err != nil {
		return nil, fmt.Errorf("dicom storage: %w", err)
	}
	return &dicomStorageSetup{services: services, intake: intake, incoming: incoming}, nil
}
