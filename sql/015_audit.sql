-- The audit trail: one row per change made through the API (and by the
-- controller's own commands on its host): who, from which address, what,
-- when, and the change. The store that makes a change writes its row in the
-- same transaction or statement, so there is never a change without its row
-- nor a row for a change that did not happen. One table serves every record
-- of a change (docs/architecture.md, "Audit trail").

CREATE TABLE audit_log (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    -- "token <id>", "worker <id>", "join token <id>", "controller <id>",
    -- "local <user>" (kiln-controller tokens create / join-token on the host).
    actor    text NOT NULL CHECK (actor <> ''),
    -- The peer as gRPC saw it ("ipv4:10.0.0.7:51234"); "local" on the host.
    address  text NOT NULL,
    -- A dotted verb: job.submit, project.config, token.create, worker.enrol, ...
    action   text NOT NULL CHECK (action ~ '^[a-z_]+(\.[a-z_]+)+$'),
    project  text,              -- NULL: not bound to one project
    target   text NOT NULL,     -- "job 17", "token 1a2b3c4d5e6f", "image sha256:..."
    change   jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(change) = 'object')
);
-- Listing newest first, the whole trail or one project's, from a time on;
-- pruning by age (audit_retention).
CREATE INDEX audit_log_at ON audit_log (at, id);
CREATE INDEX audit_log_project_at ON audit_log (project, at, id) WHERE project IS NOT NULL;
