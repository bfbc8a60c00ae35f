-- Trust: API tokens, worker join tokens and the certificates of enrolled workers.
-- Secrets are never stored: a token's secret part is kept as its SHA-256
-- (the secret is 32 random bytes, so a fast hash is as good as a slow one),
-- found by the public id that prefixes it.

CREATE TABLE api_tokens (
    id            text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{12}$'),
    secret_sha256 bytea NOT NULL CHECK (length(secret_sha256) = 32),
    role          text NOT NULL CHECK (role IN ('read', 'submit', 'admin')),
    -- The projects a read or submit token may act on; an admin token has none
    -- (it manages the whole farm).
    projects      text[] NOT NULL DEFAULT '{}',
    description   text NOT NULL DEFAULT '' CHECK (length(description) <= 200),
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    revoked_at    timestamptz,
    last_used_at  timestamptz,
    CHECK ((role = 'admin') = (cardinality(projects) = 0))
);

-- A join token lets one new worker enrol once, before it expires.
CREATE TABLE join_tokens (
    id            text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{12}$'),
    secret_sha256 bytea NOT NULL CHECK (length(secret_sha256) = 32),
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    used_at       timestamptz,
    used_by       text            -- the worker id it enrolled
);

-- Every client certificate the farm's CA issued to a worker. A worker is who
-- its certificate says; a certificate not in this table, or revoked, is refused.
CREATE TABLE worker_certs (
    serial        text PRIMARY KEY,
    worker_id     text NOT NULL,
    fingerprint   text NOT NULL UNIQUE,
    issued_at     timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    revoked_at    timestamptz,
    join_token    text REFERENCES join_tokens(id),
    renewed_from  text REFERENCES worker_certs(serial)
);
CREATE INDEX worker_certs_worker ON worker_certs (worker_id);

-- Controllers cache tokens and certificates; a revocation tells them at once.
CREATE FUNCTION kiln_notify_revoke() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.revoked_at IS NULL OR OLD.revoked_at IS NOT NULL THEN
        RETURN NULL;
    END IF;
    IF TG_TABLE_NAME = 'worker_certs' THEN
        PERFORM pg_notify('kiln_revoke', 'worker ' || NEW.worker_id);
    ELSE
        PERFORM pg_notify('kiln_revoke', 'token ' || NEW.id);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER api_tokens_revoke AFTER UPDATE OF revoked_at ON api_tokens
    FOR EACH ROW EXECUTE FUNCTION kiln_notify_revoke();
CREATE TRIGGER worker_certs_revoke AFTER UPDATE OF revoked_at ON worker_certs
    FOR EACH ROW EXECUTE FUNCTION kiln_notify_revoke();

-- An action cache entry is only as trusted as its producer: record which
-- worker, under which certificate, and in which image it was made.
ALTER TABLE action_cache
    ADD COLUMN worker_id   text,
    ADD COLUMN worker_cert text,
    ADD COLUMN image       text;
