import {statement} from './statement.js'

/**
 * Reading the live queue (_private_jobs) for `jobs list/show` and for the selections the
 * jobs actions confirm. Every statement that takes a job selector has the same parameters
 * $1..$12 (jobs/selector.ts jobSelectorParams) and the same predicate, written once here as
 * static SQL with nullable parameters: `prepare: false` plans each execution with the actual
 * values, so an unused filter folds away and a state filter reaches our partial indexes
 * (running → idx_backfill_jobs_locked, exhausted → idx_backfill_jobs_exhausted) or
 * graphile's own (waiting states → jobs_main_index).
 *
 * Aliases: j = _private_jobs, q = its serial queue (left join), t = its task (left join).
 */

/** The job's state (jobs/states.ts is the definition; this is its SQL twin). */
export const STATE_SQL = `(case when j.locked_at is not null then 'running'
  when j.attempts >= j.max_attempts then 'exhausted'
  when j.run_at > now() then case when j.attempts > 0 then 'retrying' else 'scheduled' end
  when q.locked_at is not null then 'blocked'
  else 'ready' end)`

/** The state filter as sargable alternatives, one per state (folds to the chosen ones). */
function statePredicate(p: string): string {
  return `(${p}::text[] is null
    or ('running' = any(${p}::text[]) and j.locked_at is not null)
    or ('exhausted' = any(${p}::text[]) and j.locked_at is null and j.attempts >= j.max_attempts)
    or ('scheduled' = any(${p}::text[]) and j.is_available and j.run_at > now() and j.attempts = 0)
    or ('retrying' = any(${p}::text[]) and j.is_available and j.run_at > now() and j.attempts > 0)
    or ('blocked' = any(${p}::text[]) and j.is_available and j.run_at <= now() and q.locked_at is not null)
    or ('ready' = any(${p}::text[]) and j.is_available and j.run_at <= now() and q.locked_at is null))`
}

/** The shared job selector predicate over twelve parameters starting at $first. */
export function jobSelectorWhere(s: string, first = 1): string {
  const p = (i: number): string => `$${first + i}`
  return `(${p(0)}::bigint[] is null or j.id = any(${p(0)}::bigint[]))
  and (${p(1)}::text[] is null or j.task_id = any(array(select t2.id from ${s}._private_tasks t2 where t2.identifier = any(${p(1)}::text[]))))
  and (${p(2)}::text[] is null or (j.job_queue_id is null and '' = any(${p(2)}::text[]))
       or j.job_queue_id = any(array(select q2.id from ${s}._private_job_queues q2 where q2.queue_name = any(${p(2)}::text[]))))
  and (${p(3)}::text[] is null or j.key = any(${p(3)}::text[]))
  and (${p(4)}::timestamptz is null or (case when ${p(6)}::bool then j.run_at else j.created_at end) >= ${p(4)}::timestamptz)
  and (${p(5)}::timestamptz is null or (case when ${p(6)}::bool then j.run_at else j.created_at end) < ${p(5)}::timestamptz)
  and (${p(7)}::text is null or strpos(lower(j.last_error), lower(${p(7)}::text)) > 0)
  and ${statePredicate(p(8))}
  and (${p(9)}::text[] is null or j.flags ?| ${p(9)}::text[])
  and (${p(10)}::int[] is null or exists (select 1 from unnest(${p(10)}::int[], ${p(11)}::int[]) as r(lo, hi)
                                          where j.priority between r.lo and r.hi))`
}

export const JOB_SELECTOR_PARAMS = [
  '_int8?',
  '_text?',
  '_text?',
  '_text?',
  'timestamptz?',
  'timestamptz?',
  'bool',
  'text?',
  '_text?',
  '_text?',
  '_int4?',
  '_int4?',
] as const

const FROM = (s: string): string => `from ${s}._private_jobs j
left join ${s}._private_job_queues q on q.id = j.job_queue_id
left join ${s}._private_tasks t on t.id = j.task_id`

const exact = (column: string): string => `to_char(${column} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`

export const JOB_ROW_COLUMNS = {
  id: 'int8',
  task_identifier: 'text',
  queue_name: 'text?',
  state: 'text',
  // As text: exactly as stored (pg's JSON.parse would round big numbers).
  payload: 'text',
  priority: 'int4',
  run_at: 'timestamptz',
  run_at_exact: 'text',
  attempts: 'int4',
  max_attempts: 'int4',
  last_error: 'text?',
  created_at: 'timestamptz',
  updated_at: 'timestamptz',
  key: 'text?',
  locked_at: 'timestamptz?',
  locked_by: 'text?',
  revision: 'int4',
  flags: 'jsonb?',
  queue_locked_by: 'text?',
  queue_locked_at: 'timestamptz?',
} as const

export const JOB_ROW_SELECT = `j.id, coalesce(t.identifier, '(unknown task ' || j.task_id || ')')::text as task_identifier,
       q.queue_name::text as queue_name, ${STATE_SQL} as state, j.payload::text as payload, j.priority::int as priority, j.run_at,
       ${exact('j.run_at')} as run_at_exact, j.attempts::int as attempts, j.max_attempts::int as max_attempts,
       j.last_error, j.created_at, j.updated_at, j.key, j.locked_at, j.locked_by, j.revision, j.flags,
       q.locked_by as queue_locked_by, q.locked_at as queue_locked_at`

/** A page of jobs, newest first (id desc) after id $13, $14 rows: the primary key's order, no sort. */
export const listJobsNewest = statement({
  id: 'jobs.list_newest',
  params: [...JOB_SELECTOR_PARAMS, 'int8?', 'int4'],
  columns: JOB_ROW_COLUMNS,
  prepare: false,
  sql: (s) => `select ${JOB_ROW_SELECT}
${FROM(s)}
where ${jobSelectorWhere(s)}
  and ($13::bigint is null or j.id < $13::bigint)
order by j.id desc
limit $14::int`,
})

/**
 * A page of waiting jobs in the order graphile-worker fetches them (priority, run_at; id as
 * the tie-breaker), after the keyset ($13 priority, $14 run_at exact, $15 id); $16 rows.
 * Served by graphile's jobs_main_index (where is_available): running and exhausted jobs are
 * not "next to run" and are not in it.
 */
export const listJobsNext = statement({
  id: 'jobs.list_next',
  params: [...JOB_SELECTOR_PARAMS, 'int4?', 'text?', 'int8?', 'int4'],
  columns: JOB_ROW_COLUMNS,
  prepare: false,
  sql: (s) => `select ${JOB_ROW_SELECT}
${FROM(s)}
where j.is_available = true
  and ${jobSelectorWhere(s)}
  and ($13::int is null or (j.priority, j.run_at) >= ($13::int, $14::text::timestamptz))
  and ($13::int is null or (j.priority, j.run_at, j.id) > ($13::int, $14::text::timestamptz, $15::bigint))
order by j.priority, j.run_at, j.id
limit $16::int`,
})

/** One job by id ($1) or by job key ($2). */
export const getJobRow = statement({
  id: 'jobs.get_row',
  params: ['int8?', 'text?'],
  columns: {...JOB_ROW_COLUMNS, payload_text: 'text', task_id: 'int4', job_queue_id: 'int4?'},
  prepare: false,
  sql: (s) => `select ${JOB_ROW_SELECT}, j.payload::text as payload_text, j.task_id, j.job_queue_id
${FROM(s)}
where ($1::bigint is not null and j.id = $1::bigint) or ($2::text is not null and j.key = $2::text)
limit 1`,
})

/** Jobs by id, in id order (samples of a selection). */
export const jobRowsById = statement({
  id: 'jobs.rows_by_id',
  params: ['_int8'],
  columns: JOB_ROW_COLUMNS,
  sql: (s) => `select ${JOB_ROW_SELECT}
${FROM(s)}
where j.id = any($1::bigint[])
order by j.id`,
})

/**
 * Where a job stands in its serial queue ($1): waiting jobs ahead of it in fetch order
 * (priority $2, run_at $3, id $4), all waiting jobs, and the job holding the queue.
 */
export const serialQueuePosition = statement({
  id: 'jobs.queue_position',
  params: ['int4', 'int4', 'text', 'int8'],
  columns: {
    ahead: 'int4',
    waiting: 'int4',
    running_job_id: 'int8?',
    locked_by: 'text?',
    locked_at: 'timestamptz?',
  },
  prepare: false,
  sql: (s) => `select w.ahead, w.waiting,
       (select min(r.id) from ${s}._private_jobs r where r.locked_at is not null and r.job_queue_id = $1::int) as running_job_id,
       q.locked_by, q.locked_at
from ${s}._private_job_queues q,
     lateral (select (count(*) filter (where (o.priority, o.run_at, o.id) < ($2::int, $3::text::timestamptz, $4::bigint)))::int as ahead,
                     count(*)::int as waiting
              from ${s}._private_jobs o
              where o.is_available = true and o.job_queue_id = $1::int) w
where q.id = $1::int`,
})

/** The DLQ lineage of a job that was retried out of the DLQ (backfill_dlq_retried_jobs). */
export const jobLineage = statement({
  id: 'jobs.lineage',
  params: ['int8'],
  columns: {
    case_id: 'int8',
    requeued_count: 'int4',
    failure_count: 'int4',
    retried_at: 'timestamptz',
    dlq_id: 'int8?',
    audit_id: 'int8?',
  },
  sql: (s) => `select r.case_id, r.requeued_count, r.failure_count, r.retried_at, r.dlq_id, r.audit_id
from ${s}.backfill_dlq_retried_jobs r
where r.job_id = $1::bigint`,
})

/** updated_at as an exact integer (µs since the epoch; the same expression on both sides of a comparison). */
export const SEEN_AT_SQL = `(extract(epoch from j.updated_at) * 1000000)::int8`
/**
 * What changes when graphile touches a job without updating updated_at: a fetch (attempts + 1),
 * a failure (attempts stay +1), a replace through add_job (revision + 1, attempts reset).
 */
export const SEEN_VERSION_SQL = `(j.revision::int8 * 65536 + j.attempts::int8)`

/**
 * Whether action $action may change the (unlocked) job j: the one definition used when a
 * selection is confirmed and again, on the locked row, when the action runs.
 * `reset`: attempts go to 0; `maxAttempts`: the new max_attempts (null: unchanged).
 */
export function applicableSql(action: string, reset: string, maxAttempts: string): string {
  return `(case ${action}
    when 'remove' then true
    when 'fail' then j.attempts < j.max_attempts
    when 'run_now' then (j.run_at > now() and j.attempts < j.max_attempts) or (${reset} and j.attempts > 0)
    when 'reschedule' then (case when ${reset} then 0 else j.attempts end) < coalesce(${maxAttempts}, j.max_attempts)
    else false end)`
}

/**
 * The selection an action will act on, as of now, in id order ($16 rows at most, null: all):
 * each matching job with the version the action must still find ($13 action, $14 reset
 * attempts, $15 new max_attempts decide `applicable`). Read through a cursor.
 */
export const jobSelectionRows = statement({
  id: 'jobs.selection_rows',
  params: [...JOB_SELECTOR_PARAMS, 'text', 'bool', 'int4?', 'int4?'],
  columns: {
    id: 'int8',
    seen_at: 'int8',
    seen_version: 'int8',
    task_id: 'int4',
    state: 'text',
    applicable: 'bool',
  },
  prepare: false,
  sql: (
    s,
  ) => `select j.id, ${SEEN_AT_SQL} as seen_at, ${SEEN_VERSION_SQL} as seen_version, j.task_id, ${STATE_SQL} as state,
       j.locked_at is null and ${applicableSql('$13::text', '$14::bool', '$15::int')} as applicable
${FROM(s)}
where ${jobSelectorWhere(s)}
order by j.id
limit $16::int`,
})
