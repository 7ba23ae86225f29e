import {GROUP_COUNTS_TABLE, unfingerprintedSql} from '../schema/backfill-objects.js'
import {statement} from './statement.js'

/** The per-state counts every status statement returns (see COUNTS and AGE below). */
const STATE_COLUMNS = {
  ready: 'int4',
  scheduled: 'int4',
  running: 'int4',
  retrying: 'int4',
  exhausted: 'int4',
  oldest_ready_at: 'timestamptz?',
  oldest_ready_age_ms: 'float8?',
} as const

/**
 * Queue health (`status`, `check`) and the schema doctor (`schema status`). Read-only.
 *
 * Job states, as graphile-worker defines availability:
 *   running   = locked (locked_at is not null)
 *   exhausted = not locked, attempts >= max_attempts (waits for DLQ capture)
 *   scheduled = available, run_at in the future
 *   ready     = available, run_at reached
 *   retrying  = available and attempts > 0 (a subset of ready + scheduled)
 */

/**
 * What each row of _private_jobs feeds (RAW_COUNTS), and the states derived from it per group
 * (FROM_RAW). The states partition the jobs (running = locked; exhausted = not locked and out of
 * attempts = unavailable - running; ready = the rest of the available ones), so one count, four
 * filters and one min per row are enough: the per-row work is what a scan of 1M jobs costs, and
 * six filtered aggregates took ~30% longer (PostgreSQL 15, one core).
 */
const RAW_COUNTS = `count(*)::int as total,
    count(*) filter (where locked_at is not null)::int as running,
    count(*) filter (where not is_available)::int as unavailable,
    count(*) filter (where is_available and run_at > now())::int as scheduled,
    count(*) filter (where is_available and attempts > 0)::int as retrying,
    min(run_at) filter (where is_available) as oldest_available_at`

/** The oldest available job is ready only if its time has come (the others are later still). */
const FROM_RAW = `total - unavailable - scheduled as ready, scheduled, running, retrying, unavailable - running as exhausted,
    case when oldest_available_at <= now() then oldest_available_at end as oldest_ready_at`

const SUMS = `sum(ready)::int as ready, sum(scheduled)::int as scheduled, sum(running)::int as running,
         sum(retrying)::int as retrying, sum(exhausted)::int as exhausted, min(oldest_ready_at) as oldest_ready_at`

const AGE = (column: string): string => `(extract(epoch from (now() - ${column})) * 1000)::float8`

/**
 * Job counts per task, per queue (the parallel jobs, then the $1 busiest serial queues)
 * and the rest of the queues folded into one 'other-queues' row, plus a 'total' row. One
 * parallel scan of _private_jobs grouped by (task, queue); the roll-ups work on that.
 */
export const jobCounts = statement({
  id: 'status.job_counts',
  params: ['int4'],
  columns: {
    kind: 'text',
    name: 'text?',
    queues: 'int4',
    queue_locked_by: 'text?',
    queue_locked_at: 'timestamptz?',
    ...STATE_COLUMNS,
    rank: 'int4',
  },
  sql: (s) => `with raw as (
  select task_id, job_queue_id,
    ${RAW_COUNTS}
  from ${s}._private_jobs
  group by task_id, job_queue_id
), g as (
  select task_id, job_queue_id, ${FROM_RAW} from raw
), by_task as (
  select g.task_id, ${SUMS} from g group by g.task_id
), by_queue as (
  select g.job_queue_id, ${SUMS},
         case when g.job_queue_id is null then 0
              else row_number() over (order by (g.job_queue_id is null), sum(ready + scheduled + running + exhausted) desc, g.job_queue_id) end as rank
  from g group by g.job_queue_id
)
select 'total'::text as kind, null::text as name,
       (select count(*)::int from by_queue where job_queue_id is not null) as queues,
       null::text as queue_locked_by, null::timestamptz as queue_locked_at,
       coalesce(sum(ready), 0)::int as ready, coalesce(sum(scheduled), 0)::int as scheduled, coalesce(sum(running), 0)::int as running,
       coalesce(sum(retrying), 0)::int as retrying, coalesce(sum(exhausted), 0)::int as exhausted,
       min(oldest_ready_at) as oldest_ready_at, ${AGE('min(oldest_ready_at)')} as oldest_ready_age_ms, 0 as rank
from g
union all
select 'task', coalesce(t.identifier, '(unknown task ' || b.task_id || ')')::text, 0, null, null,
       b.ready, b.scheduled, b.running, b.retrying, b.exhausted, b.oldest_ready_at, ${AGE('b.oldest_ready_at')}, 0
from by_task b
left join ${s}._private_tasks t on t.id = b.task_id
union all
select 'queue', q.queue_name::text, case when b.job_queue_id is null then 0 else 1 end, q.locked_by, q.locked_at,
       b.ready, b.scheduled, b.running, b.retrying, b.exhausted, b.oldest_ready_at, ${AGE('b.oldest_ready_at')}, b.rank::int
from by_queue b
left join ${s}._private_job_queues q on q.id = b.job_queue_id
where b.rank <= $1::int
union all
select 'other-queues', null, count(*)::int, null, null,
       sum(b.ready)::int, sum(b.scheduled)::int, sum(b.running)::int, sum(b.retrying)::int, sum(b.exhausted)::int,
       min(b.oldest_ready_at), ${AGE('min(b.oldest_ready_at)')}, 0
from by_queue b
where b.rank > $1::int
having count(*) > 0`,
})

/**
 * The roll-up of DLQ counts per (task, queue) in CTE g (task, queue, n, oldest): per task, per
 * queue ('' = parallel jobs, as the Rust crate writes it: the queues named in $2, then the $1
 * largest others, the rest folded into 'other-queues') and in total (oldest: totalOldest).
 */
function dlqRollup(g: string, totalOldest: string): string {
  return `with g as (
${g}
), by_queue as (
  select nullif(queue, '') as queue, sum(n)::int as n, min(oldest) as oldest,
         case when queue = '' or queue = any($2::text[]) then 0
              else row_number() over (order by queue = '' or queue = any($2::text[]) desc, sum(n) desc, queue) end as rank
  from g group by queue
), counted as (
  select count(*)::int as named from by_queue where rank = 0
)
select 'total'::text as kind, null::text as name, (select count(*)::int from by_queue where queue is not null) as queues,
       coalesce(sum(n), 0)::int as entries, ${totalOldest} as oldest_failed_at
from g
union all
select 'task', task, 0, sum(n)::int, min(oldest) from g group by task
union all
select 'queue', queue, case when queue is null then 0 else 1 end, n, oldest from by_queue
where rank = 0 or rank - (select named from counted) <= $1::int
union all
select 'other-queues', null, count(*)::int, sum(n)::int, min(oldest) from by_queue
where rank > 0 and rank - (select named from counted) > $1::int
having count(*) > 0`
}

const DLQ_COUNT_COLUMNS = {
  kind: 'text',
  name: 'text?',
  queues: 'int4',
  entries: 'int4',
  oldest_failed_at: 'timestamptz?',
} as const

/** DLQ entries per task, per queue and in total (see dlqRollup), scanning every entry. */
export const dlqCounts = statement({
  id: 'status.dlq_counts',
  params: ['int4', '_text'],
  columns: DLQ_COUNT_COLUMNS,
  sql: (s) =>
    dlqRollup(
      `  select task_identifier::text as task, queue_name::text as queue, count(*)::int as n, min(failed_at) as oldest
  from ${s}.backfill_dlq
  group by 1, 2`,
      'min(oldest)',
    ),
})

/**
 * dlqCounts from backfill_dlq_group_counts (kept by triggers: check groupCountsReady in the
 * same snapshot) plus the entries without a current fingerprint (a partial index): O(groups).
 * Only the total has its oldest failed_at (one probe of idx_backfill_dlq_failed_at), which is
 * all status reports.
 */
export const dlqCountsFromGroups = statement({
  id: 'status.dlq_counts_from_groups',
  params: ['int4', '_text'],
  columns: DLQ_COUNT_COLUMNS,
  sql: (s) =>
    dlqRollup(
      `  select task, queue, sum(n)::int as n, null::timestamptz as oldest
  from (select c.task_identifier as task, c.queue_name as queue, c.entries as n from ${s}.${GROUP_COUNTS_TABLE} c
        union all
        select d.task_identifier::text, d.queue_name::text, 1 from ${s}.backfill_dlq d where ${unfingerprintedSql('d')}) x
  group by 1, 2`,
      `(select min(d.failed_at) from ${s}.backfill_dlq d)`,
    ),
})

/** Jobs whose lock is younger than $1 ms, per owner: graphile's migration 11 refuses to run while any exists (4 h). */
export const recentJobLocks = statement({
  id: 'status.recent_job_locks',
  params: ['float8'],
  columns: {locked_by: 'text?', jobs: 'int4', newest_locked_at: 'timestamptz', oldest_locked_at: 'timestamptz'},
  sql: (
    s,
  ) => `select locked_by, count(*)::int as jobs, max(locked_at) as newest_locked_at, min(locked_at) as oldest_locked_at
from ${s}._private_jobs
where locked_at is not null and locked_at > now() - $1::float8 * interval '1 millisecond'
group by locked_by
order by count(*) desc, locked_by`,
})

/**
 * Which runtime wrote add_job/add_jobs: the Rust port's migration 19 takes an advisory
 * lock per job key in add_jobs and raises GWNOR in add_job; Node's bodies do neither.
 */
export const functionFingerprints = statement({
  id: 'status.function_fingerprints',
  params: ['text'],
  columns: {name: 'text', advisory_lock: 'bool', gwnor: 'bool'},
  sql: () => `select p.proname::text as name, bool_or(p.prosrc like '%pg_advisory_xact_lock%') as advisory_lock,
       bool_or(p.prosrc like '%GWNOR%') as gwnor
from pg_proc p
join pg_namespace n on n.oid = p.pronamespace
where n.nspname = $1::text and p.proname in ('add_job', 'add_jobs')
group by p.proname
order by 1`,
})

/** Totals over every job (one parallel scan), for `check`. */
export const jobTotals = statement({
  id: 'status.job_totals',
  params: [],
  columns: {
    jobs: 'int4',
    ...STATE_COLUMNS,
  },
  sql: (s) => `select total as jobs, ${FROM_RAW},
    ${AGE('case when oldest_available_at <= now() then oldest_available_at end')} as oldest_ready_age_ms
from (select ${RAW_COUNTS} from ${s}._private_jobs) raw`,
})

/** Exhausted jobs not yet captured into the DLQ (served by idx_backfill_jobs_exhausted when present). */
export const exhaustedTotal = statement({
  id: 'status.exhausted_total',
  params: [],
  columns: {exhausted: 'int4'},
  sql: (s) =>
    `select count(*)::int as exhausted from ${s}._private_jobs where attempts >= max_attempts and locked_at is null`,
})

export const dlqTotal = statement({
  id: 'status.dlq_total',
  params: [],
  columns: {entries: 'int4'},
  sql: (s) => `select count(*)::int as entries from ${s}.backfill_dlq`,
})

/** The entries without a current fingerprint plus backfill_dlq_group_counts' (see dlqCountsFromGroups). */
export function dlqTotalFromGroupsSql(s: string): string {
  return `((select coalesce(sum(c.entries), 0) from ${s}.${GROUP_COUNTS_TABLE} c)
   + (select count(*) from ${s}.backfill_dlq d where ${unfingerprintedSql('d')}))::int`
}

/** dlqTotal from the trigger-kept counts (check groupCountsReady in the same snapshot). */
export const dlqTotalFromGroups = statement({
  id: 'status.dlq_total_from_groups',
  params: [],
  columns: {entries: 'int4'},
  sql: (s) => `select ${dlqTotalFromGroupsSql(s)} as entries`,
})

/**
 * One number for autoscalers (KEDA's PostgreSQL trigger, `backfill status --ready-count-sql`):
 * the jobs runnable now, as `status` counts ready. Plain SQL with the schema quoted in, no
 * parameters, no session state: it runs through any pooler.
 */
export function readyCountSql(quotedSchema: string): string {
  return `select count(*)::int as ready from ${quotedSchema}._private_jobs where is_available and run_at <= now()`
}
