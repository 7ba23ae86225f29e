import {CAPTURE_COLUMNS, captureSql} from './dlq-capture.js'
import {applicableSql, SEEN_AT_SQL, SEEN_VERSION_SQL, STATE_SQL} from './jobs-select.js'
import {statement} from './statement.js'

/**
 * Acting on a confirmed selection of live jobs, one batch per statement. Every action
 * statement starts from the same target: the batch's jobs ($1 ids) that are still exactly
 * as confirmed ($2 updated_at, $3 revision/attempts: see SEEN_AT_SQL, SEEN_VERSION_SQL),
 * not running, still eligible for the action, and not held by another transaction (for
 * update skip locked: a second operator's batch or a worker's fetch). Then graphile-worker's
 * own admin function does the change, so its semantics hold exactly: complete_jobs (remove),
 * permanently_fail_jobs (fail), reschedule_jobs (run-now, reschedule); `--to-dlq` is the
 * DLQ capture's own single-statement move (dlq-capture.ts captureSql). A job either changes
 * in this statement or is left as it was; the caller asks classifySkipped why.
 */

const WANTED_PARAMS = ['_int8', '_int8', '_int8'] as const

/*
 * `j.id = any($1)` repeats the join's key as an index condition: without it the planner
 * hash-joins the unnest against a sequential scan of the whole jobs table, once per batch
 * (issue 14: 60 ms a batch of 2,000 at 100,000 jobs, growing with the table); with it,
 * the batch's rows come from the primary key.
 */
function targetSql(s: string, action: string, reset = 'false', maxAttempts = 'null::int'): string {
  return `select j.id
  from ${s}._private_jobs j
  join unnest($1::bigint[], $2::int8[], $3::int8[]) as w(id, seen_at, seen_version) on w.id = j.id
  where j.id = any($1::bigint[])
    and j.locked_at is null
    and ${SEEN_AT_SQL} = w.seen_at and ${SEEN_VERSION_SQL} = w.seen_version
    and ${applicableSql(`'${action}'`, reset, maxAttempts)}
  order by j.id
  for update of j skip locked`
}

const DONE_COLUMNS = {id: 'int8', dlq_id: 'int8?'} as const

/** remove: graphile's complete_jobs() deletes the jobs (it, too, leaves locked jobs alone). */
export const removeJobsBatch = statement({
  id: 'jobs.remove_batch',
  params: [...WANTED_PARAMS],
  columns: DONE_COLUMNS,
  prepare: false,
  sql: (s) => `with target as (
  ${targetSql(s, 'remove')}
)
select c.id, null::bigint as dlq_id from ${s}.complete_jobs(array(select id from target)) c`,
})

/**
 * remove --to-dlq: the capture move (delete feeding the DLQ insert, one statement) with the
 * operator's reason ($4) as failure_reason. The job's last error, if any, is kept.
 */
export const moveJobsToDlqBatch = statement({
  id: 'jobs.move_to_dlq_batch',
  params: [...WANTED_PARAMS, 'text'],
  columns: CAPTURE_COLUMNS,
  prepare: false,
  sql: (s) => captureSql(s, targetSql(s, 'remove'), '$4::text'),
})

/** fail: graphile's permanently_fail_jobs() (attempts = max_attempts, last_error = $4 or its default). */
export const failJobsBatch = statement({
  id: 'jobs.fail_batch',
  params: [...WANTED_PARAMS, 'text?'],
  columns: DONE_COLUMNS,
  prepare: false,
  sql: (s) => `with target as (
  ${targetSql(s, 'fail')}
)
select f.id, null::bigint as dlq_id from ${s}.permanently_fail_jobs(array(select id from target), $4::text) f`,
})

/**
 * fail --capture, in the same transaction right after failJobsBatch: moves the jobs $1 it
 * failed into the DLQ at once, with failure_reason $2.
 */
export const captureFailedJobs = statement({
  id: 'jobs.capture_failed',
  params: ['_int8', 'text'],
  columns: CAPTURE_COLUMNS,
  prepare: false,
  sql: (s) =>
    captureSql(
      s,
      `select id from ${s}._private_jobs
  where id = any($1::bigint[]) and attempts >= max_attempts and locked_at is null
  order by id
  for update skip locked`,
      '$2::text',
    ),
})

/**
 * run-now and reschedule: graphile's reschedule_jobs(). $4 true: run_at = now (run-now);
 * else $5 run_at (null: unchanged); $6 priority, $7 attempts (0 = reset), $8 max_attempts
 * (null: unchanged). The action decides which jobs are eligible (applicableSql).
 */
function rescheduleSql(s: string, action: 'run_now' | 'reschedule'): string {
  return `with target as (
  ${targetSql(s, action, '($7::int = 0)', '$8::int')}
)
select r.id, null::bigint as dlq_id
from ${s}.reschedule_jobs(array(select id from target),
  run_at => case when $4::bool then now() else $5::timestamptz end,
  priority => $6::int, attempts => $7::int, max_attempts => $8::int) r`
}

const RESCHEDULE_PARAMS = [...WANTED_PARAMS, 'bool', 'timestamptz?', 'int4?', 'int4?', 'int4?'] as const

export const rescheduleJobsBatch = statement({
  id: 'jobs.reschedule_batch',
  params: RESCHEDULE_PARAMS,
  columns: DONE_COLUMNS,
  prepare: false,
  sql: (s) => rescheduleSql(s, 'reschedule'),
})

/** Eligible: jobs not yet due (or, resetting attempts, any attempted job). */
export const runJobsNowBatch = statement({
  id: 'jobs.run_now_batch',
  params: RESCHEDULE_PARAMS,
  columns: DONE_COLUMNS,
  prepare: false,
  sql: (s) => rescheduleSql(s, 'run_now'),
})

/**
 * Why the jobs $1 (with their confirmed versions $2, $3) were not changed, as of now:
 * gone (completed or removed), running (a worker holds it), changed (since confirmation:
 * a retry, a replace, another operator), not_applicable (no longer eligible for $4 with
 * reset $5 and max attempts $6, e.g. already due), busy (another transaction held it).
 * `j.id = any($1)`: the primary key again (see targetSql); a racing operator classifies every batch.
 */
export const classifySkipped = statement({
  id: 'jobs.classify_skipped',
  params: [...WANTED_PARAMS, 'text', 'bool', 'int4?'],
  columns: {id: 'int8', outcome: 'text', state: 'text?'},
  prepare: false,
  sql: (s) => `select w.id,
       case when j.id is null then 'gone'
            when j.locked_at is not null then 'running'
            when ${SEEN_AT_SQL} <> w.seen_at or ${SEEN_VERSION_SQL} <> w.seen_version then 'changed'
            when not ${applicableSql('$4::text', '$5::bool', '$6::int')} then 'not_applicable'
            else 'busy' end as outcome,
       case when j.id is not null then ${STATE_SQL} end as state
from unnest($1::bigint[], $2::int8[], $3::int8[]) as w(id, seen_at, seen_version)
left join ${s}._private_jobs j on j.id = w.id and j.id = any($1::bigint[])
left join ${s}._private_job_queues q on q.id = j.job_queue_id
order by w.id`,
})
