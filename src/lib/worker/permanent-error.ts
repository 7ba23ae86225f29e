/**
 * Thrown by a task to say "do not retry": the job goes to the DLQ at once with its error,
 * without waiting for its remaining attempts. Any error with `permanent: true` counts too,
 * so task files that bundle their own copy of backfill (or none) can use a plain marker.
 */
export class PermanentError extends Error {
  readonly permanent = true

  constructor(message: string, options?: {cause?: unknown}) {
    super(message, options)
    this.name = 'PermanentError'
  }
}

export function isPermanentError(error: unknown): boolean {
  if (error instanceof PermanentError) return true
  if (typeof error !== 'object' || error === null) return false
  const marked = error as {permanent?: unknown; name?: unknown}
  return marked.permanent === true || marked.name === 'PermanentError'
}

/** Prefix of graphile's last_error for such jobs (the crate's PermanentFailurePlugin text). */
export const PERMANENT_FAILURE_PREFIX = 'Permanent failure (non-retryable error): '
