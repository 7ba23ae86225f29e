import {setTimeout as delay} from 'node:timers/promises'

/** Waits ms milliseconds; an abort signal ends the wait early (it resolves, never rejects). */
export async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (!signal) return delay(ms)
  if (signal.aborted) return
  try {
    await delay(ms, undefined, {signal})
  } catch (error) {
    if (!signal.aborted) throw error
  }
}
