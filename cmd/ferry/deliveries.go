package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"
)

// deliveriesCmd runs `ferry deliveries replay`: every dead letter (of a destination, of a
// report) replayed through a running Ferry's admin API, oldest first, so that each patient's
// reports reach the hospital in their order (POST /api/v1/deliveries/replay, docs/reports.md).
// The API rebuilds each message with the mappings in force and audits who and why. Exit status 1
// when any dead letter could not be replayed.
func deliveriesCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "replay" {
		return groupUsage(args, "usage: ferry deliveries replay --user NAME --reason TEXT [--destination FACILITY/NAME] [--report ID] [--url URL]", stdout, stderr)
	}
	fs := newFlagSet("deliveries replay", stderr)
	api := addAPIFlags(fs, 10*time.Minute)
	user := fs.String("user", "", "who replays (audited; required)")
	reason := fs.String("reason", "", "why (audited; required)")
	destination := fs.String("destination", "", "only the dead letters to this destination (FACILITY/NAME)")
	report := fs.String("report", "", "only the dead letters of this DiagnosticReport id")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if *user == "" || *reason == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: ferry deliveries replay --user NAME --reason TEXT [--destination FACILITY/NAME] [--report ID] [--url URL]")
		return exitCode(2)
	}
	ctx, cancel, err := api.open(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	raw, err := api.post(ctx, "/api/v1/deliveries/replay",
		map[string]string{"user": *user, "reason": *reason, "destination": *destination, "report": *report}, http.StatusOK)
	if err != nil {
		return fmt.Errorf("replaying dead letters: %w", err)
	}
	var out struct {
		Replayed []int64 `json:"replayed"`
		Failed   []struct {
			ID    int64  `json:"id"`
			Error string `json:"error"`
		} `json:"failed"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return fmt.Errorf("replaying dead letters: the answer: %w", err)
	}
	fmt.Fprintf(stdout, "replayed %d dead letters, oldest first\n", len(out.Replayed))
	for _, f := range out.Failed {
		fmt.Fprintf(stdout, "not replayed: delivery %d: %s\n", f.ID, f.Error)
	}
	if len(out.Failed) > 0 {
		return exitCode(1)
	}
	return nil
}

// apiFlags are how a command reaches a running Ferry's API: --url, --token-file, --timeout.
type apiFlags struct {
	base, tokenFile *string
	timeout         *time.Duration
	token           string
}

func addAPIFlags(fs *flag.FlagSet, timeout time.Duration) *apiFlags {
	return &apiFlags{
		base:      fs.String("url", "http://127.0.0.1:8080", "Ferry's HTTP listener"),
		tokenFile: fs.String("token-file", "", "file holding the token (default: $FERRY_ADMIN_TOKEN, else ./ferry-data/admin-token)"),
		timeout:   fs.Duration("timeout", timeout, "how long to wait for the answer"),
	}
}

// open reads the token and bounds ctx by --timeout.
func (a *apiFlags) open(ctx context.Context) (context.Context, context.CancelFunc, error) {
	token, err := cliAdminToken(*a.tokenFile)
	if err != nil {
		return nil, nil, err
	}
	a.token = token
	ctx, cancel := context.WithTimeout(ctx, *a.timeout)
	return ctx, cancel, nil
}

// post is callAPI with the flags' URL and token.
func (a *apiFlags) post(ctx context.Context, path string, body any, want ...int) ([]byte, error) {
	return callAPI(ctx, *a.base, a.token, path, body, want...)
}

// callAPI POSTs body as JSON to a running Ferry's API at base+path with token, and returns the
// answer when its status is one of want (else an error with the answer's text).
func callAPI(ctx context.Context, base, token, path string, body any, want ...int) ([]byte, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(base, "/")+path, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	if !slices.Contains(want, resp.StatusCode) {
		return nil, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(raw)))
	}
	return raw, nil
}

// cliAdminToken is the admin token a command that calls the API presents: from file, else
// FERRY_ADMIN_TOKEN, else the token ferry serve generated in ./ferry-data/admin-token.
func cliAdminToken(file string) (string, error) {
	if file == "" {
		if t := os.Getenv("FERRY_ADMIN_TOKEN"); t != "" {
			return t, nil
		}
		file = "ferry-data/admin-token"
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("reading the admin token (set FERRY_ADMIN_TOKEN or --token-file): %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}
