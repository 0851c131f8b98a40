-- pgqueue 0004: every insert pgqueue runs sends its own notification; the trigger goes.
--
-- The statement trigger of 0001 woke workers for any INSERT, at a price paid by every
-- enqueue: its transition table, a PL/pgSQL call and a query of that table. A single
-- enqueue spent about 30 µs more in the server with it than with the same pg_notify
-- written into its own statement (4,264 against 4,784 enqueues/s on one connection,
-- medians of 5), and a 100,000-job COPY about 25 ms more.
--
-- pgqueue's insert statements now call pg_notify for the queues they make available
-- (sql/jobs.sql, sql/cluster.sql). Postgres still delivers a notification only when its
-- transaction commits, so an enqueue inside the caller's transaction wakes workers at
-- commit, as before. A row inserted by other SQL is found by the workers' poll (1 s by
-- default) unless that SQL also runs pg_notify('<schema>.pgqueue_jobs', <queue>).
DROP TRIGGER IF EXISTS pgqueue_jobs_notify_insert ON pgqueue_jobs;
DROP FUNCTION IF EXISTS pgqueue_notify_insert();
