-- The autoscaler's decisions (issue 27, item 3): one row each time the
-- farm's leader changed a cluster's desired worker count, held a change
-- back (a cooldown), or carried out steps of the cluster's plan (`kiln
-- clusters history`). The last row's desired is the cluster's desired
-- count: `kiln clusters plan` and `apply` aim at it, and a new leader goes
-- on from it (and from its cooldowns: decided_at of the last scale_up or
-- scale_down).
--   controller     the leader that decided
--   queued_jobs, running_jobs, queued_actions, oldest_wait_ms, slots,
--   serving        what it saw: the cluster's queued jobs (those its
--                  workers may claim), jobs in setup or running on its
--                  workers, remote actions waiting at the leader, the
--                  oldest queued job's wait, the slots of its connected
--                  healthy workers, and the instances serving
--   previous, desired   the desired count before and after
--   action         scale_up, scale_down, hold (a change held back) or
--                  reconcile (the count unchanged, plan steps carried out)
--   reason         why, in words
--   steps          the plan's steps it carried out ("start default-1a2b3c")
--   error          the first step that failed (retried with backoff)
CREATE TABLE cluster_decisions (
    id              bigserial PRIMARY KEY,
    cluster_id      bigint NOT NULL REFERENCES clusters(id) ON DELETE CASCADE,
    decided_at      timestamptz NOT NULL DEFAULT now(),
    controller      text NOT NULL,
    queued_jobs     bigint NOT NULL CHECK (queued_jobs >= 0),
    running_jobs    bigint NOT NULL CHECK (running_jobs >= 0),
    queued_actions  bigint NOT NULL CHECK (queued_actions >= 0),
    oldest_wait_ms  bigint NOT NULL CHECK (oldest_wait_ms >= 0),
    slots           bigint NOT NULL CHECK (slots >= 0),
    serving         integer NOT NULL CHECK (serving >= 0),
    previous        integer NOT NULL CHECK (previous >= 0),
    desired         integer NOT NULL CHECK (desired BETWEEN 0 AND 1000),
    action          text NOT NULL CHECK (action IN ('scale_up', 'scale_down', 'hold', 'reconcile')),
    reason          text NOT NULL,
    steps           jsonb NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(steps) = 'array'),
    error           text NOT NULL DEFAULT ''
);
CREATE INDEX cluster_decisions_cluster ON cluster_decisions (cluster_id, id DESC);
