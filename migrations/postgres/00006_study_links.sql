-- +goose Up

-- The linker's decision for each study (engine.LinkStore): the order and patient it belongs to,
-- by which rule, with what score, and the evidence, so that a person can see why. One row per
-- study; PutStudyLink upserts it, a new decision replacing the previous one.
--
--   status              linked | contradiction | unmatched (engine.LinkStatus), checked here
--   service_request_id  the order (ServiceRequest id), '' when none
--   patient_id          Ferry's Patient id, '' when none
--   rule                accession, study-uid, … ('' when unmatched)
--   evidence            the fields compared, a JSON object (encoding/json of the map: keys
--                       sorted); text, not jsonb: it is shown, never queried
--   decided_at          when the linker decided
--
-- Identifiers compare byte for byte: collation "C".

CREATE TABLE study_links (
    study_instance_uid  text COLLATE "C" NOT NULL,
    status              text COLLATE "C" NOT NULL
        CONSTRAINT study_links_status_check CHECK (status IN ('linked', 'contradiction', 'unmatched')),
    service_request_id  text COLLATE "C" NOT NULL,
    patient_id          text COLLATE "C" NOT NULL,
    rule                text COLLATE "C" NOT NULL,
    score               double precision NOT NULL,
    evidence            text NOT NULL,
    decided_at          timestamptz NOT NULL,
    CONSTRAINT study_links_pkey PRIMARY KEY (study_instance_uid)
);
-- The studies linked to an order (an order cancelled or corrected: which studies follow it).
CREATE INDEX study_links_service_request ON study_links (service_request_id);
-- The work list of open items: contradictions and unmatched studies, oldest decision first.
CREATE INDEX study_links_status ON study_links (status, decided_at);

-- +goose Down
DROP TABLE study_links;
