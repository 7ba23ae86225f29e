import {COUNTED, GROUP_COUNTS_TABLE, GROUP_COUNTS_TRIGGERS, unfingerprintedSql} from '../schema/backfill-objects.js'
import {statement} from './statement.js'

/**
 * Reading the DLQ. Every statement that takes a selector has the same parameters $1..$7
 * (see dlq/selector.ts selectorParams) and the same predicate, written once here as static
 * SQL with nullable parameters: `prepare: false` makes PostgreSQL plan each execution with
 * the actual values, so a null filter folds away and the right index is used.
 */

/**
 * The last error as text, whichever writer stored it: a JSON string (the crate's scanner,
 * our capture), any JSON (the crate's add_to_dlq: a "message" or "error" field if there is
 * one, else the JSON text), falling back to failure_reason when there is none.
 */
export function errorTextSql(alias: string): string {
  return `coalesce(case jsonb_typeof(${alias}.last_error)
  when 'string' then ${alias}.last_error #>> '{}'
  when 'object' then coalesce(${alias}.last_error ->> 'message', ${alias}.last_error ->> 'error', ${alias}.last_error::text)
  when 'null' then null
  else ${alias}.last_error::text end, ${alias}.failure_reason::text)`
}

/** What --error searches: the string, or the whole JSON of any other shape (every field), or failure_reason. */
function errorSearchSql(alias: string): string {
  return `coalesce(case jsonb_typeof(${alias}.last_error) when 'string' then ${alias}.last_error #>> '{}'
  when 'null' then null else ${alias}.last_error::text end, ${alias}.failure_reason::text)`
}

/** The first line of the error, at most 300 characters: all a fingerprint looks at (FINGERPRINT_MAX_CHARS). */
export function errorLineSql(alias: string): string {
  return `left(split_part(${errorTextSql(alias)}, E'\\n', 1), 300)`
}

/** A timestamptz to the microsecond as text that sorts as the time does (a Date keeps milliseconds only). */
function exactSql(expression: string): string {
  return `to_char(${expression} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`
}

/** Microseconds since the epoch, to pick a group's oldest entry by (failed_at, id) in one aggregate. */
const EPOCH_US = (expression: string): string => `(extract(epoch from ${expression}) * 1000000)::bigint`

/** What every group aggregate returns besides its key. */
const GROUP_COLUMNS = {
  count: 'int4',
  first_failed_at: 'timestamptz',
  /** first_failed_at to the microsecond, to compare samples exactly. */
  first_failed_at_exact: 'text',
  last_failed_at: 'timestamptz',
  /** The oldest entry of the group (by failed_at, then id). */
  sample_id: 'int8',
  key_conflicts: 'int4',
} as const

/** The shared selector predicate on alias d over seven parameters starting at $first. */
export function selectorWhere(first = 1): string {
  const p = (i: number): string => `$${first + i}`
  return `(${p(0)}::bigint[] is null or d.id = any(${p(0)}::bigint[]))
  and (${p(1)}::text[] is null or d.task_identifier = any(${p(1)}::text[]))
  and (${p(2)}::text[] is null or d.queue_name = any(${p(2)}::text[]))
  and (${p(3)}::text[] is null or d.job_key = any(${p(3)}::text[]))
  and (${p(4)}::timestamptz is null or d.failed_at >= ${p(4)}::timestamptz)
  and (${p(5)}::timestamptz is null or d.failed_at < ${p(5)}::timestamptz)
  and (${p(6)}::text is null or strpos(lower(${errorSearchSql('d')}), lower(${p(6)}::text)) > 0)`
}

/** The selector predicate over $1..$7 (most statements). */
export const SELECTOR_WHERE = selectorWhere(1)

export const SELECTOR_PARAMS = [
  '_int8?',
  '_text?',
  '_text?',
  '_text?',
  'timestamptz?',
  'timestamptz?',
  'text?',
] as const

const ENTRY_COLUMNS = {
  id: 'int8',
  original_job_id: 'int8?',
  task_identifier: 'text',
  queue_name: 'text',
  priority: 'int4',
  job_key: 'text?',
  max_attempts: 'int4?',
  failure_reason: 'text',
  failure_count: 'int4',
  last_error: 'jsonb?',
  error_text: 'text',
  // As text: exactly what jsonb holds (pg's JSON.parse would round big numbers).
  payload: 'text',
  original_created_at: 'timestamptz?',
  original_run_at: 'timestamptz?',
  failed_at: 'timestamptz',
  requeued_count: 'int4',
  last_requeued_at: 'timestamptz?',
  notes: 'text?',
} as const

const ENTRY_SELECT = `d.id, d.original_job_id, d.task_identifier::text as task_identifier, d.queue_name::text as queue_name, d.priority,
       d.job_key::text as job_key, d.max_attempts, d.failure_reason, d.failure_count, d.last_error,
       ${errorTextSql('d')} as error_text, d.payload::text as payload, d.original_created_at, d.original_run_at, d.failed_at,
       d.requeued_count, d.last_requeued_at, d.notes`

/** failed_at to the microsecond (a Date keeps milliseconds only): the keyset cursor's first half. */
const FAILED_AT_EXACT = `to_char(d.failed_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`

const KEYSET_AFTER = `($8::text is null or (d.failed_at, d.id) < ($8::text::timestamptz, $9::bigint))`

/**
 * One page of entries, newest first, after the keyset cursor ($8 failed_at, $9 id); $10 rows.
 * Served by idx_backfill_dlq_failed_at_id: no OFFSET, no COUNT.
 */
export const listDlqPage = statement({
  id: 'dlq.list_page',
  params: [...SELECTOR_PARAMS, 'text?', 'int8?', 'int4'],
  columns: {...ENTRY_COLUMNS, failed_at_exact: 'text'},
  prepare: false,
  sql: (s) => `select ${ENTRY_SELECT}, ${FAILED_AT_EXACT} as failed_at_exact
from ${s}.backfill_dlq d
where ${SELECTOR_WHERE}
  and ${KEYSET_AFTER}
order by d.failed_at desc, d.id desc
limit $10::int`,
})

/** As listDlqPage, keys and first error lines only: the scan behind `list --group`. */
export const listDlqKeys = statement({
  id: 'dlq.list_keys',
  params: [...SELECTOR_PARAMS, 'text?', 'int8?', 'int4'],
  columns: {id: 'int8', task_identifier: 'text', error_line: 'text', failed_at_exact: 'text'},
  prepare: false,
  sql: (
    s,
  ) => `select d.id, d.task_identifier::text as task_identifier, ${errorLineSql('d')} as error_line, ${FAILED_AT_EXACT} as failed_at_exact
from ${s}.backfill_dlq d
where ${SELECTOR_WHERE}
  and ${KEYSET_AFTER}
order by d.failed_at desc, d.id desc
limit $10::int`,
})

/** One entry, with the id of the first entry of its story (case_id). */
export const getDlqEntry = statement({
  id: 'dlq.get_entry',
  params: ['int8'],
  columns: {...ENTRY_COLUMNS, case_id: 'int8'},
  sql: (s) => `select ${ENTRY_SELECT},
       coalesce((select e.case_id from ${s}.backfill_dlq_events e
                 where e.dlq_id = d.id and e.event = 'recaptured' order by e.id desc limit 1), d.id) as case_id
from ${s}.backfill_dlq d
where d.id = $1::bigint`,
})

/** The story of one case: retries and recaptures, with who did them. */
export const caseEvents = statement({
  id: 'dlq.case_events',
  params: ['int8'],
  columns: {
    at: 'timestamptz',
    event: 'text',
    dlq_id: 'int8?',
    job_id: 'int8?',
    audit_id: 'int8?',
    details: 'jsonb?',
    os_user: 'text?',
    db_user: 'text?',
    hostname: 'text?',
    reason: 'text?',
  },
  sql: (
    s,
  ) => `select e.at, e.event, e.dlq_id, e.job_id, e.audit_id, e.details, a.os_user, a.db_user, a.hostname, a.reason
from ${s}.backfill_dlq_events e
left join ${s}.backfill_dlq_audit a on a.id = e.audit_id
where e.case_id = $1::bigint
order by e.id
limit 1000`,
})

/**
 * The selection aggregated by task, queue and first error line: DLQs repeat messages, so
 * this is usually far smaller than the selection, and it is all the stats pass needs (it
 * fingerprints each line). $8: count entries whose job_key a job in the jobs table holds;
 * $9: optional last id (where a limited selection ends). Read through a cursor. The sample is
 * the oldest entry, by (failed_at, id), as in aggregateFingerprinted and groupCountsAggregate.
 */
export const aggregateDlq = statement({
  id: 'dlq.aggregate',
  params: [...SELECTOR_PARAMS, 'bool', 'int8?', 'bool'],
  columns: {
    task_identifier: 'text',
    queue_name: 'text',
    error_line: 'text',
    ...GROUP_COLUMNS,
  },
  prepare: false,
  sql: (
    s,
  ) => `select d.task_identifier::text as task_identifier, d.queue_name::text as queue_name, ${errorLineSql('d')} as error_line,
       count(*)::int as count, min(d.failed_at) as first_failed_at, ${exactSql('min(d.failed_at)')} as first_failed_at_exact,
       max(d.failed_at) as last_failed_at, (min(array[${EPOCH_US('d.failed_at')}, d.id]))[2] as sample_id,
       (count(*) filter (where $8::bool and d.job_key is not null
                         and exists (select 1 from ${s}._private_jobs j where j.key = d.job_key)))::int as key_conflicts
from ${s}.backfill_dlq d
where ${SELECTOR_WHERE} and ($9::bigint is null or d.id <= $9::bigint)
  and (not $10::bool or ${unfingerprintedSql('d')})
group by 1, 2, 3`,
})

/**
 * aggregateDlq for the entries with a current stored fingerprint ($10 true there: the others),
 * grouped by it: read from idx_backfill_dlq_fingerprint_seen alone (index-only) when the
 * selector has no filter on other columns. $10: only this fingerprint (--group). Each
 * group's sample (its oldest selected entry) is one probe of the same index; the groups'
 * error lines are read afterwards (errorLinesById).
 */
export const aggregateFingerprinted = statement({
  id: 'dlq.aggregate_fingerprinted',
  params: [...SELECTOR_PARAMS, 'bool', 'int8?', 'text?'],
  columns: {
    task_identifier: 'text',
    queue_name: 'text',
    fingerprint: 'text',
    ...GROUP_COLUMNS,
  },
  prepare: false,
  sql: (s) => `select g.task_identifier, g.queue_name, g.fingerprint, g.count, g.first_failed_at,
       ${exactSql('g.first_failed_at')} as first_failed_at_exact, g.last_failed_at, sample.id as sample_id, g.key_conflicts
from (
  select d.task_identifier::text as task_identifier, d.queue_name::text as queue_name, d.error_fingerprint as fingerprint,
         count(*)::int as count, min(d.failed_at) as first_failed_at, max(d.failed_at) as last_failed_at,
         (count(*) filter (where $8::bool and d.job_key is not null
                           and exists (select 1 from ${s}._private_jobs j where j.key = d.job_key)))::int as key_conflicts
  from ${s}.backfill_dlq d
  where d.error_fingerprint is not null and d.error_fingerprint_at = d.failed_at
    and ${SELECTOR_WHERE} and ($9::bigint is null or d.id <= $9::bigint)
    and ($10::text is null or d.error_fingerprint = $10::text)
  group by 1, 2, 3
) g
cross join lateral (
  select d.id from ${s}.backfill_dlq d
  where d.task_identifier = g.task_identifier and d.queue_name = g.queue_name and d.error_fingerprint is not null
    and d.error_fingerprint = g.fingerprint and d.failed_at = g.first_failed_at and d.error_fingerprint_at = d.failed_at
    and ${SELECTOR_WHERE} and ($9::bigint is null or d.id <= $9::bigint)
  order by d.id
  limit 1
) sample`,
})

/**
 * aggregateFingerprinted over the whole DLQ ($1 tasks, $2 queues, $3 fingerprint: optional
 * equality filters) from backfill_dlq_group_counts, which the triggers keep: O(groups), not
 * O(entries). Each group's first and last entry are one probe each of
 * idx_backfill_dlq_fingerprint_seen. sample_id null: the counts say a group has entries the
 * index does not have (counts not to be trusted).
 */
export const groupCountsAggregate = statement({
  id: 'dlq.group_counts_aggregate',
  params: ['_text?', '_text?', 'text?'],
  columns: {
    task_identifier: 'text',
    queue_name: 'text',
    fingerprint: 'text',
    count: 'int4',
    first_failed_at: 'timestamptz?',
    first_failed_at_exact: 'text?',
    last_failed_at: 'timestamptz?',
    sample_id: 'int8?',
    key_conflicts: 'int4',
  },
  prepare: false,
  sql: (s) => `select c.task_identifier, c.queue_name, c.error_fingerprint as fingerprint, c.entries::int as count,
       f.failed_at as first_failed_at, ${exactSql('f.failed_at')} as first_failed_at_exact, l.failed_at as last_failed_at,
       f.id as sample_id, 0 as key_conflicts
from ${s}.${GROUP_COUNTS_TABLE} c
left join lateral (
  select d.failed_at, d.id from ${s}.backfill_dlq d
  where d.task_identifier = c.task_identifier and d.queue_name = c.queue_name and d.error_fingerprint is not null
    and d.error_fingerprint = c.error_fingerprint and d.error_fingerprint_at = d.failed_at
  order by d.failed_at, d.id
  limit 1
) f on true
left join lateral (
  select d.failed_at from ${s}.backfill_dlq d
  where d.task_identifier = c.task_identifier and d.queue_name = c.queue_name and d.error_fingerprint is not null
    and d.error_fingerprint = c.error_fingerprint and d.error_fingerprint_at = d.failed_at
  order by d.failed_at desc, d.id desc
  limit 1
) l on true
where c.entries > 0
  and ($1::text[] is null or c.task_identifier = any($1::text[]))
  and ($2::text[] is null or c.queue_name = any($2::text[]))
  and ($3::text is null or c.error_fingerprint = $3::text)`,
})

/**
 * Whether backfill_dlq_group_counts can be trusted in this snapshot: the table exists, this
 * role may read it (a monitoring role granted SELECT on every table before schema 5 may not:
 * it scans instead of failing), and every trigger keeping it is there and fires ($1: the
 * schema, unquoted).
 */
export const groupCountsReady = statement({
  id: 'dlq.group_counts_ready',
  params: ['text'],
  columns: {ready: 'bool'},
  sql: () => `select coalesce((select has_table_privilege(c.oid, 'SELECT') from pg_class c join pg_namespace n on n.oid = c.relnamespace
                         where n.nspname = $1::text and c.relname = '${GROUP_COUNTS_TABLE}' and c.relkind = 'r'), false)
       and (select count(*) from pg_trigger t join pg_class c on c.oid = t.tgrelid join pg_namespace n on n.oid = c.relnamespace
            where n.nspname = $1::text and c.relname = 'backfill_dlq' and t.tgenabled in ('O', 'A')
              and t.tgname in (${GROUP_COUNTS_TRIGGERS.map((name) => `'${name}'`).join(', ')})) = ${GROUP_COUNTS_TRIGGERS.length} as ready`,
})

/**
 * The groups whose kept count differs from a fresh count of the entries (added, removed or
 * changed), as a CTE named drift (task_identifier, queue_name, error_fingerprint, kept, counted).
 */
const groupCountsDriftCte = (s: string): string => `with fresh as materialized (
  select d.task_identifier::text as task_identifier, d.queue_name::text as queue_name, d.error_fingerprint, count(*) as entries
  from ${s}.backfill_dlq d where ${COUNTED('d')} group by 1, 2, 3
), drift as materialized (
  select coalesce(f.task_identifier, c.task_identifier) as task_identifier, coalesce(f.queue_name, c.queue_name) as queue_name,
         coalesce(f.error_fingerprint, c.error_fingerprint) as error_fingerprint, c.entries as kept, f.entries as counted
  from fresh f full join ${s}.${GROUP_COUNTS_TABLE} c
    on c.task_identifier = f.task_identifier and c.queue_name = f.queue_name and c.error_fingerprint = f.error_fingerprint
  where c.entries is distinct from f.entries
)`

const DRIFT_SUMMARY = `(select count(*) from drift)::int as groups,
  (select coalesce(sum(abs(coalesce(counted, 0) - coalesce(kept, 0))), 0) from drift)::int8 as entries,
  (select coalesce(sum(entries), 0) from fresh)::int8 as total`

/** How far backfill_dlq_group_counts is from a fresh count, read only (one snapshot: run it in a repeatable-read transaction). */
export const groupCountsDrift = statement({
  id: 'dlq.group_counts_drift',
  params: [],
  columns: {groups: 'int4', entries: 'int8', total: 'int8'},
  prepare: false,
  sql: (s) => `${groupCountsDriftCte(s)}
select ${DRIFT_SUMMARY}`,
})

/**
 * Sets backfill_dlq_group_counts to a fresh count, writing only the groups that differ; run
 * with backfill_dlq locked against writers (SHARE ROW EXCLUSIVE), so no trigger runs between
 * the count and the writes. Returns the drift it corrected.
 */
export const recountGroupCounts = statement({
  id: 'dlq.recount_group_counts',
  params: [],
  columns: {groups: 'int4', entries: 'int8', total: 'int8'},
  prepare: false,
  sql: (s) => `${groupCountsDriftCte(s)}, changed as (
  update ${s}.${GROUP_COUNTS_TABLE} c set entries = d.counted from drift d
  where d.kept is not null and d.counted is not null
    and c.task_identifier = d.task_identifier and c.queue_name = d.queue_name and c.error_fingerprint = d.error_fingerprint
), removed as (
  delete from ${s}.${GROUP_COUNTS_TABLE} c using drift d
  where d.counted is null
    and c.task_identifier = d.task_identifier and c.queue_name = d.queue_name and c.error_fingerprint = d.error_fingerprint
), added as (
  insert into ${s}.${GROUP_COUNTS_TABLE} (task_identifier, queue_name, error_fingerprint, entries)
  select task_identifier, queue_name, error_fingerprint, counted from drift where kept is null
  order by 1, 2, 3
)
-- Data-modifying CTEs run to completion whether or not the query reads them.
select ${DRIFT_SUMMARY}`,
})

/** The first error lines of entries $1 (the samples of fingerprinted groups). */
export const errorLinesById = statement({
  id: 'dlq.error_lines_by_id',
  params: ['_int8'],
  columns: {id: 'int8', error_line: 'text'},
  sql: (s) => `select d.id, ${errorLineSql('d')} as error_line from ${s}.backfill_dlq d where d.id = any($1::bigint[])`,
})

/** The id of the $8-th selected entry in id order (where `--limit $8` ends); null if there are fewer. */
export const nthSelectedId = statement({
  id: 'dlq.nth_selected_id',
  params: [...SELECTOR_PARAMS, 'int4'],
  columns: {id: 'int8?', count: 'int4'},
  prepare: false,
  sql: (s) => `select max(n.id) as id, count(*)::int as count
from (select d.id from ${s}.backfill_dlq d where ${SELECTOR_WHERE} order by d.id limit $8::int) n`,
})

/**
 * For the rest of this transaction: work_mem $1 (a hash aggregate over a large DLQ stays in
 * memory instead of spilling), and plan cursors for reading every row (the default 0.1
 * favours fast-start plans, several times slower for a full aggregate).
 */
export const setLocalAggregateSettings = statement({
  id: 'dlq.set_local_aggregate_settings',
  params: ['text'],
  columns: {work_mem: 'text', cursor_tuple_fraction: 'text'},
  sql: () =>
    `select set_config('work_mem', $1::text, true) as work_mem, set_config('cursor_tuple_fraction', '1', true) as cursor_tuple_fraction`,
})

/**
 * enable_seqscan for the rest of this transaction ($1 'on' / 'off'). The text pass turns it off:
 * the planner cannot estimate unfingerprintedSql (two columns compared) and takes it for most
 * of the table, so it scans a million entries to find the few idx_backfill_dlq_unfingerprinted
 * holds (300 ms vs 20 ms at 1M). Where the few are many, the bitmap scan it takes instead costs
 * about what the scan would.
 */
export const setLocalSeqscan = statement({
  id: 'dlq.set_local_seqscan',
  params: ['text'],
  columns: {enable_seqscan: 'text'},
  sql: () => `select set_config('enable_seqscan', $1::text, true) as enable_seqscan`,
})

const CANDIDATE_COLUMNS = {id: 'int8', task_identifier: 'text', error_line: 'text?'} as const

/**
 * Locks the entries $8 that still match the selector ($1..$7) for this transaction, skipping
 * those another transaction holds, and returns them (in id order) with their error line, to
 * re-check a --group match on the locked version. The selector is applied again because an
 * entry may have changed since it was read (failed again after the selection's `until`, moved
 * to another queue by an upsert, its error rewritten within the same failure group).
 */
export const lockDlqIds = statement({
  id: 'dlq.lock_ids',
  params: [...SELECTOR_PARAMS, '_int8'],
  columns: {id: 'int8', task_identifier: 'text', error_line: 'text'},
  prepare: false,
  sql: (s) => `select d.id, d.task_identifier::text as task_identifier, ${errorLineSql('d')} as error_line
from ${s}.backfill_dlq d
where d.id = any($8::bigint[]) and ${SELECTOR_WHERE}
order by d.id
for update of d skip locked`,
})

/**
 * The next $9 selected entries after id $8, in id order, without locking ($10: with their
 * error line): the walk of dry runs and of --group selections.
 */
export const peekDlqBatch = statement({
  id: 'dlq.peek_batch',
  params: [...SELECTOR_PARAMS, 'int8', 'int4', 'bool'],
  columns: CANDIDATE_COLUMNS,
  prepare: false,
  sql: (
    s,
  ) => `select d.id, d.task_identifier::text as task_identifier, case when $10::bool then ${errorLineSql('d')} end as error_line
from ${s}.backfill_dlq d
where ${SELECTOR_WHERE} and d.id > $8::bigint
order by d.id
limit $9::int`,
})

/** How many entries the selector matches (for the confirmation prompt and progress). */
export const countSelected = statement({
  id: 'dlq.count_selected',
  params: [...SELECTOR_PARAMS],
  columns: {count: 'int8'},
  prepare: false,
  sql: (s) => `select count(*) as count from ${s}.backfill_dlq d where ${SELECTOR_WHERE}`,
})

/** Entries by id, in id order (samples for dry runs, pages of `list --group`). */
export const entriesById = statement({
  id: 'dlq.entries_by_id',
  params: ['_int8'],
  columns: {...ENTRY_COLUMNS, failed_at_exact: 'text'},
  sql: (s) => `select ${ENTRY_SELECT}, ${FAILED_AT_EXACT} as failed_at_exact
from ${s}.backfill_dlq d
where d.id = any($1::bigint[])
order by d.id`,
})

/**
 * The next $2 entries after id $1 without a current fingerprint, locked for this transaction
 * (skip locked), with what their fingerprint is computed from: the fingerprint backfill.
 */
export const lockUnfingerprinted = statement({
  id: 'dlq.lock_unfingerprinted',
  params: ['int8', 'int4'],
  columns: {id: 'int8', task_identifier: 'text', error_line: 'text'},
  sql: (s) => `select d.id, d.task_identifier::text as task_identifier, ${errorLineSql('d')} as error_line
from ${s}.backfill_dlq d
where ${unfingerprintedSql('d')} and d.id > $1::bigint
order by d.id
limit $2::int
for update of d skip locked`,
})
