/** One probe's verdict: ok, and why (shown in the response body). */
export interface ProbeResult {
  ok: boolean
  reason: string
}

export interface HealthProbes {
  /** Liveness (/healthz): restart the process when this fails. */
  live(): ProbeResult
  /** Readiness (/readyz): the process does its job now (no traffic is routed to workers, but rollouts and KEDA wait for it). */
  ready(): ProbeResult
}

/** What the worker reports about itself for the probes (WorkerRunner.healthState()). */
export interface WorkerHealthState {
  phase: 'starting' | 'running' | 'stopping' | 'stopped'
  /** How long the registry has not accepted a heartbeat from the quietest pool (null before the pools start). */
  heartbeatSilentMs: number | null
  /** Every pool's presence session is connected. */
  connected: boolean
  /** Past this silence the worker fences itself (stops) and others may take its jobs over. */
  fenceAfterMs: number
}

/**
 * Notices a blocked event loop: a timer that should tick every tickMs records when it last
 * ran. A probe answered while the last tick is older than maxLagMs means the loop was stuck
 * (a CPU-bound task, a synchronous call) for that long just before.
 */
export class EventLoopWatch {
  private lastTick = Date.now()
  private readonly timer: NodeJS.Timeout

  constructor(private readonly tickMs = 500) {
    this.timer = setInterval(() => (this.lastTick = Date.now()), tickMs)
    this.timer.unref()
  }

  lagMs(now = Date.now()): number {
    return Math.max(0, now - this.lastTick - this.tickMs)
  }

  stop(): void {
    clearInterval(this.timer)
  }
}

export const DEFAULT_MAX_EVENT_LOOP_LAG_MS = 5000

/**
 * Kubernetes probes for `backfill worker`:
 * - live: the event loop turns (no stall above maxLagMs) and, once the pools run, a heartbeat
 *   was recorded within the fencing bound (past it the worker stops itself anyway). Starting
 *   (migrations, the startup capture) and draining count as alive.
 * - ready: the pools run, their presence sessions are connected and heartbeats are recorded,
 *   and the worker is not shutting down.
 */
export function workerProbes(
  state: () => WorkerHealthState,
  loop: EventLoopWatch,
  maxLagMs = DEFAULT_MAX_EVENT_LOOP_LAG_MS,
): HealthProbes {
  const heartbeat = (s: WorkerHealthState): ProbeResult | undefined =>
    s.heartbeatSilentMs !== null && s.heartbeatSilentMs > s.fenceAfterMs
      ? {ok: false, reason: `no heartbeat recorded for ${Math.round(s.heartbeatSilentMs / 1000)} s`}
      : undefined
  return {
    live() {
      const lag = loop.lagMs()
      if (lag > maxLagMs) return {ok: false, reason: `event loop stalled for ${Math.round(lag)} ms`}
      const s = state()
      if (s.phase === 'stopped') return {ok: false, reason: 'worker stopped'}
      return heartbeat(s) ?? {ok: true, reason: s.phase}
    },
    ready() {
      const s = state()
      if (s.phase !== 'running') return {ok: false, reason: s.phase}
      if (!s.connected) return {ok: false, reason: 'presence session not connected'}
      return heartbeat(s) ?? {ok: true, reason: 'running'}
    },
  }
}
