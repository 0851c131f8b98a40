-- pgqueue 0007: uniqueness on ranges of integers, so that it stays fast as unique jobs
-- accumulate.
--
-- 0001 put every unique job's window on one number line of numerics: the key's 128-bit
-- digest times 10^16, plus milliseconds. The GiST index behind the exclusion constraint
-- compares and measures those 51-digit numbers in floating point, which cannot tell a
-- window from its neighbours, so the index lost its shape as it grew. Measured on the
-- 2-core bench machine, one batch of 5,000 new unique jobs beside 25,000 others: 41.8 s
-- (0.74 s on an empty table), and one duplicate enqueue 40 ms; a probe of the index read
-- 44 pages for its one row.
--
-- The same rule ("one live job per key per sliding window", race-free) is now enforced
-- over three ranges of bigint, all of them core GiST range types (no extension needed):
-- the key's first two 60-bit pieces (120 bits of the digest, hex digits 1-15 and 16-30;
-- 60 so that a point's range [x, x + 1) never overflows a bigint), each as a range of
-- one point, and the window in milliseconds since the epoch, [enqueued, enqueued +
-- period), or unbounded for a unique job without a period. Two rows conflict when all
-- three overlap: same key, and windows that overlap. The same probe now reads 4 pages.
--
-- unique_range goes; unique_key (the digest in hex) and unique_states stay. Existing
-- unique jobs keep their windows: a window of 0001's line is the key's stretch start
-- (a multiple of 10^16) plus the window in milliseconds, so the remainder gives it back
-- (the upper bound unbounded where it would pass a bigint's), the whole stretch (no
-- period) becomes an unbounded window, and an empty range holds nothing. Within a key
-- every window pgqueue wrote moves by the same amount, so no two rows that did not
-- conflict before conflict now, and the constraint builds. Keys are read from
-- unique_key as pgqueue writes it (64 hex digits); any other text a row holds there is
-- hashed first.
--
-- The old constraint goes first: updating the unique rows beside its index would cost
-- a probe and an entry of the slow kind per row: 93 s for 100,000 unique rows, 6 s with
-- it dropped first. Only the rows of unique jobs are rewritten, under this migration's
-- lock; the constraint's index is then built from the live ones.
--
-- Rolling upgrades: a process still on an older pgqueue fails its unique enqueues and
-- its retries (unique_range no longer exists) until it is replaced; its other enqueues
-- and its workers are unaffected. Failing is deliberate: a column kept for it would take its
-- unique jobs with no window, and let their duplicates in.

ALTER TABLE pgqueue_jobs
    DROP CONSTRAINT pgqueue_jobs_unique,
    ADD COLUMN unique_key_hi int8range,
    ADD COLUMN unique_key_lo int8range,
    ADD COLUMN unique_window int8range;

UPDATE pgqueue_jobs AS j
SET unique_key_hi = int8range(k.hi, k.hi, '[]'),
    unique_key_lo = int8range(k.lo, k.lo, '[]'),
    unique_window = CASE
        WHEN j.unique_range IS NULL OR isempty(j.unique_range) THEN NULL
        WHEN lower_inf(j.unique_range) OR upper_inf(j.unique_range)
             OR (k.start = 0 AND k.width = 10000000000000000) THEN '(,)'::int8range
        ELSE int8range(k.start::bigint,
                       CASE WHEN k.start + k.width <= 9223372036854775807
                            THEN (k.start + k.width)::bigint END)
    END,
    unique_range = NULL  -- the new row version leaves the old numbers behind
FROM (
    SELECT id,
           ('x' || substr(h, 1, 15))::bit(60)::bigint AS hi,
           ('x' || substr(h, 16, 15))::bit(60)::bigint AS lo,
           mod(lower(unique_range), 10000000000000000) AS start,
           upper(unique_range) - lower(unique_range) AS width
    FROM (
        SELECT id, unique_range,
               CASE WHEN unique_key ~ '^[0-9a-f]{30}' THEN unique_key
                    ELSE md5(unique_key) END AS h
        FROM pgqueue_jobs
        WHERE unique_key IS NOT NULL
    ) AS keyed
) AS k
WHERE j.id = k.id;

ALTER TABLE pgqueue_jobs
    DROP COLUMN unique_range,
    ADD CONSTRAINT pgqueue_jobs_unique EXCLUDE USING gist (
        unique_key_hi WITH &&, unique_key_lo WITH &&, unique_window WITH &&
    ) WHERE (unique_window IS NOT NULL AND state = ANY (unique_states));
