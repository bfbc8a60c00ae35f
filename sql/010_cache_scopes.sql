-- Shared cache scopes. A result is only as trusted as its producer, so
-- projects share action and compile cache entries only within a scope an
-- admin created, and only the projects it lists: a project whose
-- configuration names a scope that does not exist or does not list it uses
-- its own scope (project:<name>), whatever its configuration says.

CREATE TABLE cache_scopes (
    name        text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$'),
    projects    text[] NOT NULL CHECK (cardinality(projects) > 0),
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER cache_scopes_touch BEFORE UPDATE ON cache_scopes
    FOR EACH ROW EXECUTE FUNCTION kiln_touch_updated_at();

-- Membership decides the scope of each project's jobs, which controllers
-- hold with the projects' configuration: any change reloads it everywhere.
CREATE FUNCTION kiln_notify_cache_scope() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('kiln_config', 'cache_scope ' || OLD.name);
    ELSE
        PERFORM pg_notify('kiln_config', 'cache_scope ' || NEW.name);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER cache_scopes_notify AFTER INSERT OR UPDATE OR DELETE ON cache_scopes
    FOR EACH ROW EXECUTE FUNCTION kiln_notify_cache_scope();
