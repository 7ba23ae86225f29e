import type {Database} from '../db.js'
import {UsageError} from '../errors.js'
import {DEFAULT_STALE_JOB_LOCK_TIMEOUT_MS, DEFAULT_STALE_QUEUE_LOCK_TIMEOUT_MS} from '../locks/clean.js'
import {listLocks} from '../locks/list.js'
import type {LivenessOptions} from '../locks/owners.js'
import {inspectSchema, requireMigrated, type SchemaInspection} from '../schema/inspect.js'
import {withGroupCounts} from '../dlq/group-counts.js'
import {dlqTotal, dlqTotalFromGroups, exhaustedTotal, jobTotals} from '../sql/status.js'
import {formatDuration} from '../duration.js'
import {lockSummary} from './status.js'

export interface CheckThresholds extends LivenessOptions {
  /** The oldest ready job waits at most this long (ms). */
  maxReadyAgeMs?: number
  /** At most this many ready jobs (backlog). */
  maxReady?: number
  /** At most this many DLQ entries (a missing DLQ table fails the check). */
  maxDlq?: number
  /** At most this many exhausted jobs not yet captured into the DLQ. */
  maxExhausted?: number
  /** At most this many locks (job + queue) held by dead owners. */
  maxDeadLocks?: number
  /** At most this many locks of unknown owners older than the stale timeouts. */
  maxStaleLocks?: number
  staleQueueLockTimeoutMs?: number
  staleJobLockTimeoutMs?: number
  /** At least this many live workers (backfill workers and Rust workers with heartbeats). */
  minWorkers?: number
  /** graphile-worker installed with no pending migration, and backfill's objects complete. */
  requireMigrated?: boolean
}

export type CheckName =
  'migrated' | 'ready-age' | 'ready' | 'dlq' | 'exhausted' | 'dead-locks' | 'stale-locks' | 'workers'

export interface CheckOutcome {
  name: CheckName
  status: 'pass' | 'fail' | 'skip'
  /** What was measured (null when it could not be). */
  actual: number | string | null
  /** The threshold, as given. */
  limit: number | string
  /** One line for people. */
  message: string
}

export interface CheckResult {
  schema: string
  ok: boolean
  failed: number
  checks: CheckOutcome[]
  at: Date
  durationMs: number
}

const THRESHOLD_KEYS = [
  'maxReadyAgeMs',
  'maxReady',
  'maxDlq',
  'maxExhausted',
  'maxDeadLocks',
  'maxStaleLocks',
  'minWorkers',
  'requireMigrated',
] as const

/**
 * A health gate: measures only what the given thresholds need and reports each one.
 * ok is false when any check fails. Without requireMigrated an un-migrated schema is a
 * NotMigratedError (exit 4), as for any command; with it, a failed check.
 */
export async function runChecks(db: Database, thresholds: CheckThresholds): Promise<CheckResult> {
  const started = performance.now()
  if (!THRESHOLD_KEYS.some((k) => thresholds[k] !== undefined && thresholds[k] !== false)) {
    throw new UsageError('no threshold given: check has nothing to check', {
      code: 'E_NO_THRESHOLD',
      suggestions: ['give at least one, e.g. --max-ready-age 5m --max-dlq 0 --max-dead-locks 0 --require-migrated'],
    })
  }
  for (const key of THRESHOLD_KEYS) {
    const value = thresholds[key]
    if (typeof value === 'number' && (!Number.isFinite(value) || value < 0)) {
      throw new UsageError(`threshold ${key} must be zero or more, got ${value}`, {code: 'E_INVALID_THRESHOLD'})
    }
  }
  const checks: CheckOutcome[] = []
  let inspection: SchemaInspection
  if (thresholds.requireMigrated) {
    inspection = await inspectSchema(db, {requireRowAccess: true})
    const outcome = migratedCheck(inspection)
    checks.push(outcome)
    if (!inspection.graphile.installed) {
      for (const name of requestedNames(thresholds).filter((n) => n !== 'migrated')) {
        checks.push({
          name,
          status: 'skip',
          actual: null,
          limit: limitOf(name, thresholds),
          message: `${name}: not measured (graphile-worker is not installed)`,
        })
      }
      return finish(db, checks, started, new Date())
    }
  } else {
    inspection = await requireMigrated(db)
  }

  let at = new Date()
  if (thresholds.maxReadyAgeMs !== undefined || thresholds.maxReady !== undefined) {
    const totals = await db.one(jobTotals, [])
    if (thresholds.maxReadyAgeMs !== undefined) {
      const age = totals.oldest_ready_age_ms ?? 0
      const ok = age <= thresholds.maxReadyAgeMs
      checks.push({
        name: 'ready-age',
        status: ok ? 'pass' : 'fail',
        actual: Math.round(age),
        limit: thresholds.maxReadyAgeMs,
        message:
          totals.oldest_ready_age_ms === null
            ? `ready-age: no ready jobs (max ${formatDuration(thresholds.maxReadyAgeMs)})`
            : `ready-age: the oldest ready job has waited ${formatDuration(age)} (max ${formatDuration(thresholds.maxReadyAgeMs)})`,
      })
    }
    if (thresholds.maxReady !== undefined)
      checks.push(countCheck('ready', totals.ready, thresholds.maxReady, 'ready jobs'))
  }
  if (thresholds.maxExhausted !== undefined) {
    const {exhausted} = await db.one(exhaustedTotal, [])
    checks.push(countCheck('exhausted', exhausted, thresholds.maxExhausted, 'exhausted jobs not captured into the DLQ'))
  }
  if (thresholds.maxDlq !== undefined) {
    if (!inspection.backfill.dlqExists) {
      checks.push({
        name: 'dlq',
        status: 'fail',
        actual: null,
        limit: thresholds.maxDlq,
        message: `dlq: the table "${db.schema}".backfill_dlq does not exist (run backfill init-dlq)`,
      })
    } else {
      const {entries} = await withGroupCounts(db, (tx, ready) => tx.one(ready ? dlqTotalFromGroups : dlqTotal, []))
      checks.push(countCheck('dlq', entries, thresholds.maxDlq, 'DLQ entries'))
    }
  }
  if (
    thresholds.maxDeadLocks !== undefined ||
    thresholds.maxStaleLocks !== undefined ||
    thresholds.minWorkers !== undefined
  ) {
    const listing = await listLocks(db, {...thresholds, inspection})
    at = listing.now
    const locks = lockSummary(listing, thresholds)
    if (thresholds.maxDeadLocks !== undefined) {
      const dead = locks.dead.jobs + locks.dead.queues
      const owners = listing.owners.filter((o) => o.liveness === 'dead').map((o) => o.owner ?? '(no owner)')
      checks.push({
        ...countCheck('dead-locks', dead, thresholds.maxDeadLocks, 'locks held by dead workers'),
        ...(dead > thresholds.maxDeadLocks
          ? {
              message: `dead-locks: ${dead} locks held by dead workers (max ${thresholds.maxDeadLocks}): ${owners.join(', ')}; run backfill locks clean`,
            }
          : {}),
      })
    }
    if (thresholds.maxStaleLocks !== undefined) {
      const stale = locks.stale.jobs + locks.stale.queues
      const q = formatDuration(thresholds.staleQueueLockTimeoutMs ?? DEFAULT_STALE_QUEUE_LOCK_TIMEOUT_MS)
      const j = formatDuration(thresholds.staleJobLockTimeoutMs ?? DEFAULT_STALE_JOB_LOCK_TIMEOUT_MS)
      checks.push(
        countCheck(
          'stale-locks',
          stale,
          thresholds.maxStaleLocks,
          `stale locks of owners without liveness (queue > ${q}, job > ${j})`,
        ),
      )
    }
    if (thresholds.minWorkers !== undefined) {
      const live = listing.workers.filter((w) => w.state === 'live').length
      const ok = live >= thresholds.minWorkers
      checks.push({
        name: 'workers',
        status: ok ? 'pass' : 'fail',
        actual: live,
        limit: thresholds.minWorkers,
        message: `workers: ${live} live workers with heartbeats (min ${thresholds.minWorkers})`,
      })
    }
  }
  return finish(db, checks, started, at)
}

function finish(db: Database, checks: CheckOutcome[], started: number, at: Date): CheckResult {
  const failed = checks.filter((c) => c.status === 'fail').length
  return {schema: db.schema, ok: failed === 0, failed, checks, at, durationMs: performance.now() - started}
}

function countCheck(name: CheckName, actual: number, max: number, what: string): CheckOutcome {
  return {
    name,
    status: actual <= max ? 'pass' : 'fail',
    actual,
    limit: max,
    message: `${name}: ${actual} ${what} (max ${max})`,
  }
}

function migratedCheck(inspection: SchemaInspection): CheckOutcome {
  const problems: string[] = []
  const g = inspection.graphile
  if (!inspection.schemaExists) problems.push(`schema "${inspection.schema}" does not exist`)
  else if (!g.installed) problems.push('graphile-worker is not installed')
  else {
    if (g.pending.length > 0) problems.push(`pending graphile-worker migrations ${g.pending.join(', ')}`)
    if (g.latestBreaking !== null && g.latestBreaking > g.highestKnown)
      problems.push(
        `breaking migration ${g.latestBreaking} is newer than the bundled graphile-worker (${g.highestKnown})`,
      )
    if (inspection.backfill.missingRequired.length > 0)
      problems.push(`missing backfill objects: ${inspection.backfill.missingRequired.join(', ')}`)
  }
  const ok = problems.length === 0
  return {
    name: 'migrated',
    status: ok ? 'pass' : 'fail',
    actual: g.revision,
    limit: 'migrated',
    message: ok
      ? `migrated: graphile-worker revision ${g.revision}, backfill objects complete`
      : `migrated: ${problems.join('; ')} (run backfill migrate)`,
  }
}

function requestedNames(t: CheckThresholds): CheckName[] {
  const names: CheckName[] = []
  if (t.requireMigrated) names.push('migrated')
  if (t.maxReadyAgeMs !== undefined) names.push('ready-age')
  if (t.maxReady !== undefined) names.push('ready')
  if (t.maxExhausted !== undefined) names.push('exhausted')
  if (t.maxDlq !== undefined) names.push('dlq')
  if (t.maxDeadLocks !== undefined) names.push('dead-locks')
  if (t.maxStaleLocks !== undefined) names.push('stale-locks')
  if (t.minWorkers !== undefined) names.push('workers')
  return names
}

function limitOf(name: CheckName, t: CheckThresholds): number | string {
  const map: Record<CheckName, number | string | undefined> = {
    migrated: 'migrated',
    'ready-age': t.maxReadyAgeMs,
    ready: t.maxReady,
    exhausted: t.maxExhausted,
    dlq: t.maxDlq,
    'dead-locks': t.maxDeadLocks,
    'stale-locks': t.maxStaleLocks,
    workers: t.minWorkers,
  }
  return map[name] ?? ''
}
