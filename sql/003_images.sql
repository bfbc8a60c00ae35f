-- OCI images: manifest, config and layers are blobs in CAS; this table names
-- the images jobs may run in, by manifest digest.
CREATE TABLE images (
    digest         text PRIMARY KEY CHECK (digest ~ '^[0-9a-f]{64}$'),  -- sha256 of the manifest
    manifest_size  bigint NOT NULL CHECK (manifest_size > 0),
    name           text NOT NULL DEFAULT '',                            -- a label, not unique
    config         text NOT NULL,                                       -- "<hex>/<size>"
    layers         jsonb NOT NULL,   -- [{"digest": "<hex>/<size>", "media_type": "..."}], in order
    size           bigint NOT NULL,  -- bytes of all layers as stored
    imported_at    timestamptz NOT NULL DEFAULT now()
);

-- Blobs the collector keeps besides those of live trees: every blob of every
-- imported image (until kiln image rm).
CREATE FUNCTION kiln_cas_live_blobs() RETURNS SETOF text
LANGUAGE sql STABLE AS $$
    SELECT digest FROM images
    UNION
    SELECT split_part(config, '/', 1) FROM images
    UNION
    SELECT split_part(l->>'digest', '/', 1) FROM images, jsonb_array_elements(layers) l
$$;
