-- Who may see which content. A blob or directory node is readable by, and
-- reported present to, a caller only in a scope it belongs to:
--   project:<name> / shared:<name>  the cache scope of a project (what its
--                                   tokens uploaded, what its jobs produced)
--   worker:<id>                     what that worker uploaded itself
--   images                          the blobs of registered images (every worker)
-- A blob joins a scope only on a verified upload in it (or as the output of
-- a job of it), never because the same bytes exist in another scope.
CREATE TABLE cas_scope_members (
    scope  text NOT NULL,
    hash   text NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$'),
    PRIMARY KEY (scope, hash)
);
-- The collector forgets removed content in every scope.
CREATE INDEX cas_scope_members_hash ON cas_scope_members (hash);

-- What was stored before scopes: the blobs of registered images are every
-- worker's, compile cache objects their scope's. (Trees and files uploaded
-- before this migration are seen by admins only: the next submit finds
-- them missing and uploads them again, which puts them in its scope.)
INSERT INTO cas_scope_members (scope, hash)
SELECT 'images', h FROM (
    SELECT digest AS h FROM images
    UNION SELECT split_part(config, '/', 1) FROM images
    UNION SELECT split_part(l->>'digest', '/', 1) FROM images, jsonb_array_elements(layers) l
) x
ON CONFLICT DO NOTHING;
INSERT INTO cas_scope_members (scope, hash)
SELECT DISTINCT scope, object_hash FROM compile_results
ON CONFLICT DO NOTHING;
