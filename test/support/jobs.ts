import type {TestSchema} from './db.js'
import {lockedJob, poolId, registerWorker} from './locks.js'

export interface CraftedJobs {
  ready: string
  scheduled: string
  retrying: string
  exhausted: string
  /** Running, held by a backfill worker that died (stale heartbeat, no presence session). */
  running: string
  /** The serial queue's running job (live owner unknown: a plain Node pool). */
  queueHead: string
  /** Due, but behind queueHead in the locked serial queue. */
  blocked: string
  deadOwner: string
}

/** One plain-SQL add_job, the id back. */
export async function addJob(
  t: TestSchema,
  task: string,
  options: {
    payload?: unknown
    queue?: string
    runAt?: string
    maxAttempts?: number
    key?: string
    priority?: number
    flags?: string[]
  } = {},
): Promise<string> {
  const [row] = await t.query<{id: string}>(
    `select id::text from ${t.quoted}.add_job($1, $2::json, queue_name => $3, run_at => now() + coalesce($4::interval, '0'),
       max_attempts => $5, job_key => $6, priority => $7, flags => $8)`,
    [
      task,
      JSON.stringify(options.payload ?? {}),
      options.queue ?? null,
      options.runAt ?? null,
      options.maxAttempts ?? 8,
      options.key ?? null,
      options.priority ?? 0,
      options.flags ?? null,
    ],
  )
  return (row as {id: string}).id
}

/** Sets columns as graphile would leave them (a failed attempt, a permanent failure). */
export async function setJob(t: TestSchema, id: string, set: string, params: unknown[] = []): Promise<void> {
  await t.query(`update ${t.quoted}._private_jobs set ${set} where id = $1`, [id, ...params])
}

/**
 * One job in each state, built the way graphile-worker leaves them: add_job, a failed
 * attempt (attempts + 1, run_at pushed back, last_error), a permanent failure, a fetch
 * (locked_by/locked_at, attempts + 1) by a worker that then died, and a serial queue whose
 * head is running so the next job in it is blocked.
 */
export async function craftStates(t: TestSchema): Promise<CraftedJobs> {
  const ready = await addJob(t, 'send_email', {payload: {to: 'a@example.com'}, key: 'mail:1'})
  const scheduled = await addJob(t, 'send_email', {runAt: '1 hour', priority: 5})
  const retrying = await addJob(t, 'resize_image', {payload: {n: 2}})
  await setJob(t, retrying, `attempts = 2, run_at = now() + interval '10 minutes', last_error = 'timeout after 30s'`)
  const exhausted = await addJob(t, 'resize_image', {maxAttempts: 3})
  await setJob(t, exhausted, `attempts = 3, last_error = 'image 7 not found'`)
  const deadOwner = poolId()
  await registerWorker(t, deadOwner, {heartbeatAgo: '10 minutes', hostname: 'worker-7'})
  const running = await lockedJob(t, {task: 'send_email', owner: deadOwner, lockedAgo: '5 minutes'})
  const queueHead = await lockedJob(t, {
    task: 'sync_account',
    queue: 'account:42',
    owner: poolId(),
    lockedAgo: '1 minute',
  })
  const blocked = await addJob(t, 'sync_account', {queue: 'account:42', payload: {account: 42}})
  return {ready, scheduled, retrying, exhausted, running, queueHead, blocked, deadOwner}
}

export async function jobExists(t: TestSchema, id: string): Promise<boolean> {
  return (await t.query(`select 1 from ${t.quoted}._private_jobs where id = $1`, [id])).length === 1
}

export async function dlqJobIds(t: TestSchema): Promise<string[]> {
  return (
    await t.query<{id: string}>(
      `select original_job_id::text as id from ${t.quoted}.backfill_dlq order by original_job_id`,
    )
  ).map((r) => r.id)
}
