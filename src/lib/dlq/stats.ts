import type {Database} from '../db.js'
import {
  aggregateDlq,
  aggregateFingerprinted,
  errorLinesById,
  groupCountsAggregate,
  groupCountsReady,
  nthSelectedId,
  setLocalAggregateSettings,
  setLocalSeqscan,
} from '../sql/dlq-select.js'
import {Fingerprinter} from './fingerprint.js'
import {lastSelectedId} from './scan.js'
import {selectorParams, type DlqSelector} from './selector.js'

export interface FailureGroup {
  /** Pass to --group to select exactly these entries. */
  fingerprint: string
  taskIdentifier: string
  /** The error with its volatile parts replaced (<n>, <uuid>, "<v>", …). */
  template: string
  count: number
  firstSeen: Date
  lastSeen: Date
  /** The oldest entry of the group (by failed_at, then id) and its error (first line). */
  sampleId: string
  sampleError: string
}

export interface DlqStats {
  total: number
  oldest: Date | null
  newest: Date | null
  byTask: {taskIdentifier: string; count: number}[]
  /** '' = parallel. */
  byQueue: {queueName: string; count: number}[]
  /** Largest first. */
  groups: FailureGroup[]
  /** Entries beyond the tracked number of distinct groups (0 unless groupsTruncated). */
  ungrouped: number
  groupsTruncated: boolean
  /** Entries whose job_key a job in the jobs table holds (a retry skips them by default); null when not checked. */
  keyConflicts: number | null
  durationMs: number
}

export interface StatsOptions {
  selector: DlqSelector
  /** Count key conflicts (retry dry runs). */
  checkKeyConflicts?: boolean
  /** Distinct groups tracked; the rest are counted as ungrouped (bounded memory). */
  maxGroups?: number
  /** Aggregated rows fetched per round trip. */
  fetchSize?: number
  /**
   * 'scan' counts the entries even when backfill_dlq_group_counts could answer (tests and the
   * benchmark compare the two). Default 'auto'.
   */
  source?: 'auto' | 'scan'
  /** Told which way the fingerprinted entries were counted. */
  onSource?: (source: StatsSource) => void
}

/** How stats counted the entries with a stored fingerprint: from the trigger-kept counts, or by scanning them. */
export type StatsSource = 'group-counts' | 'scan'

export const DEFAULT_MAX_GROUPS = 10_000
const FETCH_SIZE = 5000
/** For the hash aggregate of one statement (set local: this transaction only). */
const STATS_WORK_MEM = '64MB'

interface GroupState extends FailureGroup {
  sampleIdNum: bigint
  /** The sample's failed_at to the microsecond (sortable text). */
  sampleAt: string
  /** sampleError (and template) hold the sample's line; false until read for a fingerprinted group. */
  sampleRead: boolean
}

/**
 * Totals, per task and per queue counts and failure groups of a selection, in one snapshot:
 * entries with a current stored fingerprint (every capture writes one) are aggregated by
 * task, queue and fingerprint from idx_backfill_dlq_fingerprint alone; the others (written
 * by the Rust crate, or rewritten by its upsert) by task, queue and first error line, each
 * distinct line fingerprinted here (with a cache of templates). Both stream through cursors;
 * the samples of stored groups are read by id. Memory is bounded by the fetch size and the
 * group cap.
 */
export async function dlqStats(db: Database, options: StatsOptions): Promise<DlqStats> {
  const started = performance.now()
  const {selector} = options
  const params = selectorParams(selector)
  const maxGroups = options.maxGroups ?? DEFAULT_MAX_GROUPS
  const checkKeys = options.checkKeyConflicts === true
  const fingerprinter = new Fingerprinter()
  const group = selector.group

  const stats: DlqStats = {
    total: 0,
    oldest: null,
    newest: null,
    byTask: [],
    byQueue: [],
    groups: [],
    ungrouped: 0,
    groupsTruncated: false,
    keyConflicts: checkKeys ? 0 : null,
    durationMs: 0,
  }
  const byTask = new Map<string, number>()
  const byQueue = new Map<string, number>()
  const groups = new Map<string, GroupState>()

  // --limit N takes the first N selected entries in id order: find the id where they end.
  let throughId: string | null = null
  if (selector.limit !== undefined) {
    if (group === undefined) {
      const nth = await db.one(nthSelectedId, [...params, selector.limit])
      throughId = nth.count >= selector.limit ? nth.id : null
    } else {
      throughId = await lastSelectedId(db, selector)
    }
  }

  interface AggregateRow {
    task_identifier: string
    queue_name: string
    count: number
    first_failed_at: Date
    first_failed_at_exact: string
    last_failed_at: Date
    sample_id: string
    key_conflicts: number
  }
  // errorLine null: a fingerprinted group whose sample line is read afterwards.
  const add = (row: AggregateRow, fingerprint: string, template: string, errorLine: string | null): void => {
    stats.total += row.count
    if (stats.keyConflicts !== null) stats.keyConflicts += row.key_conflicts
    if (stats.oldest === null || row.first_failed_at < stats.oldest) stats.oldest = row.first_failed_at
    if (stats.newest === null || row.last_failed_at > stats.newest) stats.newest = row.last_failed_at
    byTask.set(row.task_identifier, (byTask.get(row.task_identifier) ?? 0) + row.count)
    byQueue.set(row.queue_name, (byQueue.get(row.queue_name) ?? 0) + row.count)
    const existing = groups.get(fingerprint)
    if (existing) {
      existing.count += row.count
      if (row.first_failed_at < existing.firstSeen) existing.firstSeen = row.first_failed_at
      if (row.last_failed_at > existing.lastSeen) existing.lastSeen = row.last_failed_at
      // The group's oldest entry: each row's sample is its oldest, failed_at first_failed_at.
      const sampleId = BigInt(row.sample_id)
      if (
        row.first_failed_at_exact < existing.sampleAt ||
        (row.first_failed_at_exact === existing.sampleAt && sampleId < existing.sampleIdNum)
      ) {
        existing.sampleIdNum = sampleId
        existing.sampleAt = row.first_failed_at_exact
        existing.sampleId = row.sample_id
        existing.sampleError = errorLine ?? ''
        existing.sampleRead = errorLine !== null
        if (errorLine !== null) existing.template = template
      }
    } else if (groups.size < maxGroups) {
      groups.set(fingerprint, {
        fingerprint,
        taskIdentifier: row.task_identifier,
        template,
        count: row.count,
        firstSeen: row.first_failed_at,
        lastSeen: row.last_failed_at,
        sampleId: row.sample_id,
        sampleIdNum: BigInt(row.sample_id),
        sampleAt: row.first_failed_at_exact,
        sampleError: errorLine ?? '',
        sampleRead: errorLine !== null,
      })
    } else {
      stats.ungrouped += row.count
      stats.groupsTruncated = true
    }
  }
  const reset = (): void => {
    Object.assign(stats, {total: 0, oldest: null, newest: null, ungrouped: 0, groupsTruncated: false})
    byTask.clear()
    byQueue.clear()
    groups.clear()
  }

  // The trigger-kept counts answer for the whole DLQ or task/queue/group equality; anything
  // else (ids, keys, times, error text, --limit, key conflicts) needs the entries themselves.
  const countable =
    options.source !== 'scan' &&
    !checkKeys &&
    selector.limit === undefined &&
    params[0] === null &&
    params[3] === null &&
    params[4] === null &&
    params[5] === null &&
    params[6] === null

  // One snapshot for both passes: an entry is counted once, by its stored fingerprint if it
  // has a current one, else from its error text.
  await db.transaction(async (tx) => {
    await tx.execScript('set transaction isolation level repeatable read')
    await tx.one(setLocalAggregateSettings, [STATS_WORK_MEM])
    const fetchSize = options.fetchSize ?? FETCH_SIZE
    let source: StatsSource = 'scan'
    // The triggers checked in this snapshot: disabled or missing, the counts may be stale.
    if (countable && (await tx.one(groupCountsReady, [db.schema])).ready) {
      source = 'group-counts'
      let consistent = true
      await tx.cursor(groupCountsAggregate, [params[1], params[2], group ?? null], fetchSize, (rows) => {
        for (const row of rows) {
          if (row.sample_id === null || row.first_failed_at === null || row.last_failed_at === null) consistent = false
          else if (consistent) add(row as AggregateRow, row.fingerprint, '', null)
        }
      })
      // A count without an entry behind it: not trusted, counted by the scan instead.
      if (!consistent) {
        reset()
        source = 'scan'
      }
    }
    if (source === 'scan') {
      await tx.cursor(aggregateFingerprinted, [...params, checkKeys, throughId, group ?? null], fetchSize, (rows) => {
        for (const row of rows) add(row, row.fingerprint, '', null)
      })
    }
    options.onSource?.(source)
    // Through the partial index of entries without a current fingerprint (see setLocalSeqscan).
    await tx.one(setLocalSeqscan, ['off'])
    await tx.cursor(aggregateDlq, [...params, checkKeys, throughId, true], fetchSize, (rows) => {
      for (const row of rows) {
        const {fingerprint, template} = fingerprinter.of(row.task_identifier, row.error_line)
        if (group !== undefined && fingerprint !== group) continue
        add(row, fingerprint, template, row.error_line)
      }
    })
    await tx.one(setLocalSeqscan, ['on'])
    // Samples of the groups counted from stored fingerprints: their error lines and templates.
    const unread = [...groups.values()].filter((g) => !g.sampleRead)
    for (let i = 0; i < unread.length; i += fetchSize) {
      const chunk = unread.slice(i, i + fetchSize)
      const lines = new Map(
        (await tx.rows(errorLinesById, [chunk.map((g) => g.sampleId)])).map((r) => [r.id, r.error_line]),
      )
      for (const g of chunk) {
        g.sampleError = lines.get(g.sampleId) ?? ''
        g.template = fingerprinter.of(g.taskIdentifier, g.sampleError).template
      }
    }
  })
  stats.byTask = [...byTask]
    .map(([taskIdentifier, count]) => ({taskIdentifier, count}))
    .sort((a, b) => b.count - a.count || a.taskIdentifier.localeCompare(b.taskIdentifier))
  stats.byQueue = [...byQueue]
    .map(([queueName, count]) => ({queueName, count}))
    .sort((a, b) => b.count - a.count || a.queueName.localeCompare(b.queueName))
  stats.groups = [...groups.values()]
    .sort(
      (a, b) =>
        b.count - a.count ||
        a.firstSeen.getTime() - b.firstSeen.getTime() ||
        (a.fingerprint < b.fingerprint ? -1 : a.fingerprint > b.fingerprint ? 1 : 0),
    )
    .map(({sampleIdNum: _, sampleRead: __, sampleAt: ___, ...g}) => g)
  stats.durationMs = performance.now() - started
  return stats
}
