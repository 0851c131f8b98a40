-- pgqueue 0002: what many nodes share — heartbeats, the leader lease, queue controls,
-- cron slots — and the indexes the pruner reads.

-- Every running node, one row per process. A job in `executing` whose attempted_by is
-- not a live row here (expires_at in the past, or no row) belongs to a dead node.
CREATE TABLE pgqueue_nodes (
    name         text PRIMARY KEY,
    queues       jsonb NOT NULL DEFAULT '{}',
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);

-- The leader lease: at most one row. Renewed only by its owner; taken over by another
-- node only once expired; deleted by a leader that stops.
CREATE TABLE pgqueue_leader (
    lock       boolean PRIMARY KEY DEFAULT true CHECK (lock),
    node       text NOT NULL,
    elected_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);

-- Runtime queue controls, persisted so a node started later honours them.
CREATE TABLE pgqueue_queues (
    name       text PRIMARY KEY,
    paused     boolean NOT NULL DEFAULT false,
    -- Overrides every node's configured concurrency for this queue while set.
    concurrency integer CHECK (concurrency IS NULL OR concurrency BETWEEN 1 AND 10000),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- One row per cron slot that produced a job. The primary key is what makes a slot
-- insert exactly one job cluster-wide, whoever is leader and whatever its clock says.
CREATE TABLE pgqueue_cron (
    name        text NOT NULL,
    slot        timestamptz NOT NULL,
    job_id      bigint,
    inserted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, slot)
);

-- The pruner deletes the oldest finished jobs of each final state in small batches.
CREATE INDEX pgqueue_jobs_completed_idx ON pgqueue_jobs (completed_at) WHERE state = 'completed';
CREATE INDEX pgqueue_jobs_discarded_idx ON pgqueue_jobs (discarded_at) WHERE state = 'discarded';
CREATE INDEX pgqueue_jobs_cancelled_idx ON pgqueue_jobs (cancelled_at) WHERE state = 'cancelled';
