-- Queries of the operator tools: `pgqueue inspect / retry / cancel`, the Prometheus
-- gauges. Names start with ops_ so they never collide with the engine's.

-- name: ops_table_estimate
-- Live rows of the jobs table, estimated the way the planner does: the density recorded
-- by the last VACUUM/ANALYZE (reltuples / relpages) times the table's current size in
-- pages, so growth since the last analyze counts. -1 when the table was never analyzed.
SELECT CASE
           WHEN c.reltuples < 0 THEN -1
           WHEN c.relpages = 0 THEN c.reltuples::bigint
           ELSE (c.reltuples / c.relpages
                 * (pg_relation_size(c.oid) / current_setting('block_size')::integer))::bigint
       END AS rows
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = 'pgqueue_jobs' AND c.relkind = 'r'

-- name: ops_state_fractions
-- The fraction of rows in each state, as the last ANALYZE measured it (no rows: never
-- analyzed). Decides which states are small enough to count exactly.
SELECT v.state, v.fraction
FROM pg_stats s
CROSS JOIN LATERAL unnest(s.most_common_vals::text::text[], s.most_common_freqs)
    AS v(state, fraction)
WHERE s.schemaname = %(schema)s AND s.tablename = 'pgqueue_jobs' AND s.attname = 'state'

-- name: ops_count_jobs
-- Exact counts per queue and state of the given states: index-only scans. Available
-- rows are counted from the fetch index (queue leads it), executing and completed rows
-- from their own indexes (which carry the queue since migration 0006, so that claims and
-- acks write no entry into the state and queue index), every other state from
-- pgqueue_jobs_state_queue_idx, which leaves available rows out so that the claim can
-- never be planned onto it (migration 0003). Each branch names its state as a constant,
-- which is what lets the planner prove it inside an index's predicate; the branches of
-- states not asked for are cut before they run. (One branch for every state but
-- available, `state = ANY` on that index, counts the same rows but groups by two keys:
-- 59 ms against 37 on 1,000,000 rows.)
SELECT queue, 'available' AS state, count(*) AS jobs FROM {schema}.pgqueue_jobs
WHERE state = 'available' AND 'available' = ANY (%(states)s::text[]) GROUP BY queue
UNION ALL
SELECT queue, 'scheduled', count(*) FROM {schema}.pgqueue_jobs
WHERE state = 'scheduled' AND 'scheduled' = ANY (%(states)s::text[]) GROUP BY queue
UNION ALL
SELECT queue, 'retryable', count(*) FROM {schema}.pgqueue_jobs
WHERE state = 'retryable' AND 'retryable' = ANY (%(states)s::text[]) GROUP BY queue
UNION ALL
SELECT queue, 'executing', count(*) FROM {schema}.pgqueue_jobs
WHERE state = 'executing' AND 'executing' = ANY (%(states)s::text[]) GROUP BY queue
UNION ALL
SELECT queue, 'completed', count(*) FROM {schema}.pgqueue_jobs
WHERE state = 'completed' AND 'completed' = ANY (%(states)s::text[]) GROUP BY queue
UNION ALL
SELECT queue, 'discarded', count(*) FROM {schema}.pgqueue_jobs
WHERE state = 'discarded' AND 'discarded' = ANY (%(states)s::text[]) GROUP BY queue
UNION ALL
SELECT queue, 'cancelled', count(*) FROM {schema}.pgqueue_jobs
WHERE state = 'cancelled' AND 'cancelled' = ANY (%(states)s::text[]) GROUP BY queue

-- name: ops_sample_jobs
-- Rows per queue and state of the given states in a block sample of the table (SYSTEM
-- reads whole random pages: cheap at any size). The caller scales the counts. A fixed
-- seed samples the same pages every time while the table keeps its size, so a refresh
-- every few seconds finds them in shared buffers instead of reading new ones from disk.
SELECT queue, state::text, count(*) AS jobs
FROM {schema}.pgqueue_jobs TABLESAMPLE SYSTEM (%(percent)s::real) REPEATABLE (20240)
WHERE state = ANY (%(states)s::text[]::{schema}.pgqueue_state[])
GROUP BY queue, state

-- name: ops_oldest_available
-- Seconds the oldest available job of each queue has been waiting. The fetch index is
-- (queue, priority, scheduled_at) for available rows, so min(scheduled_at) per queue is
-- the least of ten one-row probes (one per priority), whatever the backlog's size.
SELECT q.queue, extract(epoch FROM now() - min(o.scheduled_at))::float8 AS age
FROM unnest(%(queues)s::text[]) AS q(queue)
CROSS JOIN generate_series(0, 9) AS p(priority)
CROSS JOIN LATERAL (
    SELECT j.scheduled_at
    FROM {schema}.pgqueue_jobs j
    WHERE j.state = 'available' AND j.queue = q.queue AND j.priority = p.priority
    ORDER BY j.scheduled_at
    LIMIT 1
) AS o
GROUP BY q.queue

-- name: ops_list_jobs
-- Every filter is optional (NULL = any). Newest first; %(limit)s rows.
SELECT {job_columns}
FROM {schema}.pgqueue_jobs
WHERE (%(state)s::text IS NULL OR state = %(state)s::text::{schema}.pgqueue_state)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(worker)s::text IS NULL OR worker = %(worker)s::text)
  AND (%(tag)s::text IS NULL OR tags @> ARRAY[%(tag)s::text])
  AND (%(node)s::text IS NULL OR attempted_by = %(node)s::text)
  AND (%(args)s::jsonb IS NULL OR args @> %(args)s::jsonb)
ORDER BY id DESC
LIMIT %(limit)s

-- name: ops_select_job_ids
-- Ids of jobs in one state matching the optional filters, oldest first, one batch.
SELECT id
FROM {schema}.pgqueue_jobs
WHERE state = %(state)s::text::{schema}.pgqueue_state
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(worker)s::text IS NULL OR worker = %(worker)s::text)
  AND (%(tag)s::text IS NULL OR tags @> ARRAY[%(tag)s::text])
  AND id > %(after)s
ORDER BY id
LIMIT %(limit)s

-- name: ops_count_matching
SELECT count(*)
FROM {schema}.pgqueue_jobs
WHERE state = %(state)s::text::{schema}.pgqueue_state
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(worker)s::text IS NULL OR worker = %(worker)s::text)
  AND (%(tag)s::text IS NULL OR tags @> ARRAY[%(tag)s::text])

-- name: ops_job_states
-- The state of each given id that exists (to explain why an id was left alone).
SELECT id, state::text FROM {schema}.pgqueue_jobs WHERE id = ANY (%(ids)s::bigint[])

-- name: ops_count_prunable
-- What `pgqueue prune` would delete: final-state jobs that reached their state more
-- than its age (in seconds) ago (the pruner's partial indexes on the state's timestamp).
SELECT
    (SELECT count(*) FROM {schema}.pgqueue_jobs
     WHERE state = 'completed' AND completed_at < now() - make_interval(secs => %(completed)s)),
    (SELECT count(*) FROM {schema}.pgqueue_jobs
     WHERE state = 'discarded' AND discarded_at < now() - make_interval(secs => %(discarded)s)),
    (SELECT count(*) FROM {schema}.pgqueue_jobs
     WHERE state = 'cancelled' AND cancelled_at < now() - make_interval(secs => %(cancelled)s))

-- name: ops_executing_by_node
-- Executing jobs per claiming node (the executing index holds exactly these rows).
SELECT attempted_by, count(*) AS jobs
FROM {schema}.pgqueue_jobs
WHERE state = 'executing'
GROUP BY attempted_by
