-- +goose Up

-- Turnaround clocks (engine.Turnaround): one row per order (ServiceRequest) with the time each
-- milestone was first reached — ordered, study complete (its ImagingStudy published), the first
-- report a clinician can act on (preliminary), the final — NULL until reached. A milestone keeps
-- its first time: later marks change only priority, the order's latest. The SLAs (config
-- turnaround) count from study_at, so only orders whose study arrived can be overdue, and only
-- until their final.
--
--   priority   routine | urgent | asap | stat (FHIR request-priority)

CREATE TABLE turnaround (
    service_request_id  text COLLATE "C" NOT NULL,
    priority            text COLLATE "C" NOT NULL CHECK (priority IN ('routine', 'urgent', 'asap', 'stat')),
    ordered_at          timestamptz,
    study_at            timestamptz,
    preliminary_at      timestamptz,
    final_at            timestamptz,
    CONSTRAINT turnaround_pkey PRIMARY KEY (service_request_id)
);
-- The overdue query: per priority, the studies longest waiting for their report.
CREATE INDEX turnaround_awaiting_final ON turnaround (priority, study_at)
    WHERE final_at IS NULL AND study_at IS NOT NULL;

-- +goose Down
DROP TABLE turnaround;
