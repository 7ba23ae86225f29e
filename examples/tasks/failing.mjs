// Always fails, like a task whose dependency is down: after max_attempts the job lands in
// the DLQ, where `backfill dlq stats` groups it with its siblings by error fingerprint.
export default async function failing(payload) {
  throw new Error(
    `failing: payment provider returned 503 for order ${payload?.order ?? 'unknown'} at ${new Date().toISOString()}`,
  )
}
