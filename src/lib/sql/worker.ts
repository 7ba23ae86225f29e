import {statement} from './statement.js'

/**
 * A task threw a permanent error: use up the job's attempts while we still hold its lock,
 * so graphile's own failure write leaves it exhausted and the next capture moves it.
 */
export const exhaustLockedJob = statement({
  id: 'worker.exhaust_locked_job',
  params: ['int8', 'text'],
  columns: {},
  sql: (s) => `update ${s}._private_jobs set attempts = max_attempts
where id = $1::bigint and locked_by = $2::text and attempts < max_attempts`,
})

/** Registers (or re-registers) a worker pool in the registry; heartbeat = now. */
export const registerWorker = statement({
  id: 'worker.register',
  params: ['text', 'text', 'int4', 'text', 'jsonb'],
  columns: {},
  sql: (s) => `insert into ${s}.backfill_workers (pool_id, hostname, pid, version, metadata)
values ($1::text, $2::text, $3::int, $4::text, $5::jsonb)
on conflict (pool_id) do update set hostname = excluded.hostname, pid = excluded.pid, version = excluded.version,
  metadata = excluded.metadata, last_heartbeat_at = now(), stopped_at = null`,
})

/**
 * The heartbeat; it also tells whether the Rust port's registry ($2: its worker_heartbeat
 * signature) exists, so a worker notices a Rust service's migration 20 without a query of its own.
 */
export const heartbeatWorker = statement({
  id: 'worker.heartbeat',
  params: ['text', 'text'],
  columns: {rust_registry: 'bool'},
  sql: (s) => `with beat as (
  update ${s}.backfill_workers set last_heartbeat_at = now() where pool_id = $1::text
)
select to_regprocedure($2::text) is not null as rust_registry`,
})

/** The heartbeat of a pool that reports live facts ($2, merged into metadata: e.g. its prefetch size). */
export const heartbeatWorkerWithFacts = statement({
  id: 'worker.heartbeat_with_facts',
  params: ['text', 'jsonb', 'text'],
  columns: {rust_registry: 'bool'},
  sql: (s) => `with beat as (
  update ${s}.backfill_workers set last_heartbeat_at = now(), metadata = coalesce(metadata, '{}'::jsonb) || $2::jsonb
  where pool_id = $1::text
)
select to_regprocedure($3::text) is not null as rust_registry`,
})

export const stopWorker = statement({
  id: 'worker.stop',
  params: ['text'],
  columns: {},
  sql: (s) => `update ${s}.backfill_workers set stopped_at = now(), last_heartbeat_at = now() where pool_id = $1::text`,
})

/** Forget workers that stopped (or went silent) long ago, so the registry stays small. */
export const pruneWorkers = statement({
  id: 'worker.prune',
  params: ['int4'],
  columns: {},
  sql: (s) => `delete from ${s}.backfill_workers w
where w.last_heartbeat_at < now() - make_interval(secs => $1::int)
  and not exists (select 1 from ${s}._private_jobs j where j.locked_by = w.pool_id)
  and not exists (select 1 from ${s}._private_job_queues q where q.locked_by = w.pool_id)`,
})

/**
 * On the way out, one statement per pool: the jobs of $2 still locked by this pool are the
 * completions graphile-worker lost (a batch write that failed; the handlers ran), deleted as
 * graphile's completeJobs would; whatever else the pool holds (an aborted job whose failure
 * write was lost, prefetched jobs) becomes runnable again now instead of after graphile's
 * 4-hour expiry (graphile's force_unlock_workers, for one id). In one statement, so a lost
 * completion is never unlocked without being recorded: if the database refuses, nothing
 * moves. A job of $2 no longer locked by this pool (its write did commit, or someone took it
 * since) is left alone. Safe to repeat.
 */
export const releaseOwnLocks = statement({
  id: 'worker.release_own_locks',
  params: ['text', '_int8'],
  columns: {completed: 'int4', jobs: 'int4', queues: 'int4'},
  sql: (s) => `with done as (
  delete from ${s}._private_jobs where locked_by = $1::text and id = any($2::bigint[]) returning 1
), j as (
  update ${s}._private_jobs set locked_at = null, locked_by = null, run_at = greatest(run_at, now())
  where locked_by = $1::text and id <> all($2::bigint[]) returning 1
), q as (
  update ${s}._private_job_queues set locked_at = null, locked_by = null where locked_by = $1::text returning 1
)
select (select count(*)::int from done) as completed, (select count(*)::int from j) as jobs,
  (select count(*)::int from q) as queues`,
})

/** Jobs still locked by one pool (shutdown checks). */
export const countLockedBy = statement({
  id: 'worker.count_locked_by',
  params: ['text'],
  columns: {count: 'int4'},
  sql: (s) => `select count(*)::int as count from ${s}._private_jobs where locked_by = $1::text`,
})

export const dlqSize = statement({
  id: 'worker.dlq_size',
  params: [],
  columns: {count: 'int8'},
  sql: (s) => `select count(*) as count from ${s}.backfill_dlq`,
})

/** Whether the Rust port's recovery functions (its migration 20) exist in this schema. */
export const rustHeartbeatAvailable = statement({
  id: 'worker.rust_heartbeat_available',
  params: ['text'],
  columns: {available: 'bool'},
  sql: () => `select to_regprocedure($1::text) is not null as available`,
})

/**
 * The Rust port's heartbeat, so its recovery sweeper (which treats lock holders without a
 * _private_workers row as orphans) leaves a live backfill worker's jobs alone.
 */
export const rustWorkerHeartbeat = statement({
  id: 'worker.rust_heartbeat',
  params: ['text', 'json?'],
  columns: {worker_heartbeat: 'void'},
  sql: (s) => `select ${s}.worker_heartbeat($1::text, $2::json)`,
})

export const rustWorkerDeregister = statement({
  id: 'worker.rust_deregister',
  params: ['text'],
  columns: {worker_deregister: 'void'},
  sql: (s) => `select ${s}.worker_deregister($1::text)`,
})

/**
 * The schema's latest migration and latest breaking one: graphile announces breaking
 * migrations database-wide without naming the schema, so a worker checks its own.
 */
export const migrationState = statement({
  id: 'worker.migration_state',
  params: [],
  columns: {latest: 'int4?', latest_breaking: 'int4?'},
  sql: (s) => `select max(id) as latest, max(id) filter (where breaking) as latest_breaking from ${s}.migrations`,
})
