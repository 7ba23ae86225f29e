import {unfingerprintedSql} from '../schema/backfill-objects.js'
import {errorLineSql} from './dlq-select.js'
import {type RowOf, statement} from './statement.js'

/**
 * Moves jobs into backfill_dlq in ONE statement (captureSql): the delete from _private_jobs
 * feeds the insert, so a job is either still in the jobs table or in the DLQ, never both and
 * never neither (the statement commits or rolls back as a whole). `for update skip locked`
 * lets several capturers run at once without waiting or doubling. Capture locks its batch
 * first (lockExhaustedJobs) in the move's transaction, to fingerprint the errors in Node and
 * write each entry once with its fingerprint.
 *
 * Rows are written as the Rust crate writes them: queue_name '' for parallel jobs (the
 * serial queue's name otherwise), last_error as a JSON string, an upsert on job_key that
 * bumps failure_count. Unlike the crate, the upsert also refreshes the payload and spec,
 * so the DLQ holds the job that failed last rather than a stale one. A retried job's
 * retry count, touch count and notes are carried over from backfill_dlq_retried_jobs.
 */
export const CAPTURE_COLUMNS = {
  dlq_id: 'int8',
  job_id: 'int8',
  task_identifier: 'text',
  queue_name: 'text',
  recaptured: 'bool',
  /** The entry's first error line as stats reads it: what its fingerprint is computed from. */
  error_line: 'text',
} as const
export type CaptureRow = RowOf<typeof CAPTURE_COLUMNS>

/** Why a job landed in the DLQ, as capture writes it (an SQL expression over the job alias a). */
function exhaustedReasonSql(a: string): string {
  return `case when ${a}.last_error like 'Permanent failure%'
              then 'Permanent failure (non-retryable error)'
              else 'Job exceeded maximum retry attempts (' || ${a}.attempts || '/' || ${a}.max_attempts || ')' end`
}

/** The entry's task_identifier, from the job alias a and its task t. */
function taskIdentifierSql(a: string): string {
  return `coalesce(t.identifier, '(unknown task ' || ${a}.task_id || ')')`
}

/**
 * The error line the entry made from job a will have: errorLineSql over the row captureSql
 * writes (last_error as a JSON string, else the failure reason). Lets the fingerprint be
 * computed before the move; capture checks it against the line the move returns.
 */
function jobErrorLineSql(a: string, failureReasonSql: string): string {
  return `left(split_part(coalesce(${a}.last_error, ${failureReasonSql}), E'\\n', 1), 300)`
}

/**
 * The move of the `candidates` (a select of locked job ids, alias c) into the DLQ. Also used
 * by `jobs remove --to-dlq` and `jobs fail --capture`, which give their own failure reason.
 * `fingerprintSql` (over c): the entry's error_fingerprint, computed before the move, so the
 * row is written once, complete; null leaves it to storeEntryFingerprints (an UPDATE).
 */
export function captureSql(
  s: string,
  candidates: string,
  failureReasonSql = exhaustedReasonSql('m'),
  fingerprintSql = 'null::text',
): string {
  return `with candidates as (
  ${candidates}
), moved as (
  delete from ${s}._private_jobs j using candidates c
  where j.id = c.id
  returning j.id, j.task_id, j.job_queue_id, j.payload, j.priority, j.key, j.attempts, j.max_attempts,
            j.last_error, j.created_at, j.run_at, ${fingerprintSql} as fingerprint
), lineage as (
  delete from ${s}.backfill_dlq_retried_jobs r using moved m
  where r.job_id = m.id
  returning r.job_id, r.case_id, r.requeued_count, r.failure_count, r.notes, r.retried_at, r.dlq_id, r.audit_id
), inserted as (
  insert into ${s}.backfill_dlq as d (
    original_job_id, task_identifier, payload, queue_name, priority, job_key, max_attempts, failure_reason,
    failure_count, last_error, original_created_at, original_run_at, requeued_count, last_requeued_at, notes,
    failed_at, error_fingerprint, error_fingerprint_at)
  select m.id,
         ${taskIdentifierSql('m')},
         m.payload::jsonb,
         coalesce(q.queue_name, ''),
         m.priority,
         m.key,
         m.max_attempts,
         ${failureReasonSql},
         coalesce(l.failure_count, 0) + 1,
         to_jsonb(m.last_error),
         m.created_at,
         m.run_at,
         coalesce(l.requeued_count, 0),
         l.retried_at,
         l.notes,
         now(),
         m.fingerprint,
         -- = failed_at: the fingerprint is current (unfingerprintedSql).
         case when m.fingerprint is not null then now() end
  from moved m
  left join ${s}._private_tasks t on t.id = m.task_id
  left join ${s}._private_job_queues q on q.id = m.job_queue_id
  left join lineage l on l.job_id = m.id
  on conflict (job_key) where job_key is not null do update set
    original_job_id = excluded.original_job_id,
    task_identifier = excluded.task_identifier,
    payload = excluded.payload,
    queue_name = excluded.queue_name,
    priority = excluded.priority,
    max_attempts = excluded.max_attempts,
    failure_reason = excluded.failure_reason,
    failure_count = d.failure_count + 1,
    last_error = excluded.last_error,
    original_created_at = excluded.original_created_at,
    original_run_at = excluded.original_run_at,
    failed_at = excluded.failed_at,
    error_fingerprint = excluded.error_fingerprint,
    error_fingerprint_at = excluded.error_fingerprint_at
  returning d.id, d.original_job_id, d.task_identifier, d.queue_name, ${errorLineSql('d')} as error_line
), events as (
  -- The job's story: its retry out of the DLQ (recorded now, dated then) and its return.
  insert into ${s}.backfill_dlq_events (case_id, dlq_id, job_id, event, at, audit_id)
  select ev.case_id, ev.dlq_id, ev.job_id, ev.event, ev.at, ev.audit_id
  from (
    select l.case_id, l.dlq_id, l.job_id, 'retried' as event, l.retried_at as at, l.audit_id, 1 as step
    from inserted i join lineage l on l.job_id = i.original_job_id
    where l.dlq_id is not null
    union all
    select l.case_id, i.id, i.original_job_id, 'recaptured', now(), null, 2
    from inserted i join lineage l on l.job_id = i.original_job_id
  ) ev
  order by ev.job_id, ev.step
)
select i.id as dlq_id, i.original_job_id as job_id, i.task_identifier::text as task_identifier,
       i.queue_name::text as queue_name, exists (select 1 from lineage l where l.job_id = i.original_job_id) as recaptured,
       i.error_line
from inserted i`
}

/** What capture locks before the move: each job and what its entry's fingerprint is computed from. */
const LOCKED_JOB_COLUMNS = {id: 'int8', task_identifier: 'text', error_line: 'text'} as const
export type LockedJob = RowOf<typeof LOCKED_JOB_COLUMNS>

function lockExhaustedSql(s: string, where: string, limit = ''): string {
  return `select j.id, ${taskIdentifierSql('j')} as task_identifier,
       ${jobErrorLineSql('j', exhaustedReasonSql('j'))} as error_line
from ${s}._private_jobs j
left join ${s}._private_tasks t on t.id = j.task_id
where j.attempts >= j.max_attempts and j.locked_at is null and ${where}
order by j.id${limit}
for update of j skip locked`
}

/**
 * Capture, step 1 (in the move's transaction): locks up to $1 exhausted, unlocked jobs (not
 * in $2) and reads what their fingerprints are computed from. Skip locked: another capturer's
 * jobs (or a worker's) are left to it; the rows locked here are this transaction's to move.
 */
export const lockExhaustedJobs = statement({
  id: 'dlq.lock_exhausted_jobs',
  params: ['int4', '_int8'],
  columns: LOCKED_JOB_COLUMNS,
  prepare: true,
  sql: (s) => lockExhaustedSql(s, 'not (j.id = any($2::bigint[]))', '\nlimit $1::int'),
})

/** The same lock for one job: the fallback when a batch holds a row the DLQ cannot store. */
export const lockExhaustedJob = statement({
  id: 'dlq.lock_exhausted_job',
  params: ['int8'],
  columns: LOCKED_JOB_COLUMNS,
  sql: (s) => lockExhaustedSql(s, 'j.id = $1::bigint'),
})

/**
 * Capture, step 2: moves the jobs $1 that this transaction locked (lockExhaustedJobs) into
 * the DLQ in one statement, each entry written with its fingerprint ($2, same order) as
 * current. `j.id = any($1)` keeps the delete on the primary key (see jobs-actions.ts targetSql).
 */
export const captureLockedJobs = statement({
  id: 'dlq.capture_locked_jobs',
  params: ['_int8', '_text'],
  columns: CAPTURE_COLUMNS,
  prepare: true,
  sql: (s) =>
    captureSql(
      s,
      `select j.id, v.fingerprint
  from ${s}._private_jobs j
  join unnest($1::bigint[], $2::text[]) as v(id, fingerprint) on v.id = j.id
  where j.id = any($1::bigint[])`,
      exhaustedReasonSql('m'),
      'c.fingerprint',
    ),
})

/** Exhausted, unlocked jobs in capture order (ids only; the fallback walks them one by one). */
export const exhaustedJobIds = statement({
  id: 'dlq.exhausted_job_ids',
  params: ['int4', '_int8'],
  columns: {id: 'int8'},
  sql: (s) => `select id from ${s}._private_jobs
where attempts >= max_attempts and locked_at is null and not (id = any($2::bigint[]))
order by id
limit $1::int`,
})

/** How many exhausted, unlocked jobs wait for capture (read-only; dry runs and status). */
export const countExhaustedJobs = statement({
  id: 'dlq.count_exhausted_jobs',
  params: [],
  columns: {task_identifier: 'text', queue_name: 'text', count: 'int4', oldest: 'timestamptz?'},
  prepare: false,
  sql: (s) => `select coalesce(t.identifier, '(unknown task ' || j.task_id || ')') as task_identifier,
       coalesce(q.queue_name, '') as queue_name, count(*)::int as count, min(j.updated_at) as oldest
from ${s}._private_jobs j
left join ${s}._private_tasks t on t.id = j.task_id
left join ${s}._private_job_queues q on q.id = j.job_queue_id
where j.attempts >= j.max_attempts and j.locked_at is null
group by 1, 2
order by 3 desc, 1, 2`,
})

/**
 * Stores the failure-group fingerprints of entries just written ($1 ids, $2 fingerprints),
 * in the transaction of the move that wrote them; error_fingerprint_at = failed_at marks the
 * pair current (see unfingerprintedSql). $3: only rows still without a current fingerprint
 * (the batched backfill of old rows, racing captures and other backfills).
 */
export const storeFingerprints = statement({
  id: 'dlq.store_fingerprints',
  params: ['_int8', '_text', 'bool'],
  columns: {},
  sql: (s) => `update ${s}.backfill_dlq d set error_fingerprint = v.fingerprint, error_fingerprint_at = d.failed_at
from unnest($1::bigint[], $2::text[]) as v(id, fingerprint)
where d.id = v.id and (not $3::bool or ${unfingerprintedSql('d')})`,
})

/** Lineage rows whose job is gone (it succeeded): nothing will recapture them. */
export const pruneRetriedJobLineage = statement({
  id: 'dlq.prune_retried_job_lineage',
  params: [],
  columns: {},
  sql: (s) => `delete from ${s}.backfill_dlq_retried_jobs r
where not exists (select 1 from ${s}._private_jobs j where j.id = r.job_id)`,
})
