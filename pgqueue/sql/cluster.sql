-- Queries of the cluster: node heartbeats, the leader lease, rescue, pruning, cron and
-- queue controls.

-- name: register_node
INSERT INTO {schema}.pgqueue_nodes AS n (name, queues, expires_at)
VALUES (%(node)s, %(queues)s::jsonb, now() + make_interval(secs => %(expiry)s))
ON CONFLICT (name) DO UPDATE
SET queues = EXCLUDED.queues, heartbeat_at = now(), expires_at = EXCLUDED.expires_at

-- name: heartbeat_node
-- Returns the row only if it was still alive: a node that finds itself expired knows
-- its jobs may have been rescued and runs the ownership check at once.
WITH previous AS (
    SELECT expires_at > now() AS alive FROM {schema}.pgqueue_nodes WHERE name = %(node)s
)
INSERT INTO {schema}.pgqueue_nodes AS n (name, queues, expires_at)
VALUES (%(node)s, %(queues)s::jsonb, now() + make_interval(secs => %(expiry)s))
ON CONFLICT (name) DO UPDATE
SET queues = EXCLUDED.queues, heartbeat_at = now(), expires_at = EXCLUDED.expires_at
RETURNING COALESCE((SELECT alive FROM previous), false) AS was_alive

-- name: delete_node
DELETE FROM {schema}.pgqueue_nodes WHERE name = %(node)s

-- name: lost_jobs
-- Of the jobs this node is running, those that are no longer its to run: cancelled,
-- rescued and claimed by another node, or gone. Each with the attempt it was asked
-- about: by the answer, that job may be running here again as a newer attempt.
SELECT r.id, r.attempt
FROM unnest(%(ids)s::bigint[], %(attempts)s::integer[]) AS r(id, attempt)
LEFT JOIN {schema}.pgqueue_jobs AS j ON j.id = r.id
WHERE j.id IS NULL
   OR j.state <> 'executing'
   OR j.attempt <> r.attempt
   OR j.attempted_by IS DISTINCT FROM %(node)s

-- name: take_leadership
-- Acquire or renew the lease. Only the owner renews; another node takes it only once it
-- has expired. Returns a row when this node holds the lease afterwards.
INSERT INTO {schema}.pgqueue_leader AS l (lock, node, elected_at, expires_at)
VALUES (true, %(node)s, now(), now() + make_interval(secs => %(ttl)s))
ON CONFLICT (lock) DO UPDATE
SET node = EXCLUDED.node,
    elected_at = CASE WHEN l.node = EXCLUDED.node THEN l.elected_at ELSE now() END,
    expires_at = EXCLUDED.expires_at
WHERE l.node = EXCLUDED.node OR l.expires_at < now()
RETURNING node, elected_at

-- name: release_leadership
DELETE FROM {schema}.pgqueue_leader WHERE node = %(node)s

-- name: current_leader
SELECT node, elected_at, expires_at, expires_at > now() AS valid FROM {schema}.pgqueue_leader

-- name: rescue_jobs
-- Executing jobs whose node is not alive: back to available, or discarded when out of
-- attempts, each with an error entry that says why. Live means a node row that has not
-- expired: a job that runs for hours on a heartbeating node is never touched.
WITH lost AS (
    SELECT j.id
    FROM {schema}.pgqueue_jobs AS j
    WHERE j.state = 'executing'
      AND NOT EXISTS (
          SELECT 1 FROM {schema}.pgqueue_nodes AS n
          WHERE n.name = j.attempted_by AND n.expires_at > now()
      )
    -- No ORDER BY: it could lead the planner to walk the primary key of the whole table
    -- instead of the executing index (a few rows per node).
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE {schema}.pgqueue_jobs AS j
SET state = CASE WHEN j.attempt >= j.max_attempts THEN 'discarded' ELSE 'available' END::{schema}.pgqueue_state,
    discarded_at = CASE WHEN j.attempt >= j.max_attempts THEN now() ELSE j.discarded_at END,
    errors = j.errors || jsonb_build_array(jsonb_build_object(
        'attempt', j.attempt,
        'at', now(),
        'error', 'Rescued',
        'message', 'node ' || COALESCE(j.attempted_by, '(unknown)')
                   || ' stopped heartbeating while running this attempt',
        'traceback', ''
    )),
    attempted_by = NULL
WHERE j.id = ANY (ARRAY(SELECT id FROM lost))
RETURNING j.id, j.queue, j.state::text

-- name: prune_jobs_completed
DELETE FROM {schema}.pgqueue_jobs
WHERE id = ANY (ARRAY(
    SELECT id FROM {schema}.pgqueue_jobs
    WHERE state = 'completed' AND completed_at < now() - make_interval(secs => %(age)s)
    ORDER BY completed_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
))

-- name: prune_jobs_discarded
DELETE FROM {schema}.pgqueue_jobs
WHERE id = ANY (ARRAY(
    SELECT id FROM {schema}.pgqueue_jobs
    WHERE state = 'discarded' AND discarded_at < now() - make_interval(secs => %(age)s)
    ORDER BY discarded_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
))

-- name: prune_jobs_cancelled
DELETE FROM {schema}.pgqueue_jobs
WHERE id = ANY (ARRAY(
    SELECT id FROM {schema}.pgqueue_jobs
    WHERE state = 'cancelled' AND cancelled_at < now() - make_interval(secs => %(age)s)
    ORDER BY cancelled_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
))

-- name: jobs_dead_rows
-- Dead and live rows of the jobs table as the statistics count them, and whether this
-- role may vacuum it (VACUUM of a table one does not own only warns and skips).
SELECT s.n_dead_tup, s.n_live_tup, pg_has_role(c.relowner, 'USAGE')
FROM pg_stat_user_tables AS s
JOIN pg_class AS c ON c.oid = s.relid
WHERE s.relid = %(table)s::regclass

-- name: vacuum_jobs
VACUUM (ANALYZE) {schema}.pgqueue_jobs

-- name: prune_nodes
DELETE FROM {schema}.pgqueue_nodes WHERE expires_at < now() - make_interval(secs => %(age)s)

-- name: prune_cron
DELETE FROM {schema}.pgqueue_cron WHERE slot < now() - make_interval(secs => %(age)s)

-- name: db_now
SELECT now()

-- name: last_cron_slots
SELECT name, max(slot) FROM {schema}.pgqueue_cron WHERE name = ANY (%(names)s::text[]) GROUP BY name

-- name: insert_cron_job
-- The slot row and its job in one statement: a slot another leader (or this one, a
-- moment ago) already claimed inserts nothing. The job's id is drawn first so the slot
-- row can record it (a CTE cannot see rows inserted by a sibling).
WITH next AS (
    SELECT nextval(pg_get_serial_sequence(%(table)s, 'id')) AS id
), claimed AS (
    INSERT INTO {schema}.pgqueue_cron (name, slot, job_id)
    SELECT %(name)s, %(slot)s, next.id FROM next
    ON CONFLICT (name, slot) DO NOTHING
    RETURNING name, slot, job_id
)
INSERT INTO {schema}.pgqueue_jobs
    (id, state, queue, worker, args, meta, tags, priority, max_attempts)
SELECT claimed.job_id, 'available', %(queue)s, %(worker)s, %(args)s::jsonb,
       jsonb_build_object('cron', claimed.name, 'cron_slot', claimed.slot),
       %(tags)s::text[], %(priority)s, %(max_attempts)s
FROM claimed
RETURNING id, pg_notify(%(channel)s, queue)

-- name: queue_controls
SELECT name, paused, concurrency, updated_at FROM {schema}.pgqueue_queues ORDER BY name

-- name: set_queue_paused
INSERT INTO {schema}.pgqueue_queues AS q (name, paused) VALUES (%(queue)s, %(paused)s)
ON CONFLICT (name) DO UPDATE SET paused = EXCLUDED.paused, updated_at = now()

-- name: set_queue_concurrency
INSERT INTO {schema}.pgqueue_queues AS q (name, concurrency) VALUES (%(queue)s, %(concurrency)s)
ON CONFLICT (name) DO UPDATE SET concurrency = EXCLUDED.concurrency, updated_at = now()

-- name: known_queue
SELECT EXISTS (SELECT 1 FROM {schema}.pgqueue_queues WHERE name = %(queue)s)
    OR EXISTS (SELECT 1 FROM {schema}.pgqueue_nodes WHERE expires_at > now() AND queues ? %(queue)s)
    -- A backlog is one probe of the fetch index; other jobs are in the (state, queue)
    -- index of every state but available (migration 0003).
    OR EXISTS (
        SELECT 1 FROM {schema}.pgqueue_jobs WHERE state = 'available' AND queue = %(queue)s
    )
    OR EXISTS (
        SELECT 1 FROM {schema}.pgqueue_jobs WHERE state <> 'available' AND queue = %(queue)s
    )

-- name: cancel_jobs
-- Cancel jobs that have not finished. Executing ones are cancelled in the row at once
-- (their node's late result is then ignored by the ack guard) and signalled to the node.
WITH target AS (
    SELECT id, state AS previous, attempted_by
    FROM {schema}.pgqueue_jobs
    WHERE id = ANY (%(ids)s::bigint[])
      AND state IN ('scheduled', 'available', 'executing', 'retryable')
    FOR UPDATE
)
UPDATE {schema}.pgqueue_jobs AS j
SET state = 'cancelled',
    cancelled_at = now(),
    errors = j.errors || jsonb_build_array(jsonb_build_object(
        'attempt', j.attempt, 'at', now(), 'error', 'Cancelled',
        'message', %(reason)s::text, 'traceback', ''
    ))
FROM target
WHERE j.id = target.id
RETURNING j.id, target.previous::text, target.attempted_by

-- name: list_nodes
SELECT n.name, n.queues, n.started_at, n.heartbeat_at, n.expires_at,
       n.expires_at > now() AS alive,
       EXISTS (
           SELECT 1 FROM {schema}.pgqueue_leader AS l WHERE l.node = n.name AND l.expires_at > now()
       ) AS leader
FROM {schema}.pgqueue_nodes AS n
ORDER BY n.name

-- name: node_executing_jobs
-- What the database thinks this node is running; the node compares it with what it
-- knows it runs, to find claims whose reply was lost with a dropped connection.
SELECT id, attempt FROM {schema}.pgqueue_jobs WHERE state = 'executing' AND attempted_by = %(node)s

-- name: notify_control
SELECT pg_notify(%(channel)s, %(payload)s)
