import {statement} from './statement.js'

/**
 * Lock owners and liveness evidence (read-only), and the two release statements of
 * `locks clean`. Lock times travel as exact microsecond ISO text (`lock_token`): a JS Date
 * keeps milliseconds only, and the release statements compare the lock they release
 * with the one that was judged, to the microsecond.
 */

/** application_name of a backfill worker pool's presence session, without the pool id. */
export const PRESENCE_PREFIX = 'backfill-worker:'

/** The SQL test "a presence session of this owner is connected" (owner expression given). */
function presenceSession(ownerExpression: string): string {
  // application_name is truncated to 63 bytes by the server (NAMEDATALEN - 1).
  return `exists (select 1 from pg_stat_activity a
                   where a.datname = current_database()
                     and a.application_name = left('${PRESENCE_PREFIX}' || ${ownerExpression}, 63))`
}

const exactTime = (column: string): string => `to_char(${column} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`

/** Every locked job, oldest lock first (served by idx_backfill_jobs_locked when present). */
export const jobLocks = statement({
  id: 'locks.job_locks',
  params: [],
  columns: {
    job_id: 'int8',
    queue_id: 'int4?',
    queue_name: 'text?',
    task_identifier: 'text',
    locked_by: 'text?',
    locked_at: 'text',
    age_ms: 'float8',
    attempts: 'int4',
    max_attempts: 'int4',
    run_at: 'timestamptz',
    resilient: 'bool',
  },
  sql: (s) => `select j.id as job_id, j.job_queue_id as queue_id, q.queue_name::text as queue_name,
       coalesce(t.identifier, '(unknown task ' || j.task_id || ')')::text as task_identifier,
       j.locked_by, ${exactTime('j.locked_at')} as locked_at,
       (extract(epoch from (now() - j.locked_at)) * 1000)::float8 as age_ms,
       j.attempts::int as attempts, j.max_attempts::int as max_attempts, j.run_at,
       coalesce(j.flags ? 'infrastructure_resilient', false) as resilient
from ${s}._private_jobs j
left join ${s}._private_tasks t on t.id = j.task_id
left join ${s}._private_job_queues q on q.id = j.job_queue_id
where j.locked_at is not null
order by j.locked_at, j.id`,
})

/** Every locked queue (graphile keeps a serial queue locked while one of its jobs runs). */
export const queueLocks = statement({
  id: 'locks.queue_locks',
  params: [],
  columns: {queue_id: 'int4', queue_name: 'text', locked_by: 'text?', locked_at: 'text', age_ms: 'float8'},
  sql: (
    s,
  ) => `select q.id as queue_id, q.queue_name::text as queue_name, q.locked_by, ${exactTime('q.locked_at')} as locked_at,
       (extract(epoch from (now() - q.locked_at)) * 1000)::float8 as age_ms
from ${s}._private_job_queues q
where q.locked_at is not null
order by q.locked_at, q.id`,
})

/**
 * The server's clock, and when it started: heartbeats older than a restart prove nothing
 * (every session was cut and workers need a moment to come back), so ages count from there.
 */
export const serverClock = statement({
  id: 'locks.server_clock',
  params: [],
  columns: {now: 'timestamptz', started_at: 'timestamptz', uptime_ms: 'float8'},
  sql: () => `select now() as now, pg_postmaster_start_time() as started_at,
       (extract(epoch from (now() - pg_postmaster_start_time())) * 1000)::float8 as uptime_ms`,
})

/** Presence sessions of backfill worker pools connected to this database, by pool id. */
export const presenceSessions = statement({
  id: 'locks.presence_sessions',
  params: [],
  columns: {pool_id: 'text', sessions: 'int4'},
  sql: () => `select substr(a.application_name, ${PRESENCE_PREFIX.length + 1})::text as pool_id, count(*)::int as sessions
from pg_stat_activity a
where a.datname = current_database() and a.application_name like '${PRESENCE_PREFIX}%'
group by 1
order by 1`,
})

/** backfill_workers rows for the given pool ids, plus every row seen within $2 ms. */
export const registryRows = statement({
  id: 'locks.registry_rows',
  params: ['_text', 'float8'],
  columns: {
    pool_id: 'text',
    hostname: 'text',
    pid: 'int4',
    started_at: 'timestamptz',
    last_heartbeat_at: 'timestamptz',
    stopped_at: 'timestamptz?',
    version: 'text?',
    heartbeat_interval_ms: 'float8?',
    prefetch_size: 'int4?',
    heartbeat_age_ms: 'float8',
  },
  prepare: false,
  sql: (s) => `select w.pool_id, w.hostname, w.pid, w.started_at, w.last_heartbeat_at, w.stopped_at, w.version,
       case when jsonb_typeof(w.metadata -> 'heartbeatIntervalMs') = 'number'
            then (w.metadata ->> 'heartbeatIntervalMs')::float8 end as heartbeat_interval_ms,
       case when jsonb_typeof(w.metadata -> 'prefetchSize') = 'number'
            then (w.metadata ->> 'prefetchSize')::int end as prefetch_size,
       (extract(epoch from (now() - w.last_heartbeat_at)) * 1000)::float8 as heartbeat_age_ms
from ${s}.backfill_workers w
where w.pool_id = any($1::text[])
   or w.last_heartbeat_at > now() - $2::float8 * interval '1 millisecond'
order by w.started_at, w.pool_id`,
})

/** The Rust graphile_worker's heartbeat rows (migration 20) for the given ids, plus those seen within $2 ms. */
export const rustHeartbeats = statement({
  id: 'locks.rust_heartbeats',
  params: ['_text', 'float8'],
  columns: {
    worker_id: 'text',
    started_at: 'timestamptz',
    last_heartbeat_at: 'timestamptz',
    metadata: 'jsonb?',
    heartbeat_age_ms: 'float8',
  },
  prepare: false,
  sql: (s) => `select w.id as worker_id, w.started_at, w.last_heartbeat_at, w.metadata,
       (extract(epoch from (now() - w.last_heartbeat_at)) * 1000)::float8 as heartbeat_age_ms
from ${s}._private_workers w
where w.id = any($1::text[])
   or w.last_heartbeat_at > now() - $2::float8 * interval '1 millisecond'
order by w.started_at, w.id`,
})

/**
 * Releases job locks, each only if it is still exactly the lock that was judged (same
 * owner, same locked_at to the microsecond) and, unless forced, its owner has no presence
 * session: a worker that took the job again, or came back, keeps it. Rows another cleaner
 * or a worker holds right now are skipped (no waiting, no deadlock); the next run gets them.
 * Like graphile's own expiry, run_at becomes at least now; attempts are left as they are
 * (the crashed run was charged when it was fetched). last_error says why ($4).
 */
export const releaseJobLocks = statement({
  id: 'locks.release_job_locks',
  params: ['_int8', '_text', '_text', '_text', 'bool'],
  columns: {job_id: 'int8'},
  sql: (s) => `with wanted as (
  select w.id, w.owner, w.seen, w.message
  from unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) as w(id, owner, seen, message)
), target as (
  select j.id, w.message
  from ${s}._private_jobs j
  join wanted w on w.id = j.id
  where j.locked_by is not distinct from w.owner
    and j.locked_at = w.seen::timestamptz
    and ($5::bool or not ${presenceSession('j.locked_by')})
  order by j.id
  for update of j skip locked
)
update ${s}._private_jobs j
set locked_at = null, locked_by = null, run_at = greatest(j.run_at, now()), updated_at = now(), last_error = t.message
from target t
where j.id = t.id
returning j.id as job_id`,
})

/**
 * Releases queue locks under the same exact-lock and presence checks. Unless forced, a
 * queue stays locked while its owner still holds a job lock in it: that job is running and
 * the lock is what keeps the serial queue serial. Run after releaseJobLocks in the same
 * transaction, so the jobs released just before no longer count.
 */
export const releaseQueueLocks = statement({
  id: 'locks.release_queue_locks',
  params: ['_int4', '_text', '_text', 'bool'],
  columns: {queue_id: 'int4'},
  sql: (s) => `with wanted as (
  select w.id, w.owner, w.seen
  from unnest($1::int[], $2::text[], $3::text[]) as w(id, owner, seen)
), target as (
  select q.id
  from ${s}._private_job_queues q
  join wanted w on w.id = q.id
  where q.locked_by is not distinct from w.owner
    and q.locked_at = w.seen::timestamptz
    and ($4::bool or not ${presenceSession('q.locked_by')})
    and ($4::bool or not exists (select 1 from ${s}._private_jobs j
                                 where j.job_queue_id = q.id and j.locked_at is not null
                                   and j.locked_by is not distinct from q.locked_by))
  order by q.id
  for update of q skip locked
)
update ${s}._private_job_queues q
set locked_at = null, locked_by = null
from target t
where q.id = t.id
returning q.id as queue_id`,
})
