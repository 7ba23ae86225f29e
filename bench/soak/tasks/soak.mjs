// Chaos-soak task: records every run in $LEDGER_TABLE (logical job number, job id, attempt,
// pid), works for a few ms, then behaves as payload.mode says:
//   ok        succeeds
//   flaky     fails until its last attempt, then succeeds
//   permanent throws a permanent error (straight to the DLQ)
const LEDGER = process.env.LEDGER_TABLE

export default async function soak(payload, helpers) {
  const {job} = helpers
  await helpers.query(`insert into ${LEDGER} (i, job_id, attempt, pid) values ($1, $2, $3, $4)`, [
    payload.i,
    job.id,
    job.attempts,
    process.pid,
  ])
  const ms = Math.floor(Math.random() * (payload.ms ?? 5))
  if (ms > 0) await new Promise((resolve) => setTimeout(resolve, ms))
  if (payload.mode === 'permanent') {
    const error = new Error(`permanent failure of #${payload.i}`)
    error.permanent = true
    throw error
  }
  if (payload.mode === 'flaky' && job.attempts < job.max_attempts)
    throw new Error(`flaky #${payload.i} attempt ${job.attempts}`)
  await helpers.query(
    `update ${LEDGER} set done_at = clock_timestamp() where job_id = $1 and attempt = $2 and pid = $3`,
    [job.id, job.attempts, process.pid],
  )
}
