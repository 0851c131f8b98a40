-- Queries of the migrator. Migrations themselves are the numbered files in migrations/.

-- name: migrate_lock
-- One migrator per schema at a time, cluster-wide; released at commit or on disconnect.
SELECT pg_advisory_xact_lock(hashtext('pgqueue.migrate'), hashtext(%(schema)s))

-- name: create_schema
CREATE SCHEMA IF NOT EXISTS {schema}

-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS {schema}.pgqueue_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)

-- name: migrations_table_exists
SELECT to_regclass(%(table)s) IS NOT NULL

-- name: applied_migrations
SELECT version, name, applied_at FROM {schema}.pgqueue_migrations ORDER BY version

-- name: set_migration_search_path
-- Migration files use unqualified names; they land in the target schema (the first on
-- the path), and the path is local to the migration's transaction.
SELECT set_config('search_path', %(search_path)s, true)

-- name: record_migration
INSERT INTO {schema}.pgqueue_migrations (version, name) VALUES (%(version)s, %(name)s)
