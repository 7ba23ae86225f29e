import type {Database} from '../db.js'
import {requireMigrated, type SchemaInspection} from '../schema/inspect.js'
import {jobLocks, presenceSessions, queueLocks, registryRows, rustHeartbeats, serverClock} from '../sql/locks.js'
import {
  judgeOwner,
  ownerFamily,
  type Liveness,
  type LivenessOptions,
  type OwnerFacts,
  type OwnerFamily,
  type OwnerVerdict,
  type RegistryFacts,
  type RustFacts,
} from './owners.js'

/** One job lock or queue lock. */
export interface LockEntry {
  kind: 'job' | 'queue'
  /** Job id (job locks). */
  jobId: string | null
  /** Queue id: the locked queue, or the job's serial queue (null = a parallel job). */
  queueId: number | null
  queueName: string | null
  taskIdentifier: string | null
  owner: string | null
  family: OwnerFamily
  liveness: Liveness
  /** When the lock was taken, exact to the microsecond (ISO 8601, UTC). */
  lockedAt: string
  ageMs: number
  attempts: number | null
  maxAttempts: number | null
  /** Identifies this very lock (kind, id, owner, lockedAt); used to release only what was judged. */
  key: string
}

export interface LockOwner {
  owner: string | null
  family: OwnerFamily
  liveness: Liveness
  reason: string
  evidence: OwnerVerdict['evidence']
  sessions: number
  /** The backfill worker registry row, when the owner is a backfill worker pool. */
  worker: {
    hostname: string
    pid: number
    startedAt: Date
    lastHeartbeatAt: Date
    stoppedAt: Date | null
    version: string | null
  } | null
  rustHeartbeatAt: Date | null
  jobLocks: number
  queueLocks: number
  oldestLockAgeMs: number
  /** The owner holds a job flagged infrastructure_resilient (Rust recovery's longer bound). */
  holdsResilientJob: boolean
}

/** A worker that proved it was alive recently (backfill registry or Rust heartbeats). */
export interface WorkerSeen {
  id: string
  runtime: 'backfill' | 'rust'
  hostname: string | null
  pid: number | null
  version: string | null
  startedAt: Date
  lastHeartbeatAt: Date
  heartbeatAgeMs: number
  stoppedAt: Date | null
  /** live / dead (silent while it should beat, or stopped holding locks) / stopped (clean shutdown). */
  state: 'live' | 'dead' | 'stopped'
  reason: string
  sessions: number
  jobLocks: number
  queueLocks: number
  /** Jobs per fetch of its local queue as of its last heartbeat (adaptive prefetch); null: none or not reported. */
  prefetchSize: number | null
}

export interface LockListing {
  schema: string
  now: Date
  serverStartedAt: Date
  owners: LockOwner[]
  locks: LockEntry[]
  workers: WorkerSeen[]
  /** Which liveness evidence this schema offers. */
  evidence: {registry: boolean; rustHeartbeats: boolean}
}

export interface ListLocksOptions extends LivenessOptions {
  /** Only locks of these owners (ids as in locked_by). */
  owners?: readonly string[]
  /** Also report workers seen within this window (default 1 hour). */
  recentWorkersMs?: number
  /** A fresh inspection of the schema (skips requireMigrated). */
  inspection?: SchemaInspection
}

export const DEFAULT_RECENT_WORKERS_MS = 60 * 60_000

export function lockKey(kind: 'job' | 'queue', id: string | number, owner: string | null, lockedAt: string): string {
  return `${kind}:${id}:${owner ?? ''}:${lockedAt}`
}

/**
 * Every job and queue lock with its owner's runtime family and liveness, and the workers
 * seen recently. Read-only; the schema must be migrated (graphile-worker installed).
 */
export async function listLocks(db: Database, options: ListLocksOptions = {}): Promise<LockListing> {
  const inspection = options.inspection ?? (await requireMigrated(db))
  const registry = inspection.backfill.catalog.relations.has('backfill_workers')
  const rustHeartbeatsTable = inspection.graphile.rustWorkersTable
  // One statement at a time: workers call this every interval on the pool their jobs use.
  const jobs = await db.rows(jobLocks, [])
  const queues = await db.rows(queueLocks, [])
  const sessions = await db.rows(presenceSessions, [])
  const clock = await db.one(serverClock, [])
  const filter = options.owners && options.owners.length > 0 ? new Set(options.owners) : undefined
  const keep = (owner: string | null): boolean => !filter || filter.has(owner ?? '')
  const ownerIds = [
    ...new Set(
      [...jobs.map((j) => j.locked_by), ...queues.map((q) => q.locked_by)].filter((o): o is string => o !== null),
    ),
  ]
  const recentMs = options.recentWorkersMs ?? DEFAULT_RECENT_WORKERS_MS
  const registryList = registry ? await db.rows(registryRows, [ownerIds, recentMs]) : []
  const rustList = rustHeartbeatsTable ? await db.rows(rustHeartbeats, [ownerIds, recentMs]) : []

  // A restart cut every session and paused every heartbeat: count ages from the server's
  // start, so that nobody is declared dead before the workers had one bound to come back.
  const effectiveAge = (ageMs: number): number =>
    options.restartGrace === false ? ageMs : Math.min(ageMs, clock.uptime_ms)
  const sessionsOf = new Map(sessions.map((s) => [s.pool_id, s.sessions]))
  const prefetchOf = new Map(registryList.map((r) => [r.pool_id, r.prefetch_size]))
  const registryOf = new Map(
    registryList.map((r): [string, RegistryFacts] => [
      r.pool_id,
      {
        hostname: r.hostname,
        pid: r.pid,
        startedAt: r.started_at,
        lastHeartbeatAt: r.last_heartbeat_at,
        stoppedAt: r.stopped_at,
        version: r.version,
        heartbeatIntervalMs: r.heartbeat_interval_ms,
        heartbeatAgeMs: r.heartbeat_age_ms,
        effectiveHeartbeatAgeMs: effectiveAge(r.heartbeat_age_ms),
      },
    ]),
  )
  const rustOf = new Map(
    rustList.map((r): [string, RustFacts] => [
      r.worker_id,
      {
        startedAt: r.started_at,
        lastHeartbeatAt: r.last_heartbeat_at,
        heartbeatAgeMs: r.heartbeat_age_ms,
        effectiveHeartbeatAgeMs: effectiveAge(r.heartbeat_age_ms),
      },
    ]),
  )

  const resilientOwners = new Set(jobs.filter((j) => j.resilient).map((j) => j.locked_by ?? ''))
  const factsOf = (owner: string | null): OwnerFacts => ({
    owner,
    sessions: owner === null ? 0 : (sessionsOf.get(owner) ?? 0),
    registry: owner === null ? null : (registryOf.get(owner) ?? null),
    rust: owner === null ? null : (rustOf.get(owner) ?? null),
    holdsResilientJob: resilientOwners.has(owner ?? ''),
  })

  const owners = new Map<string, LockOwner>()
  const ownerEntry = (owner: string | null): LockOwner => {
    const id = owner ?? ''
    let entry = owners.get(id)
    if (!entry) {
      const facts = factsOf(owner)
      const verdict = judgeOwner(facts, options)
      const reg = facts.registry
      entry = {
        owner,
        family: ownerFamily(owner),
        liveness: verdict.liveness,
        reason: verdict.reason,
        evidence: verdict.evidence,
        sessions: facts.sessions,
        worker: reg
          ? {
              hostname: reg.hostname,
              pid: reg.pid,
              startedAt: reg.startedAt,
              lastHeartbeatAt: reg.lastHeartbeatAt,
              stoppedAt: reg.stoppedAt,
              version: reg.version,
            }
          : null,
        rustHeartbeatAt: facts.rust?.lastHeartbeatAt ?? null,
        jobLocks: 0,
        queueLocks: 0,
        oldestLockAgeMs: 0,
        holdsResilientJob: facts.holdsResilientJob,
      }
      owners.set(id, entry)
    }
    return entry
  }

  const locks: LockEntry[] = []
  for (const j of jobs) {
    const owner = ownerEntry(j.locked_by)
    owner.jobLocks += 1
    owner.oldestLockAgeMs = Math.max(owner.oldestLockAgeMs, j.age_ms)
    if (!keep(j.locked_by)) continue
    locks.push({
      kind: 'job',
      jobId: j.job_id,
      queueId: j.queue_id,
      queueName: j.queue_name,
      taskIdentifier: j.task_identifier,
      owner: j.locked_by,
      family: owner.family,
      liveness: owner.liveness,
      lockedAt: j.locked_at,
      ageMs: j.age_ms,
      attempts: j.attempts,
      maxAttempts: j.max_attempts,
      key: lockKey('job', j.job_id, j.locked_by, j.locked_at),
    })
  }
  for (const q of queues) {
    const owner = ownerEntry(q.locked_by)
    owner.queueLocks += 1
    owner.oldestLockAgeMs = Math.max(owner.oldestLockAgeMs, q.age_ms)
    if (!keep(q.locked_by)) continue
    locks.push({
      kind: 'queue',
      jobId: null,
      queueId: q.queue_id,
      queueName: q.queue_name,
      taskIdentifier: null,
      owner: q.locked_by,
      family: owner.family,
      liveness: owner.liveness,
      lockedAt: q.locked_at,
      ageMs: q.age_ms,
      attempts: null,
      maxAttempts: null,
      key: lockKey('queue', q.queue_id, q.locked_by, q.locked_at),
    })
  }

  const workers: WorkerSeen[] = []
  for (const [id, reg] of registryOf) {
    const lockOwner = owners.get(id)
    const facts = factsOf(id)
    const verdict = judgeOwner(facts, options)
    const holds = (lockOwner?.jobLocks ?? 0) + (lockOwner?.queueLocks ?? 0)
    const stopped = reg.stoppedAt !== null && facts.sessions === 0 && holds === 0
    workers.push({
      id,
      runtime: 'backfill',
      hostname: reg.hostname,
      pid: reg.pid,
      version: reg.version,
      startedAt: reg.startedAt,
      lastHeartbeatAt: reg.lastHeartbeatAt,
      heartbeatAgeMs: reg.heartbeatAgeMs,
      stoppedAt: reg.stoppedAt,
      state: stopped ? 'stopped' : verdict.liveness === 'live' ? 'live' : 'dead',
      reason: stopped ? 'stopped cleanly' : verdict.reason,
      sessions: facts.sessions,
      jobLocks: lockOwner?.jobLocks ?? 0,
      queueLocks: lockOwner?.queueLocks ?? 0,
      prefetchSize: stopped ? null : (prefetchOf.get(id) ?? null),
    })
  }
  // A backfill pool mirrors its heartbeat into _private_workers (so a Rust sweeper spares
  // its locks): that row is the same worker as its registry row, not a Rust worker.
  const mirrors = new Set(
    rustList
      .filter((r) => registryOf.has(r.worker_id) || (r.metadata as {runtime?: unknown} | null)?.runtime === 'backfill')
      .map((r) => r.worker_id),
  )
  for (const [id, rust] of rustOf) {
    if (mirrors.has(id)) continue
    const lockOwner = owners.get(id)
    const verdict = judgeOwner(factsOf(id), options)
    workers.push({
      id,
      runtime: 'rust',
      hostname: null,
      pid: null,
      version: null,
      startedAt: rust.startedAt,
      lastHeartbeatAt: rust.lastHeartbeatAt,
      heartbeatAgeMs: rust.heartbeatAgeMs,
      stoppedAt: null,
      state: verdict.liveness === 'live' ? 'live' : 'dead',
      reason: verdict.reason,
      sessions: 0,
      prefetchSize: null,
      jobLocks: lockOwner?.jobLocks ?? 0,
      queueLocks: lockOwner?.queueLocks ?? 0,
    })
  }

  const ownerList = [...owners.values()].filter((o) => keep(o.owner))
  ownerList.sort(
    (a, b) => LIVENESS_ORDER[a.liveness] - LIVENESS_ORDER[b.liveness] || b.oldestLockAgeMs - a.oldestLockAgeMs,
  )
  return {
    schema: db.schema,
    now: clock.now,
    serverStartedAt: clock.started_at,
    owners: ownerList,
    locks,
    workers,
    evidence: {registry, rustHeartbeats: rustHeartbeatsTable},
  }
}

/** Dead first (what needs action), then unknown, then live. */
const LIVENESS_ORDER: Record<Liveness, number> = {dead: 0, unknown: 1, live: 2}
