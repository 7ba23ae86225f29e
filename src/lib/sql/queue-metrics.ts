import {dlqTotalFromGroupsSql} from './status.js'
import {statement} from './statement.js'

/**
 * Cumulative counts for the queue metrics' counters, from backfill's own tables. The audit
 * table has one row per batch of an operator's action (CLI captures, retries, purges, the
 * jobs actions); its `count` is the rows the batch acted on. Workers' own captures are not
 * audited (they count in the worker's backfill_dlq_jobs_added).
 */
export const auditTotals = statement({
  id: 'queue_metrics.audit_totals',
  params: [],
  columns: {action: 'text', total: 'int8'},
  sql: (s) => `select action, coalesce(sum(count), 0)::int8 as total from ${s}.backfill_dlq_audit group by action`,
})

/** DLQ history events (a retried job's way back: retried, recaptured) by kind. */
export const dlqEventTotals = statement({
  id: 'queue_metrics.dlq_event_totals',
  params: [],
  columns: {event: 'text', total: 'int8'},
  sql: (s) => `select event, count(*)::int8 as total from ${s}.backfill_dlq_events group by event`,
})

/**
 * What changes whenever the DLQ's failure groups may have: rows added (max id), upserted
 * again (max failed_at) or deleted (count). Lets the queue metrics skip regrouping an
 * unchanged DLQ.
 */
export const dlqChangeKey = statement({
  id: 'queue_metrics.dlq_change_key',
  params: [],
  columns: {key: 'text'},
  sql: (s) =>
    `select count(*)::text || ':' || coalesce(max(id), 0)::text || ':' || coalesce(max(failed_at)::text, '') as key from ${s}.backfill_dlq`,
})

/** dlqChangeKey with the entry count from the trigger-kept counts: three index probes, no scan. */
export const dlqChangeKeyFromGroups = statement({
  id: 'queue_metrics.dlq_change_key_from_groups',
  params: [],
  columns: {key: 'text'},
  sql: (s) =>
    `select ${dlqTotalFromGroupsSql(s)}::text || ':' || coalesce((select max(id) from ${s}.backfill_dlq), 0)::text || ':' || coalesce((select max(failed_at) from ${s}.backfill_dlq)::text, '') as key`,
})
