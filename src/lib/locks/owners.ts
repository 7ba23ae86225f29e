import {formatDuration} from '../duration.js'

/**
 * Who holds a lock, and whether it is provably alive. graphile-worker writes its pool id
 * (or worker id) into locked_by; the prefix tells the runtime. Liveness needs evidence:
 *
 * - live: a backfill worker's presence session (application_name `backfill-worker:<id>`)
 *   is connected, or its registry heartbeat is fresh; or a Rust worker's heartbeat in
 *   _private_workers is fresh;
 * - dead: the owner left such evidence (a registry row, a Rust heartbeat row) and it has
 *   gone stale: no session and an old heartbeat, or a registry row marked stopped;
 * - unknown: no evidence either way (plain Node graphile-worker pools, Rust workers without
 *   recovery, hand-made locks). Only the lock's age can speak for those.
 */

export type OwnerFamily = 'node' | 'rust' | 'other'
export type Liveness = 'live' | 'dead' | 'unknown'

/** Runtime family from the owner id's prefix (graphile-worker-rs.md §3). */
export function ownerFamily(owner: string | null): OwnerFamily {
  if (owner === null) return 'other'
  // Node ≥ 0.17 run(): pool-<hex>; runOnce(): otpool-<hex>; Node ≤ 0.16: worker-<hex>.
  if (/^(pool|otpool|worker)-/.test(owner)) return 'node'
  if (owner.startsWith('graphile_worker_')) return 'rust'
  return 'other'
}

export interface LivenessOptions {
  /**
   * How old a backfill worker's heartbeat may be before it stops proving life. Default:
   * 3 × the interval the worker recorded (metadata.heartbeatIntervalMs, else 10 s), at
   * least minHeartbeatTimeoutMs.
   */
  heartbeatTimeoutMs?: number
  /** Floor of the default heartbeat bound (default 30 s). */
  minHeartbeatTimeoutMs?: number
  /**
   * Bound for Rust heartbeats (_private_workers). Default 5 min, the Rust recovery's own
   * sweep threshold; tripled for an owner holding an `infrastructure_resilient` job, as there.
   */
  rustHeartbeatTimeoutMs?: number
  /**
   * Count heartbeat ages from the database server's start when that is later (default
   * true): after a restart (every session cut, heartbeats paused) no owner is dead before
   * one bound has passed.
   */
  restartGrace?: boolean
}

export const DEFAULT_HEARTBEAT_INTERVAL_MS = 10_000
export const HEARTBEAT_TIMEOUT_FACTOR = 3
export const MIN_HEARTBEAT_TIMEOUT_MS = 30_000
export const RUST_HEARTBEAT_TIMEOUT_MS = 5 * 60_000
export const RUST_RESILIENT_FACTOR = 3

export interface RegistryFacts {
  hostname: string
  pid: number
  startedAt: Date
  lastHeartbeatAt: Date
  stoppedAt: Date | null
  version: string | null
  heartbeatIntervalMs: number | null
  /** Age of the heartbeat, counted from the server's start when that is later (restartGrace). */
  effectiveHeartbeatAgeMs: number
  heartbeatAgeMs: number
}

export interface RustFacts {
  startedAt: Date
  lastHeartbeatAt: Date
  effectiveHeartbeatAgeMs: number
  heartbeatAgeMs: number
}

export interface OwnerFacts {
  owner: string | null
  /** Presence sessions of this owner connected to the database. */
  sessions: number
  registry: RegistryFacts | null
  rust: RustFacts | null
  /** The owner holds a job flagged infrastructure_resilient (Rust recovery triples its bound). */
  holdsResilientJob: boolean
}

export interface OwnerVerdict {
  liveness: Liveness
  /** One line for people: what the verdict rests on. */
  reason: string
  /** Where the evidence came from. */
  evidence: 'presence-session' | 'backfill-heartbeat' | 'rust-heartbeat' | 'none'
  /** The heartbeat bound applied, when a heartbeat was judged. */
  boundMs: number | null
}

export function heartbeatBound(
  registry: Pick<RegistryFacts, 'heartbeatIntervalMs'>,
  options: LivenessOptions = {},
): number {
  if (options.heartbeatTimeoutMs !== undefined) return options.heartbeatTimeoutMs
  const interval =
    registry.heartbeatIntervalMs !== null && registry.heartbeatIntervalMs > 0
      ? registry.heartbeatIntervalMs
      : DEFAULT_HEARTBEAT_INTERVAL_MS
  return Math.max(options.minHeartbeatTimeoutMs ?? MIN_HEARTBEAT_TIMEOUT_MS, HEARTBEAT_TIMEOUT_FACTOR * interval)
}

export function rustBound(holdsResilientJob: boolean, options: LivenessOptions = {}): number {
  const base = options.rustHeartbeatTimeoutMs ?? RUST_HEARTBEAT_TIMEOUT_MS
  return holdsResilientJob ? base * RUST_RESILIENT_FACTOR : base
}

/** The liveness verdict for one lock owner (pure: the facts come from the database). */
export function judgeOwner(facts: OwnerFacts, options: LivenessOptions = {}): OwnerVerdict {
  const family = ownerFamily(facts.owner)
  if (facts.sessions > 0) {
    return {
      liveness: 'live',
      evidence: 'presence-session',
      boundMs: null,
      reason: `presence session connected${facts.sessions > 1 ? ` (${facts.sessions})` : ''}`,
    }
  }
  if (facts.registry) {
    const r = facts.registry
    const bound = heartbeatBound(r, options)
    const where = `${r.hostname} pid ${r.pid}`
    if (r.stoppedAt !== null) {
      return {
        liveness: 'dead',
        evidence: 'backfill-heartbeat',
        boundMs: bound,
        reason: `backfill worker on ${where} stopped ${formatDuration(r.heartbeatAgeMs)} ago but still holds locks; no presence session`,
      }
    }
    if (r.effectiveHeartbeatAgeMs <= bound) {
      return {
        liveness: 'live',
        evidence: 'backfill-heartbeat',
        boundMs: bound,
        reason: `backfill worker on ${where}: heartbeat ${formatDuration(r.heartbeatAgeMs)} ago (no presence session)`,
      }
    }
    return {
      liveness: 'dead',
      evidence: 'backfill-heartbeat',
      boundMs: bound,
      reason: `backfill worker on ${where}: no presence session, last heartbeat ${formatDuration(r.heartbeatAgeMs)} ago (bound ${formatDuration(bound)})`,
    }
  }
  if (facts.rust) {
    const bound = rustBound(facts.holdsResilientJob, options)
    const age = facts.rust.effectiveHeartbeatAgeMs
    if (age <= bound) {
      return {
        liveness: 'live',
        evidence: 'rust-heartbeat',
        boundMs: bound,
        reason: `Rust worker heartbeat ${formatDuration(facts.rust.heartbeatAgeMs)} ago`,
      }
    }
    return {
      liveness: 'dead',
      evidence: 'rust-heartbeat',
      boundMs: bound,
      reason: `Rust worker heartbeat ${formatDuration(facts.rust.heartbeatAgeMs)} ago (bound ${formatDuration(bound)})`,
    }
  }
  const reason =
    family === 'node'
      ? 'graphile-worker (Node) pool: it publishes no liveness'
      : family === 'rust'
        ? 'Rust worker without heartbeats (recovery off, or run_once)'
        : facts.owner === null
          ? 'lock without an owner id'
          : 'unrecognised owner id'
  return {liveness: 'unknown', evidence: 'none', boundMs: null, reason}
}
