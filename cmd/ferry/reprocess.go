package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

const reprocessUsage = `usage: ferry reprocess (--id N | [--facility F] [--type T] [--control-id C] [--status S] [--since T] [--until T])
                      [--reason TEXT] [--user NAME] [--dry-run] [--dismiss] [--url URL] [--token-file FILE]`

// reprocessCmd is `ferry reprocess`: messages of the error queue run again with the mappings and
// code tables now in force, through a running Ferry's API (docs/orders.md, "The error queue").
// With --id one message; else every message of the queue the filters select, after saying how
// many match (--dry-run stops there). --dismiss takes messages off the queue instead (a reason is
// required). Outcomes show in the message log (GET /api/v1/messages/{id}, "reprocessing").
func reprocessCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("reprocess", stderr)
	id := fs.Int64("id", 0, "one message (its id in the message log)")
	facility := fs.String("facility", "", "only messages from this sending facility (MSH-4)")
	typ := fs.String("type", "", "only messages of this type (prefix of MSH-9, e.g. ORM)")
	controlID := fs.String("control-id", "", "only messages with this control ID (MSH-10)")
	status := fs.String("status", "", "only messages with this status (accepted, error)")
	since := fs.String("since", "", "only messages received at or after this time (RFC 3339)")
	until := fs.String("until", "", "only messages received before this time (RFC 3339)")
	reason := fs.String("reason", "", "why (audited; required to dismiss)")
	user := fs.String("user", "", "who (audited; required with the bootstrap admin token, whose holder the API cannot name)")
	dryRun := fs.Bool("dry-run", false, "only say how many messages match")
	dismiss := fs.Bool("dismiss", false, "take the messages off the queue instead of running them (--id only)")
	api := addAPIFlags(fs, time.Minute)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	filtered := *facility != "" || *typ != "" || *controlID != "" || *status != "" || *since != "" || *until != ""
	if fs.NArg() > 0 || (*id != 0 && filtered) || (*dismiss && *id == 0) || (*dismiss && *dryRun) {
		fmt.Fprintln(stderr, reprocessUsage)
		return exitCode(2)
	}
	ctx, cancel, err := api.open(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	body := map[string]any{"user": *user, "reason": *reason}
	if *id != 0 {
		action := "reprocess"
		if *dismiss {
			action = "dismiss"
		}
		if _, err := api.post(ctx, "/api/v1/messages/"+strconv.FormatInt(*id, 10)+"/"+action, body,
			http.StatusOK, http.StatusAccepted); err != nil {
			return fmt.Errorf("%s message %d: %w", action, *id, err)
		}
		if *dismiss {
			fmt.Fprintf(stdout, "message %d dismissed from the error queue\n", *id)
		} else {
			fmt.Fprintf(stdout, "message %d queued for reprocessing; its outcome shows in the message log\n", *id)
		}
		return nil
	}
	q := url.Values{}
	for k, v := range map[string]string{"sending_facility": *facility, "type": *typ, "control_id": *controlID,
		"status": *status, "since": *since, "until": *until} {
		if v != "" {
			q.Set(k, v)
		}
	}
	path := "/api/v1/messages/reprocess?" + q.Encode()
	var out struct {
		Matched int `json:"matched"`
		Queued  int `json:"queued"`
	}
	body["dry_run"] = true
	raw, err := api.post(ctx, path, body, http.StatusOK)
	if err == nil {
		err = json.Unmarshal(raw, &out)
	}
	if err != nil {
		return fmt.Errorf("counting the error queue: %w", err)
	}
	fmt.Fprintf(stdout, "%d messages in the error queue match\n", out.Matched)
	if *dryRun || out.Matched == 0 {
		return nil
	}
	body["dry_run"] = false
	raw, err = api.post(ctx, path, body, http.StatusAccepted)
	if err == nil {
		err = json.Unmarshal(raw, &out)
	}
	if err != nil {
		return fmt.Errorf("reprocessing: %w", err)
	}
	fmt.Fprintf(stdout, "queued %d for reprocessing, oldest first (those already queued are not queued twice)\n", out.Queued)
	return nil
}
