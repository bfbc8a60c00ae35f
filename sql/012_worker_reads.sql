-- A worker reads the content of what it was assigned: its jobs' input
-- trees, the compile objects of its jobs' cache scopes, its own uploads and
-- the images. The second needs compile objects found by hash.
CREATE INDEX compile_results_object ON compile_results (object_hash);
