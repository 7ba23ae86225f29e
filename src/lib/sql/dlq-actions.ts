import {statement} from './statement.js'

/**
 * Moving entries out of the DLQ. Each statement acts on ids the caller has locked in the
 * same transaction (dlq-select.ts lockDlqBatch), and writes its audit row in the same
 * statement, so the audit trail says exactly what committed.
 */

/** Audit parameters shared by the action statements: os user, hostname, reason, selection, details. */
const AUDIT_PARAMS = ['text?', 'text?', 'text?', 'jsonb', 'jsonb'] as const

/**
 * Retries the entries $1 (locked by this transaction) in ONE statement: each entry leaves
 * backfill_dlq and becomes a job through graphile-worker's own add_jobs(), so job_key
 * semantics are graphile's. Then the retry lineage (so a recapture carries the retry count,
 * touch count and notes), one `retried` event per entry and the audit row.
 *
 * Overrides: $2 priority, $3 max_attempts, $4 run_at (null: now). $5 max_attempts for rows
 * without one. $6 true: the crate's legacy queue 'default' is parallel. $7 true: key
 * conflicts use graphile's replace (else the entry stays in the DLQ). $8/$9 flags for bulk
 * (priority >= 0) and fast priorities (flagsForPriority). $10..$14 audit.
 *
 * Each job's run_at is the base plus its position in microseconds: the batch keeps its
 * order, and each returned job is matched to its entry by run_at (add_jobs returns rows in
 * no guaranteed order). An entry whose job did not come back (graphile #580) is returned
 * with job_id null and status 'retried'; the caller must then roll the transaction back.
 *
 * status: 'retried'; 'key_conflict' (a job with the same job_key is in the jobs table and
 * $7 is false: left in the DLQ); 'invalid' (task or queue name over 128 characters, or a
 * job_key graphile rejects: left in the DLQ).
 */
export const retryDlqEntries = statement({
  id: 'dlq.retry_entries',
  params: ['_int8', 'int4?', 'int4?', 'timestamptz?', 'int4', 'bool', 'bool', '_text?', '_text?', ...AUDIT_PARAMS],
  columns: {dlq_id: 'int8', job_id: 'int8?', status: 'text', task_identifier: 'text', audit_id: 'int8'},
  prepare: false,
  sql: (s) => `with entries as (
  select d.id, d.task_identifier::text as task_identifier,
         case when length(d.task_identifier) > 128 or length(d.queue_name) > 128
                   or d.job_key = '' or length(d.job_key) > 512 then 'invalid'
              when not $7::bool and d.job_key is not null
                   and exists (select 1 from ${s}._private_jobs j where j.key = d.job_key) then 'key_conflict'
              else 'retried' end as status
  from ${s}.backfill_dlq d
  where d.id = any($1::bigint[])
), moved as (
  delete from ${s}.backfill_dlq d using entries e
  where d.id = e.id and e.status = 'retried'
  returning d.id, d.task_identifier::text as task_identifier, d.payload, d.queue_name::text as queue_name, d.priority,
            d.job_key::text as job_key, d.max_attempts, d.failure_count, d.requeued_count, d.notes
), specs as (
  select m.id, m.task_identifier, m.payload, m.job_key, m.failure_count, m.requeued_count, m.notes,
         case when m.queue_name = '' then null
              when m.queue_name = 'default' and $6::bool then null
              else m.queue_name end as queue_name,
         greatest(-32768, least(32767, coalesce($2::int, m.priority)))::smallint as priority,
         greatest(1, least(32767, coalesce($3::int, m.max_attempts, $5::int)))::smallint as max_attempts,
         coalesce($4::timestamptz, now()) + (row_number() over (order by m.id)) * interval '1 microsecond' as run_at
  from moved m
), added as (
  select j.id, j.run_at
  from ${s}.add_jobs(array(
    select row(sp.task_identifier, sp.payload::json, sp.queue_name, sp.run_at, sp.max_attempts, sp.job_key, sp.priority,
               case when sp.priority >= 0 then $8::text[] else $9::text[] end)::${s}.job_spec
    from specs sp order by sp.id)) j
), mapped as (
  select sp.*, a.id as job_id,
         coalesce((select ev.case_id from ${s}.backfill_dlq_events ev
                   where ev.dlq_id = sp.id and ev.event = 'recaptured' order by ev.id desc limit 1), sp.id) as case_id
  from specs sp join added a on a.run_at = sp.run_at
), lineage as (
  insert into ${s}.backfill_dlq_retried_jobs as r (job_id, case_id, requeued_count, failure_count, notes)
  select mp.job_id, mp.case_id, mp.requeued_count + 1, mp.failure_count, mp.notes from mapped mp
  on conflict (job_id) do update set case_id = excluded.case_id, requeued_count = excluded.requeued_count,
    failure_count = excluded.failure_count, notes = excluded.notes, retried_at = now()
), audit as (
  insert into ${s}.backfill_dlq_audit (action, os_user, hostname, reason, selection, count, dlq_ids, job_ids, details)
  select 'retry', $10::text, $11::text, $12::text, $13::jsonb, (select count(*) from mapped),
         (select array_agg(mp.id order by mp.id) from mapped mp), (select array_agg(mp.job_id order by mp.id) from mapped mp),
         $14::jsonb || jsonb_build_object('skipped', (select coalesce(jsonb_agg(jsonb_build_object('id', e.id, 'status', e.status) order by e.id), '[]'::jsonb)
                                                      from entries e where e.status <> 'retried'))
  returning id
), events as (
  insert into ${s}.backfill_dlq_events (case_id, dlq_id, job_id, event, audit_id, details)
  select mp.case_id, mp.id, mp.job_id, 'retried', (select id from audit),
         jsonb_build_object('requeued_count', mp.requeued_count + 1, 'queue_name', mp.queue_name, 'priority', mp.priority,
                            'max_attempts', mp.max_attempts, 'run_at', mp.run_at)
  from mapped mp
)
select e.id as dlq_id, mp.job_id, e.status, e.task_identifier, (select id from audit) as audit_id
from entries e left join mapped mp on mp.id = e.id
order by e.id`,
})

/** Deletes the entries $1 (locked by this transaction) and writes the audit row. */
export const purgeDlqEntries = statement({
  id: 'dlq.purge_entries',
  params: ['_int8', ...AUDIT_PARAMS],
  columns: {id: 'int8', task_identifier: 'text', audit_id: 'int8'},
  prepare: false,
  sql: (s) => `with deleted as (
  delete from ${s}.backfill_dlq d where d.id = any($1::bigint[])
  returning d.id, d.task_identifier::text as task_identifier
), audit as (
  insert into ${s}.backfill_dlq_audit (action, os_user, hostname, reason, selection, count, dlq_ids, details)
  select 'purge', $2::text, $3::text, $4::text, $5::jsonb, (select count(*) from deleted),
         (select array_agg(id order by id) from deleted), $6::jsonb
  returning id
)
select dl.id, dl.task_identifier, (select id from audit) as audit_id from deleted dl`,
})

/** One audit row (capture runs; retry and purge write theirs in their own statement). */
export const insertDlqAudit = statement({
  id: 'dlq.insert_audit',
  params: ['text', 'int4', '_int8?', '_int8?', ...AUDIT_PARAMS],
  columns: {id: 'int8'},
  sql: (s) => `insert into ${s}.backfill_dlq_audit (action, count, dlq_ids, job_ids, os_user, hostname, reason, selection, details)
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
  sql: (s) => `select coalesce(a.details ->> 'run', a.id::text) as run, a.action, min(a.at) as started_at, max(a.at) as finished_at,
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
