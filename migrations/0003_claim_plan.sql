-- pgqueue 0003: no index may compete with the fetch index for the claim.
--
-- pgqueue_jobs_state_queue_idx (state, queue) matched the claim's `state = 'available'
-- AND queue = $1` as well as the fetch index does. On a table that had not been
-- analyzed yet (a bulk enqueue of 60,000 jobs or more, before autovacuum gets to it) the
-- planner estimated one row there and chose it: every claim then read and sorted the
-- whole backlog (31 ms a claim at 100,000 jobs instead of 0.5 ms; a worker at
-- concurrency 10 fell from ~8,000 to ~330 jobs/s).
--
-- Operators still count and look up jobs by state and queue: the same index, without
-- available rows. Its predicate contradicts the claim's, so the planner cannot use it
-- there, and available rows are counted from the fetch index (queue leads it).
DROP INDEX IF EXISTS pgqueue_jobs_state_queue_idx;

CREATE INDEX pgqueue_jobs_state_queue_idx ON pgqueue_jobs (state, queue)
    WHERE state <> 'available';
