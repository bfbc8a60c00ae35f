-- Cluster state (issue 27): what each cluster should be, edited with
-- `kiln clusters set`. A cluster without a row here is not managed: its
-- fleet is whatever an operator starts by hand, as before.
--   min_workers, max_workers   the bounds the autoscaler keeps the fleet in
--   slots_per_worker           each deployed worker's slots
--   labels                     each deployed worker's labels (label.K = V)
--   worker_config              further worker settings to deploy, as
--                              {"key": value} of kiln-worker's config file
--                              (docs/operations.md, "Worker configuration")
--   provider                   what starts and stops workers: process (on
--                              this host, supervised by the controller),
--                              systemd (kiln-worker@.service instances) or
--                              command (an operator's executable)
--   provider_settings          the provider's own settings (a JSON object)
--   policy                     target_queue_wait_ms (0: off) and
--                              jobs_per_slot, scale_up_step, the scale-up
--                              and scale-down cooldowns and the scale-in
--                              delay (how long a worker stays idle before
--                              it is drained)
--   updated_by                 who made the last change (the audit trail,
--                              action cluster.set, keeps every change)
CREATE TABLE cluster_state (
    cluster_id              bigint PRIMARY KEY REFERENCES clusters(id) ON DELETE CASCADE,
    min_workers             integer NOT NULL CHECK (min_workers BETWEEN 0 AND 1000),
    max_workers             integer NOT NULL CHECK (max_workers BETWEEN 0 AND 1000),
    slots_per_worker        integer NOT NULL CHECK (slots_per_worker BETWEEN 1 AND 1024),
    labels                  jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(labels) = 'object'),
    worker_config           jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(worker_config) = 'object'),
    provider                text NOT NULL CHECK (provider IN ('process', 'systemd', 'command')),
    provider_settings       jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(provider_settings) = 'object'),
    target_queue_wait_ms    bigint NOT NULL CHECK (target_queue_wait_ms >= 0),
    jobs_per_slot           double precision NOT NULL CHECK (jobs_per_slot > 0),
    scale_up_step           integer NOT NULL CHECK (scale_up_step >= 1),
    scale_up_cooldown_ms    bigint NOT NULL CHECK (scale_up_cooldown_ms >= 0),
    scale_down_cooldown_ms  bigint NOT NULL CHECK (scale_down_cooldown_ms >= 0),
    scale_in_delay_ms       bigint NOT NULL CHECK (scale_in_delay_ms >= 0),
    updated_by              text NOT NULL,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CHECK (min_workers <= max_workers)
);

CREATE TRIGGER cluster_state_touch BEFORE UPDATE ON cluster_state
    FOR EACH ROW EXECUTE FUNCTION kiln_touch_updated_at();

-- The deployer's provider instances: what it started (a process, a unit, a
-- machine) and what became of it. An instance matches the worker that
-- registered with its work_dir. A row is written before the provider is
-- asked to start it and removed after it is destroyed, so a provider call
-- that fails leaves a row the next refresh reconciles (destroyed if it
-- never registers by register_deadline), never an instance without a row.
--   config_hash   what it was started with (cluster/plan.h ConfigHash): an
--                 instance on an older one is replaced
--   state         starting (until its worker registers), running, draining
CREATE TABLE cluster_instances (
    id                 text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'),
    cluster_id         bigint NOT NULL REFERENCES clusters(id) ON DELETE CASCADE,
    provider           text NOT NULL CHECK (provider IN ('process', 'systemd', 'command')),
    config_hash        text NOT NULL,
    state              text NOT NULL CHECK (state IN ('starting', 'running', 'draining')),
    work_dir           text NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    register_deadline  timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cluster_instances_cluster ON cluster_instances (cluster_id);

CREATE TRIGGER cluster_instances_touch BEFORE UPDATE ON cluster_instances
    FOR EACH ROW EXECUTE FUNCTION kiln_touch_updated_at();
