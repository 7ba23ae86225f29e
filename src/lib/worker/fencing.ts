import type {WorkerPresence} from './presence.js'

/** Half the default liveness bound others apply (max(30 s, 3 × interval); see locks/owners.ts). */
export function fenceAfter(heartbeatIntervalMs: number): number {
  return Math.max(15_000, 1.5 * heartbeatIntervalMs)
}

/**
 * Self-fencing: others judge this worker dead once its heartbeat is older than the bound and
 * release its locks. Calls onSilent once the registry has not heard from any of the pools for
 * fenceAfterMs (a network partition, a hung connection), so the worker stops its jobs first.
 * Returns the stop function.
 */
export function watchHeartbeats(
  presences: () => readonly WorkerPresence[],
  options: {fenceAfterMs: number; heartbeatIntervalMs: number; onSilent: (silentMs: number) => void},
): () => void {
  const timer = setInterval(
    () => {
      const silent = Math.max(0, ...presences().map((p) => p.silentForMs()))
      if (silent > options.fenceAfterMs) options.onSilent(silent)
    },
    Math.min(1000, options.heartbeatIntervalMs),
  )
  timer.unref()
  return () => clearInterval(timer)
}
