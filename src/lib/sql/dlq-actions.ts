import {SELECTOR_PARAMS, SELECTOR_WHERE, selectorWhere} from './dlq-select.js'
import {statement} from './statement.js'

/**
 * Moving entries out of the DLQ. Each statement locks its batch (for update skip locked) or
 * acts on ids its transaction has locked already, and writes its audit row in the same
 * statement, so the audit trail says exactly what committed.
 */

/** Audit parameters shared by the action statements: os user, hostname, reason, selection, details. */
const AUDIT_PARAMS = ['text?', 'text?', 'text?', 'jsonb', 'jsonb'] as const

/** Parameters $1..$13 of both retry statements (see retrySql). */
const RETRY_PARAMS = [
  'int4?',
  'int4?',
  'timestamptz?',
  'int4',
  'bool',
  'bool',
  '_text?',
  '_text?',
  ...AUDIT_PARAMS,
] as const

const RETRY_COLUMNS = {
  dlq_id: 'int8',
  job_id: 'int8?',
  status: 'text',
  task_identifier: 'text',
  audit_id: 'int8?',
  max_id: 'int8',
  replaced: 'bool?',
  keyed: 'bool',
} as const

/**
 * ONE statement retrying a batch of entries: each entry leaves backfill_dlq and becomes a
 * job through graphile-worker's own add_jobs(), so job_key semantics are graphile's; then
 * the audit row and the retry lineage (so a recapture carries the retry count, touch count,
 * notes, and the entry and audit row the job came from). `candidates` selects the batch (locked).
 *
 * $1 priority, $2 max_attempts, $3 run_at (null: now) override the entry's; $4 max_attempts
 * for rows without one; $5 true: the crate's legacy queue 'default' is parallel; $6 true:
 * key conflicts use graphile's replace (else the entry stays in the DLQ); $7/$8 flags for
 * bulk (priority >= 0) and fast priorities (flagsForPriority); $9..$13 audit.
 *
 * Each job's run_at is the base plus the entry's position in microseconds: the batch keeps
 * its order, and each job add_jobs() returns (in no guaranteed order) is matched to its entry
 * by run_at. An entry whose job did not come back (graphile #580) is returned with status
 * 'retried' and job_id null; the caller must roll the batch back. `replaced` is true when
 * add_jobs() updated an existing job (revision > 0): with $6 false (skip) that is a job
 * enqueued after this statement's snapshot, and the caller must redo the batch, which then
 * sees it as a key conflict.
 *
 * One row per candidate: status 'retried'; 'key_conflict' (a job with the same job_key is in
 * the jobs table and $6 is false: left in the DLQ); 'invalid' (task or queue name over 128
 * characters, or a job_key graphile rejects: left in the DLQ). max_id: the batch's last id.
 */
function retrySql(s: string, candidates: string): string {
  return `with candidates as (
  ${candidates}
), entries as (
  select c.id, c.task_identifier::text as task_identifier,
         case when length(c.task_identifier) > 128 or length(c.queue_name) > 128
                   or c.job_key = '' or length(c.job_key) > 512 then 'invalid'
              when not $6::bool and c.job_key is not null
                   and exists (select 1 from ${s}._private_jobs j where j.key = c.job_key) then 'key_conflict'
              else 'retried' end as status,
         c.job_key is not null as keyed
  from candidates c
), moved as (
  -- = any(array): an index scan of the batch (a join would scan the whole table per batch).
  delete from ${s}.backfill_dlq d
  where d.id = any(array(select e.id from entries e where e.status = 'retried'))
  returning d.id, d.task_identifier::text as task_identifier, d.payload, d.queue_name::text as queue_name, d.priority,
            d.job_key::text as job_key, d.max_attempts, d.failure_count, d.requeued_count, d.notes
), specs as (
  select m.id, m.task_identifier, m.payload, m.job_key, m.failure_count, m.requeued_count, m.notes,
         case when m.queue_name = '' then null
              when m.queue_name = 'default' and $5::bool then null
              else m.queue_name end as queue_name,
         greatest(-32768, least(32767, coalesce($1::int, m.priority)))::smallint as priority,
         greatest(1, least(32767, coalesce($2::int, m.max_attempts, $4::int)))::smallint as max_attempts,
         coalesce($3::timestamptz, now()) + (row_number() over (order by m.id)) * interval '1 microsecond' as run_at
  from moved m
), added as (
  select j.id, j.run_at, j.revision
  from ${s}.add_jobs(array(
    select row(sp.task_identifier, sp.payload::json, sp.queue_name, sp.run_at, sp.max_attempts, sp.job_key, sp.priority,
               case when sp.priority >= 0 then $7::text[] else $8::text[] end)::${s}.job_spec
    from specs sp order by sp.id)) j
), recaptured as (
  -- A recaptured entry belongs to the case of the job's first entry.
  select distinct on (ev.dlq_id) ev.dlq_id, ev.case_id
  from ${s}.backfill_dlq_events ev
  where ev.event = 'recaptured' and ev.dlq_id = any(array(select m.id from moved m))
  order by ev.dlq_id, ev.id desc
), mapped as (
  -- Not sp.*: the payload is not needed past add_jobs(), and this CTE is read five times.
  select sp.id, sp.requeued_count, sp.failure_count, sp.notes, a.id as job_id, a.revision, coalesce(rc.case_id, sp.id) as case_id
  from specs sp
  join added a on a.run_at = sp.run_at
  left join recaptured rc on rc.dlq_id = sp.id
), audit as (
  insert into ${s}.backfill_dlq_audit (action, os_user, hostname, reason, selection, count, dlq_ids, job_ids, details)
  select 'retry', $9::text, $10::text, $11::text, $12::jsonb, (select count(*) from mapped),
         (select array_agg(mp.id order by mp.id) from mapped mp), (select array_agg(mp.job_id order by mp.id) from mapped mp),
         $13::jsonb || jsonb_build_object('skipped', (select coalesce(jsonb_agg(jsonb_build_object('id', e.id::text, 'status', e.status) order by e.id), '[]'::jsonb)
                                                      from entries e where e.status <> 'retried'))
  where exists (select 1 from entries)
  returning id
), lineage as (
  -- Carries the story with the job; the capture statement turns it into the 'retried' and
  -- 'recaptured' events if the job fails again (no per-entry event rows here).
  insert into ${s}.backfill_dlq_retried_jobs as r (job_id, case_id, requeued_count, failure_count, notes, dlq_id, audit_id)
  select mp.job_id, mp.case_id, mp.requeued_count + 1, mp.failure_count, mp.notes, mp.id, (select id from audit) from mapped mp
  on conflict (job_id) do update set case_id = excluded.case_id, requeued_count = excluded.requeued_count,
    failure_count = excluded.failure_count, notes = excluded.notes, retried_at = now(), dlq_id = excluded.dlq_id,
    audit_id = excluded.audit_id
)
select e.id as dlq_id, mp.job_id, e.status, e.task_identifier, (select id from audit) as audit_id,
       (select max(id) from candidates) as max_id, mp.revision > 0 as replaced, e.keyed
from entries e left join mapped mp on mp.id = e.id
order by e.id`
}

const CANDIDATE_FIELDS = 'd.id, d.task_identifier, d.queue_name, d.job_key'

/**
 * Retries the next $22 selected entries after id $21 (selector: $14..$20),
 * locking them with skip locked: two retries at once split the entries between them.
 */
export const retryNextEntries = statement({
  id: 'dlq.retry_next',
  params: [...RETRY_PARAMS, ...SELECTOR_PARAMS, 'int8', 'int4'],
  columns: RETRY_COLUMNS,
  prepare: false,
  sql: (s) =>
    retrySql(
      s,
      `select ${CANDIDATE_FIELDS} from ${s}.backfill_dlq d
  where ${selectorWhere(14)} and d.id > $21::bigint
  order by d.id
  limit $22::int
  for update of d skip locked`,
    ),
})

/** Retries the entries $14, which this transaction has locked already (lockDlqIds, for --group). */
export const retryLockedEntries = statement({
  id: 'dlq.retry_locked',
  params: [...RETRY_PARAMS, '_int8'],
  columns: RETRY_COLUMNS,
  prepare: false,
  sql: (s) => retrySql(s, `select ${CANDIDATE_FIELDS} from ${s}.backfill_dlq d where d.id = any($14::bigint[])`),
})

/**
 * After a retry statement in skip mode, in its transaction: did its add_jobs() clear the key
 * of a job that was not available (running, or permanently failed)? add_jobs() looks for such
 * jobs with a snapshot of its own, so a job enqueued with an entry's key after the retry
 * statement's snapshot and fetched by a worker before add_jobs() ran loses its key and is put
 * on its last attempt (graphile's replace of a locked job) although the statement saw no key
 * conflict. Those rows are exhausted, keyless and updated at now() (this transaction's start):
 * read through idx_backfill_jobs_exhausted when it exists (every exhausted job not yet
 * captured, usually few), and run only after batches that retried a keyed entry. Another transaction started in the same
 * microsecond doing the same would only make the caller redo the batch.
 */
export const retryStrippedKeys = statement({
  id: 'dlq.retry_stripped_keys',
  params: [],
  columns: {stripped: 'bool'},
  sql: (s) => `select exists (
  select 1 from ${s}._private_jobs j
  where j.attempts >= j.max_attempts and j.key is null and j.updated_at = now()
) as stripped`,
})

const PURGE_COLUMNS = {id: 'int8', task_identifier: 'text', audit_id: 'int8?', max_id: 'int8'} as const

/** Deletes the `candidates` (locked) and writes the audit row; $1..$5 audit. */
function purgeSql(s: string, candidates: string): string {
  return `with candidates as (
  ${candidates}
), deleted as (
  -- = any(array): an index scan of the batch (a join would scan the whole table per batch).
  delete from ${s}.backfill_dlq d where d.id = any(array(select c.id from candidates c))
  returning d.id, d.task_identifier::text as task_identifier
), audit as (
  insert into ${s}.backfill_dlq_audit (action, os_user, hostname, reason, selection, count, dlq_ids, details)
  select 'purge', $1::text, $2::text, $3::text, $4::jsonb, (select count(*) from deleted),
         (select array_agg(id order by id) from deleted), $5::jsonb
  where exists (select 1 from deleted)
  returning id
)
select dl.id, dl.task_identifier, (select id from audit) as audit_id, (select max(id) from candidates) as max_id
from deleted dl`
}

/** Deletes the next $14 selected entries after id $13 (selector: $6..$12), skipping locked ones. */
export const purgeNextEntries = statement({
  id: 'dlq.purge_next',
  params: [...AUDIT_PARAMS, ...SELECTOR_PARAMS, 'int8', 'int4'],
  columns: PURGE_COLUMNS,
  prepare: false,
  sql: (s) =>
    purgeSql(
      s,
      `select d.id from ${s}.backfill_dlq d
  where ${selectorWhere(6)} and d.id > $13::bigint
  order by d.id
  limit $14::int
  for update of d skip locked`,
    ),
})

/** Deletes the entries $6, which this transaction has locked already (lockDlqIds, for --group). */
export const purgeLockedEntries = statement({
  id: 'dlq.purge_locked',
  params: [...AUDIT_PARAMS, '_int8'],
  columns: PURGE_COLUMNS,
  prepare: false,
  sql: (s) => purgeSql(s, `select d.id from ${s}.backfill_dlq d where d.id = any($6::bigint[])`),
})

/**
 * Deletes the selected entries stored on heap pages [$8, $9) (tids "(page,0)"): a TID range
 * scan reads those pages only, so purging a table in such batches costs about what one
 * DELETE of it costs, without holding it for the whole time. The selector is in the DELETE
 * itself, so a row changed concurrently is re-checked against it. Nothing is returned (the
 * caller writes the audit row with the row count in the same transaction). PostgreSQL >= 14.
 */
export const purgePageRange = statement({
  id: 'dlq.purge_pages',
  params: [...SELECTOR_PARAMS, 'text', 'text'],
  columns: {},
  prepare: false,
  sql: (s) => `delete from ${s}.backfill_dlq d
where d.ctid >= $8::text::tid and d.ctid < $9::text::tid and ${SELECTOR_WHERE}`,
})

/**
 * The DLQ table's size in pages and its average rows per page (planner statistics, null
 * before the first ANALYZE), and whether the server has TID range scans (PostgreSQL 14).
 */
export const dlqTablePages = statement({
  id: 'dlq.table_pages',
  params: ['text'],
  columns: {pages: 'int8', rows_per_page: 'float8?', tid_range_scans: 'bool'},
  sql: () => `select (pg_relation_size(c.oid) / current_setting('block_size')::bigint)::bigint as pages,
       case when c.relpages > 0 and c.reltuples > 0 then (c.reltuples / c.relpages)::float8 end as rows_per_page,
       current_setting('server_version_num')::int >= 140000 as tid_range_scans
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where n.nspname = $1::text and c.relname = 'backfill_dlq'`,
})

/** One audit row (capture runs; retry and purge write theirs in their own statement). */
export const insertDlqAudit = statement({
  id: 'dlq.insert_audit',
  params: ['text', 'int4', '_int8?', '_int8?', ...AUDIT_PARAMS],
  columns: {id: 'int8'},
  sql: (
    s,
  ) => `insert into ${s}.backfill_dlq_audit (action, count, dlq_ids, job_ids, os_user, hostname, reason, selection, details)
values ($1::text, $2::int, $3::bigint[], $4::bigint[], $5::text, $6::text, $7::text, $8::jsonb, $9::jsonb)
returning id`,
})

/**
 * The audit trail, one row per run (a run's batches share details.run), newest first:
 * $1 action or null, $2 since or null, $3 rows.
 */
export const dlqAuditHistory = statement({
  id: 'dlq.audit_history',
  params: ['text?', 'timestamptz?', 'int4'],
  columns: {
    run: 'text',
    action: 'text',
    started_at: 'timestamptz',
    finished_at: 'timestamptz',
    count: 'int8',
    batches: 'int8',
    os_user: 'text?',
    db_user: 'text',
    hostname: 'text?',
    reason: 'text?',
    selection: 'jsonb?',
    options: 'jsonb?',
    skipped: 'int8',
    first_audit_id: 'int8',
  },
  prepare: false,
  sql: (
    s,
  ) => `select coalesce(a.details ->> 'run', a.id::text) as run, a.action, min(a.at) as started_at, max(a.at) as finished_at,
       sum(a.count)::bigint as count, count(*) as batches,
       (array_agg(a.os_user order by a.id))[1] as os_user, (array_agg(a.db_user order by a.id))[1] as db_user,
       (array_agg(a.hostname order by a.id))[1] as hostname, (array_agg(a.reason order by a.id))[1] as reason,
       (array_agg(a.selection order by a.id))[1] as selection, (array_agg(a.details -> 'options' order by a.id))[1] as options,
       coalesce(sum(jsonb_array_length(coalesce(a.details -> 'skipped', '[]'::jsonb))), 0)::bigint as skipped,
       min(a.id) as first_audit_id
from ${s}.backfill_dlq_audit a
where ($1::text is null or a.action = $1::text) and ($2::timestamptz is null or a.at >= $2::timestamptz)
group by 1, 2
order by min(a.at) desc, min(a.id) desc
limit $3::int`,
})
