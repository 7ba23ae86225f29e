/** The message of whatever was thrown (worker events carry text, not Error objects). */
export function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

export const TIMED_OUT = Symbol('timed out')

/**
 * Races a promise against a timer that keeps the event loop alive (an unref'd one would let
 * the process drain and exit with code 13 while graphile hangs), cleared once decided.
 */
export async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      promise,
      new Promise<typeof TIMED_OUT>((resolve) => (timer = setTimeout(() => resolve(TIMED_OUT), ms))),
    ])
  } finally {
    clearTimeout(timer)
  }
}
