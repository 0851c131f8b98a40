-- Queries of the job lifecycle: insert, claim, acknowledge, stage, hand back.

-- name: job_columns
id, state, queue, worker, args, meta, tags, errors, attempt, max_attempts, priority,
inserted_at, scheduled_at, attempted_at, completed_at, discarded_at, cancelled_at, attempted_by

-- name: wake_inserted_fragment
-- One notification per queue that the CTE `inserted` (id, state, queue, ...) gave
-- available jobs; Postgres delivers them when the transaction commits. One row.
SELECT count(pg_notify(%(channel)s, a.queue))
FROM (SELECT DISTINCT queue FROM inserted WHERE state = 'available') AS a

-- name: insert_jobs
-- One statement for one job or a hundred thousand. The batch is one JSON document, an
-- array of rows in input order: [worker, queue, args, meta, tags (a text[] literal),
-- priority, max_attempts, scheduled_at, delay s, unique_key, unique_states (literal),
-- period ms]. One parameter parses at C speed on both sides, where parallel
-- arrays of strings cost more to escape than the insert itself.
-- A unique job whose window overlaps an existing one of its key is skipped by ON
-- CONFLICT (the exclusion constraint makes that race-free) and the existing row is
-- returned with conflict = true. The constraint is named as the only arbiter: any other
-- clash (an id from the identity that a row already has, after a data-only restore)
-- must fail the statement, not drop its job and shift the rows after it. A row
-- committed by a concurrent transaction after this statement's snapshot is not visible
-- to the second branch; the client asks again for those (see _engine.insert_jobs).
-- Windows are measured on the database's clock.
-- Ids are drawn in input order, each job's from the identity's sequence as the input is
-- read (a volatile function in the target list is evaluated after the ORDER BY), and
-- inserted explicitly: the INSERT takes rows in another order (below), and jobs of one
-- batch share scheduled_at, so their ids are the order workers claim them in. A job
-- skipped by ON CONFLICT leaves its id unused, a gap; an id a row already has fails the
-- statement on the primary key, as the identity's default would.
-- Workers of the queues given available jobs are notified (at commit), once per queue.
WITH input AS (
    SELECT i.*,
           nextval(s.seq) AS id,
           COALESCE(i.at, now() + make_interval(secs => COALESCE(i.delay, 0))) AS due,
           -- The key's first two 60-bit pieces, each a range of one point (migrations/0007).
           CASE WHEN i.unique_key IS NOT NULL THEN int8range(i.hi, i.hi, '[]') END AS key_hi,
           CASE WHEN i.unique_key IS NOT NULL THEN int8range(i.lo, i.lo, '[]') END AS key_lo,
           CASE
               WHEN i.unique_key IS NULL THEN NULL
               WHEN i.period_ms IS NULL THEN '(,)'::int8range
               ELSE int8range(floor(extract(epoch FROM now()) * 1000)::bigint,
                              floor(extract(epoch FROM now()) * 1000)::bigint + i.period_ms)
           END AS key_window
    FROM (
        SELECT e->>0 AS worker, e->>1 AS queue, e->2 AS args, e->3 AS meta,
               (e->>4)::text[] AS tags, (e->>5)::smallint AS priority,
               (e->>6)::integer AS max_attempts, (e->>7)::timestamptz AS at,
               (e->>8)::float8 AS delay, e->>9 AS unique_key, e->>10 AS unique_states,
               (e->>11)::bigint AS period_ms, ord,
               ('x' || substr(e->>9, 1, 15))::bit(60)::bigint AS hi,
               ('x' || substr(e->>9, 16, 15))::bit(60)::bigint AS lo
        FROM jsonb_array_elements(%(rows)s::jsonb) WITH ORDINALITY AS x(e, ord)
    ) AS i
    -- The sequence looked up once, as in reserve_job_ids.
    CROSS JOIN (SELECT pg_get_serial_sequence(%(table)s, 'id')::regclass OFFSET 0) AS s(seq)
    ORDER BY i.ord
), inserted AS (
    INSERT INTO {schema}.pgqueue_jobs AS j
        (id, state, queue, worker, args, meta, tags, priority, max_attempts, scheduled_at,
         unique_key, unique_states, unique_key_hi, unique_key_lo, unique_window)
    SELECT id,
           CASE WHEN due > now() THEN 'scheduled' ELSE 'available' END::{schema}.pgqueue_state,
           queue, worker, args, meta, tags::text[], priority, max_attempts, due,
           unique_key, unique_states::{schema}.pgqueue_state[], key_hi, key_lo, key_window
    FROM input
    -- Jobs that are not unique in input order, then unique ones in key order: a job
    -- that meets a live duplicate in another transaction waits for it, so every batch
    -- must take its keys in one order, or two batches of the same keys in different
    -- orders would each hold a key the other waits for (a deadlock). Their ids were
    -- drawn in input order (above), whatever order they are inserted in.
    ORDER BY unique_key COLLATE "C" NULLS FIRST, ord
    ON CONFLICT ON CONSTRAINT pgqueue_jobs_unique DO NOTHING
    RETURNING id, state, inserted_at, scheduled_at, unique_key, queue
), woken AS (
    {wake_inserted_fragment}
)
-- Inserted rows come back lean (the client knows the rest: it sent it; it matches them
-- to its jobs by key, and those without one in order); rows that were already there
-- come back whole.
SELECT false AS conflict, id, state, inserted_at, scheduled_at, unique_key,
       NULL::text AS queue, NULL::text AS worker, NULL::jsonb AS args, NULL::jsonb AS meta,
       NULL::text[] AS tags, NULL::jsonb AS errors, NULL::integer AS attempt,
       NULL::integer AS max_attempts, NULL::smallint AS priority,
       NULL::timestamptz AS attempted_at, NULL::timestamptz AS completed_at,
       NULL::timestamptz AS discarded_at, NULL::timestamptz AS cancelled_at,
       NULL::text AS attempted_by
FROM inserted CROSS JOIN woken
UNION ALL
SELECT true AS conflict, j.id, j.state, j.inserted_at, j.scheduled_at, j.unique_key,
       j.queue, j.worker, j.args, j.meta, j.tags, j.errors, j.attempt, j.max_attempts,
       j.priority, j.attempted_at, j.completed_at, j.discarded_at, j.cancelled_at,
       j.attempted_by
FROM input AS i
-- Only the unique jobs that inserted nothing look for the row in their way, each with
-- one probe of the constraint's index (OFFSET 0 keeps the probe a subquery of its own:
-- joined, a table without statistics was planned as a scan of every live window per job).
CROSS JOIN LATERAL (
    SELECT * FROM {schema}.pgqueue_jobs AS o
    WHERE o.unique_key_hi && i.key_hi AND o.unique_key_lo && i.key_lo
      AND o.unique_window && i.key_window
      AND o.unique_window IS NOT NULL AND o.state = ANY (o.unique_states)
    OFFSET 0
) AS j
WHERE i.key_window IS NOT NULL AND i.id NOT IN (SELECT id FROM inserted)

-- name: insert_jobs_plain
-- The batch enqueue when no job in it is unique: nothing can conflict, so no ON CONFLICT,
-- no second branch, and one row back instead of one per job. The identity hands out ids
-- in the order the INSERT consumes rows, which ORDER BY ord makes input order, so the
-- sorted ids map onto the input one to one; the client derives each job's state from
-- now() (one value for the whole statement) and the scheduled times, which come back
-- only when some job of the batch was scheduled (%(timed)s). Rows are the first nine
-- fields of insert_jobs' document. Workers are notified as by insert_jobs.
WITH inserted AS (
    INSERT INTO {schema}.pgqueue_jobs
        (state, queue, worker, args, meta, tags, priority, max_attempts, scheduled_at)
    SELECT CASE WHEN d.due > now() THEN 'scheduled' ELSE 'available' END::{schema}.pgqueue_state,
           x.e->>1, x.e->>0, x.e->2, x.e->3, (x.e->>4)::text[], (x.e->>5)::smallint,
           (x.e->>6)::integer, d.due
    FROM jsonb_array_elements(%(rows)s::jsonb) WITH ORDINALITY AS x(e, ord)
    CROSS JOIN LATERAL (
        SELECT COALESCE((x.e->>7)::timestamptz,
                        now() + make_interval(secs => COALESCE((x.e->>8)::float8, 0)))
    ) AS d(due)
    ORDER BY x.ord
    RETURNING id, scheduled_at, state, queue
)
SELECT now(), array_agg(id ORDER BY id),
       array_agg(scheduled_at ORDER BY id) FILTER (WHERE %(timed)s),
       ({wake_inserted_fragment})
FROM inserted

-- name: reserve_job_ids
-- The first half of a large batch enqueue (see copy_jobs): %(count)s ids from the jobs
-- table's identity, and now(), which the client uses to decide each row's state and
-- scheduled_at as the one-statement insert would. Both halves run in one transaction,
-- so inserted_at (the column default) is this same now(). Ids are not transactional: a
-- batch that then fails leaves a gap, nothing else.
-- The sequence is looked up once (OFFSET 0 keeps the planner from folding the lookup
-- into the per-id expression, which cost 230 ms for 100,000 ids instead of 30).
SELECT now(), ARRAY(SELECT nextval(s.seq) FROM generate_series(1, %(count)s))
FROM (SELECT pg_get_serial_sequence(%(table)s, 'id')::regclass OFFSET 0) AS s(seq)

-- name: copy_jobs
-- The second half: the rows, ids included, through COPY (half the server time of
-- INSERT ... SELECT from a document, and no document to build). One statement, so the
-- batch is all or nothing; notify_queues then wakes the workers of the queues given
-- available jobs, in the same transaction, so at its commit.
COPY {schema}.pgqueue_jobs
    (id, state, queue, worker, args, meta, tags, priority, max_attempts, scheduled_at)
FROM STDIN

-- name: copy_jobs_now
-- copy_jobs for a batch in which every job is due now: state and scheduled_at are left
-- to their defaults ('available', now()), which spares the server parsing two values a
-- row (a fifth of the COPY's time).
COPY {schema}.pgqueue_jobs (id, queue, worker, args, meta, tags, priority, max_attempts)
FROM STDIN

-- name: copy_jobs_plain
-- copy_jobs_now for a batch whose every job also has the column defaults' meta and tags
-- (empty), priority (0) and max_attempts (20), the commonest batch: four columns a row
-- instead of eight, a fifth less of the server's time per row.
COPY {schema}.pgqueue_jobs (id, queue, worker, args) FROM STDIN

-- name: claim_columns
-- What a worker needs of a claimed job (its finish times are NULL, its node is known),
-- in the order of Job's fields, so a row becomes a Job positionally. The claim reads
-- binary results, where an enum would come back as bytes: state is sent as text.
id, worker, queue, args, state::text AS state, meta, tags, errors, attempt, max_attempts,
priority, inserted_at, scheduled_at, attempted_at

-- name: ack_jobs
-- Apply a batch of outcomes. Each row changes only if it is still executing the attempt
-- the outcome belongs to: a late result from a worker that lost the job changes nothing.
-- Planned as a nested loop from the (small) batch into the primary key, whatever the
-- statistics: the state test is written on state::text so that no index on state can
-- drive the join instead. (After an ANALYZE that saw no executing rows, the planner
-- would otherwise hash-join over the state index's `executing` range, which fills with
-- dead entries as jobs churn, and an id = ANY() pin made it rescan the batch per row.)
UPDATE {schema}.pgqueue_jobs AS j
SET state = a.state::{schema}.pgqueue_state,
    scheduled_at = CASE WHEN a.delay IS NULL THEN j.scheduled_at
                        ELSE now() + make_interval(secs => a.delay) END,
    completed_at = CASE WHEN a.state = 'completed' THEN now() ELSE j.completed_at END,
    discarded_at = CASE WHEN a.state = 'discarded' THEN now() ELSE j.discarded_at END,
    cancelled_at = CASE WHEN a.state = 'cancelled' THEN now() ELSE j.cancelled_at END,
    errors = CASE WHEN a.error IS NULL THEN j.errors ELSE j.errors || jsonb_build_array(a.error) END,
    meta = CASE WHEN a.meta IS NULL THEN j.meta ELSE j.meta || a.meta END,
    max_attempts = j.max_attempts + a.extra_attempts
FROM (
    -- A batch of plain completions sends only ids and attempts: the other arrays are
    -- NULL, which unnest pads to NULLs, read here as 'completed' and no extra attempts.
    SELECT u.id, u.attempt, COALESCE(u.state, 'completed') AS state, u.delay, u.error,
           u.meta, COALESCE(u.extra_attempts, 0) AS extra_attempts
    FROM unnest(
        %(ids)s::bigint[], %(attempts)s::integer[], %(states)s::text[], %(delays)s::float8[],
        %(errors)s::jsonb[], %(metas)s::jsonb[], %(extra_attempts)s::integer[]
    ) AS u(id, attempt, state, delay, error, meta, extra_attempts)
) AS a
WHERE j.id = a.id
  AND j.state::text = 'executing'
  AND j.attempt = a.attempt
RETURNING j.id

-- name: fetch_jobs
-- Complete the jobs the node has finished and claim up to %(limit)s jobs of one queue,
-- in one statement and one commit. Only plain completions ride here (ids and attempts;
-- any other outcome goes through ack_jobs): they need no join, so every part of the
-- statement is an index scan whatever the statistics say, and a producer's connection
-- can keep one generic plan (Engine.tune_claims) instead of planning each claim (a
-- quarter of the server's time at concurrency 10). Each row is completed only if it is
-- still executing the attempt its id's position in the arrays names: a late result
-- from a worker that lost the job changes nothing (the state test is on state::text
-- for the reason given in ack_jobs). The claim CTE takes row locks with SKIP LOCKED
-- in the fetch index's own order (other claimers skip, never wait); the UPDATE finds
-- the rows by primary key through an array. The completed rows were executing, so the
-- claim (which reads available rows) never touches them.
WITH acked AS (
    UPDATE {schema}.pgqueue_jobs AS j
    SET state = 'completed', completed_at = now()
    WHERE j.id = ANY (%(ids)s::bigint[])
      AND j.state::text = 'executing'
      AND j.attempt = (%(attempts)s::integer[])[array_position(%(ids)s::bigint[], j.id)]
    RETURNING j.id
), picked AS (
    SELECT id
    FROM {schema}.pgqueue_jobs
    WHERE state = 'available' AND queue = %(queue)s
    ORDER BY priority, scheduled_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE {schema}.pgqueue_jobs
SET state = 'executing',
    attempt = attempt + 1,
    attempted_at = now(),
    attempted_by = %(node)s
WHERE id = ANY (ARRAY(SELECT id FROM picked))
RETURNING {claim_columns}

-- name: stage_jobs
-- Make due scheduled and retryable jobs available and wake the workers of their queues.
WITH due AS (
    SELECT id
    FROM {schema}.pgqueue_jobs
    WHERE state IN ('scheduled', 'retryable') AND scheduled_at <= now()
    ORDER BY scheduled_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), staged AS (
    UPDATE {schema}.pgqueue_jobs
    SET state = 'available'
    WHERE id = ANY (ARRAY(SELECT id FROM due))
    RETURNING queue
)
SELECT queue, count(*) AS jobs, pg_notify(%(channel)s, queue)
FROM staged
GROUP BY queue

-- name: handback_jobs
-- A stopping node returns the jobs it could not finish. The attempt it had claimed is
-- given back: the job did nothing wrong.
UPDATE {schema}.pgqueue_jobs AS j
SET state = 'available',
    attempt = GREATEST(j.attempt - 1, 0),
    attempted_by = NULL
FROM unnest(%(ids)s::bigint[], %(attempts)s::integer[]) AS a(id, attempt)
WHERE j.id = a.id
  AND j.state::text = 'executing'
  AND j.attempt = a.attempt
RETURNING j.id, j.queue

-- name: release_orphans
-- Jobs a node finds executing in its name although no claim of its own produced them
-- (the reply of that claim was lost with its connection). Still its own, still that
-- attempt: back to available. The attempt is not given back, so attempt numbers stay
-- unique per run whatever happened to the lost reply.
UPDATE {schema}.pgqueue_jobs AS j
SET state = 'available',
    attempted_by = NULL
FROM unnest(%(ids)s::bigint[], %(attempts)s::integer[]) AS a(id, attempt)
WHERE j.id = a.id
  AND j.state::text = 'executing'
  AND j.attempt = a.attempt
  AND j.attempted_by = %(node)s
RETURNING j.id, j.queue

-- name: notify_queues
SELECT pg_notify(%(channel)s, q) FROM unnest(%(queues)s::text[]) AS q

-- name: get_job
SELECT {job_columns} FROM {schema}.pgqueue_jobs WHERE id = %(id)s

-- name: count_jobs_by_queue_state
SELECT queue, state::text, count(*) AS jobs
FROM {schema}.pgqueue_jobs
GROUP BY queue, state
ORDER BY queue, state

-- name: retry_jobs
-- Back to available, now (never an executing or available job). max_attempts grows when
-- the job had used them all, so it gets at least one more attempt. A unique job keeps
-- its window unless that would clash with a live job of its key, or with another job
-- retried here (the oldest keeps it): an operator's retry never fails on uniqueness.
WITH target AS (
    SELECT id, unique_key, unique_key_hi, unique_key_lo, unique_window
    FROM {schema}.pgqueue_jobs
    WHERE id = ANY (%(ids)s::bigint[])
      AND state IN ('discarded', 'cancelled', 'retryable', 'scheduled', 'completed')
    FOR UPDATE
), clash AS (
    SELECT t.id
    FROM target AS t
    WHERE t.unique_window IS NOT NULL
      AND (
          EXISTS (
              SELECT 1 FROM {schema}.pgqueue_jobs AS o
              WHERE o.unique_key_hi && t.unique_key_hi AND o.unique_key_lo && t.unique_key_lo
                AND o.unique_window && t.unique_window AND o.id <> t.id
                AND o.unique_window IS NOT NULL AND o.state = ANY (o.unique_states)
          )
          OR EXISTS (
              SELECT 1 FROM target AS u
              WHERE u.unique_key = t.unique_key AND u.id < t.id
                AND u.unique_window && t.unique_window
          )
      )
)
UPDATE {schema}.pgqueue_jobs AS j
SET state = 'available',
    scheduled_at = now(),
    max_attempts = GREATEST(j.max_attempts, j.attempt + 1),
    completed_at = NULL,
    discarded_at = NULL,
    cancelled_at = NULL,
    unique_window = CASE WHEN j.id IN (SELECT id FROM clash) THEN NULL ELSE j.unique_window END
FROM target
WHERE j.id = target.id
RETURNING j.id, j.queue

-- name: make_due
-- Testing helper: scheduled and retryable jobs of a queue become available now.
UPDATE {schema}.pgqueue_jobs
SET state = 'available', scheduled_at = now()
WHERE queue = %(queue)s AND state IN ('scheduled', 'retryable')

-- name: insert_job_plain
-- The commonest enqueue of all (Worker.enqueue(args)): one job, not unique, due now,
-- with the column defaults' meta, tags, priority and max_attempts. Three values and
-- the channel, by position; every other column is its default ('available', now()).
INSERT INTO {schema}.pgqueue_jobs (queue, worker, args)
VALUES (%s, %s, %s::jsonb)
RETURNING id, inserted_at, pg_notify(%s, queue)

-- name: insert_job_now
-- One job, not unique, due now, with options: a plain VALUES insert whose state and
-- scheduled_at are the column defaults ('available', now()); only the id and the
-- transaction's now() come back (a few hundredths faster than insert_job).
-- Every insert statement notifies its queue itself (migration 0004: cheaper than the
-- trigger); Postgres delivers it at commit.
INSERT INTO {schema}.pgqueue_jobs (queue, worker, args, meta, tags, priority, max_attempts)
VALUES (%(queue)s, %(worker)s, %(args)s::jsonb, %(meta)s::jsonb, %(tags)s::text[],
        %(priority)s, %(max_attempts)s)
RETURNING id, inserted_at, pg_notify(%(channel)s, queue)

-- name: insert_job
-- The common single enqueue (not unique): a plain INSERT, half the work of the batch
-- statement's document parsing and conflict lookup.
INSERT INTO {schema}.pgqueue_jobs
    (state, queue, worker, args, meta, tags, priority, max_attempts, scheduled_at)
SELECT CASE WHEN d.due > now() THEN 'scheduled' ELSE 'available' END::{schema}.pgqueue_state,
       %(queue)s, %(worker)s, %(args)s::jsonb, %(meta)s::jsonb, %(tags)s::text[],
       %(priority)s, %(max_attempts)s, d.due
FROM (
    SELECT COALESCE(%(at)s::timestamptz, now() + make_interval(secs => COALESCE(%(delay)s::float8, 0)))
) AS d(due)
RETURNING false AS conflict, id, state, inserted_at, scheduled_at, NULL::text AS unique_key,
          CASE WHEN state = 'available' THEN pg_notify(%(channel)s, queue) END
