import {randomBytes} from 'node:crypto'

import pg from 'pg'

import type {TestSchema} from './db.js'

/**
 * Lock owners as the worker contract makes them (until tests can start `backfill worker`):
 * a live backfill worker = a registry row plus a session named backfill-worker:<pool id>;
 * a dead one = a registry row with an old heartbeat and no session.
 */

export function poolId(prefix = 'pool'): string {
  return `${prefix}-${randomBytes(9).toString('hex')}`
}

/** A presence session for the pool id (end it to "kill" the worker). */
export async function presenceSession(url: string, pool: string): Promise<pg.Client> {
  const client = new pg.Client({connectionString: url, application_name: `backfill-worker:${pool}`})
  await client.connect()
  return client
}

export interface RegisterOptions {
  /** SQL interval since the last heartbeat, e.g. '5 minutes' (default: now). */
  heartbeatAgo?: string
  heartbeatIntervalMs?: number
  stopped?: boolean
  hostname?: string
}

export async function registerWorker(t: TestSchema, pool: string, options: RegisterOptions = {}): Promise<void> {
  await t.query(
    `insert into ${t.quoted}.backfill_workers (pool_id, hostname, pid, started_at, last_heartbeat_at, stopped_at, version, metadata)
     values ($1, $2, 4242, now() - interval '1 day', now() - $3::interval, case when $4 then now() - $3::interval end, 'test', $5::jsonb)`,
    [
      pool,
      options.hostname ?? 'host-a',
      options.heartbeatAgo ?? '0 seconds',
      options.stopped ?? false,
      JSON.stringify({heartbeatIntervalMs: options.heartbeatIntervalMs ?? 10_000}),
    ],
  )
}

export interface LockedJobOptions {
  task?: string
  queue?: string
  owner: string | null
  /** SQL interval, e.g. '10 minutes'. */
  lockedAgo: string
  /** Also lock the job's queue (as graphile's fetch does), default true for queued jobs. */
  lockQueue?: boolean
  maxAttempts?: number
  attempts?: number
  flags?: string[]
}

/** A job as a worker fetched it: attempts + 1, locked_by/locked_at set (and its queue locked). */
export async function lockedJob(t: TestSchema, options: LockedJobOptions): Promise<string> {
  const [job] = await t.query<{id: string}>(
    `select id::text from ${t.quoted}.add_job($1, '{}'::json, queue_name => $2, max_attempts => $3, flags => $4)`,
    [options.task ?? 'task_a', options.queue ?? null, options.maxAttempts ?? 8, options.flags ?? null],
  )
  const id = (job as {id: string}).id
  await t.query(
    `update ${t.quoted}._private_jobs set attempts = coalesce($4::int, attempts + 1), locked_by = $2, locked_at = now() - $3::interval where id = $1`,
    [id, options.owner, options.lockedAgo, options.attempts ?? null],
  )
  if (options.queue && options.lockQueue !== false)
    await lockedQueue(t, options.queue, options.owner, options.lockedAgo)
  return id
}

/** A queue lock (its queue row is created when missing). */
export async function lockedQueue(
  t: TestSchema,
  queue: string,
  owner: string | null,
  lockedAgo: string,
): Promise<void> {
  await t.query(
    `insert into ${t.quoted}._private_job_queues (queue_name) values ($1) on conflict (queue_name) do nothing`,
    [queue],
  )
  await t.query(
    `update ${t.quoted}._private_job_queues set locked_by = $2, locked_at = now() - $3::interval where queue_name = $1`,
    [queue, owner, lockedAgo],
  )
}

export interface JobRow {
  id: string
  locked_by: string | null
  locked_at: Date | null
  attempts: number
  max_attempts: number
  run_at: Date
  last_error: string | null
}

export async function jobRow(t: TestSchema, id: string): Promise<JobRow | undefined> {
  const [row] = await t.query<JobRow>(
    `select id::text, locked_by, locked_at, attempts, max_attempts, run_at, last_error from ${t.quoted}._private_jobs where id = $1`,
    [id],
  )
  return row
}

export async function queueLock(
  t: TestSchema,
  queue: string,
): Promise<{locked_by: string | null; locked_at: Date | null} | undefined> {
  const [row] = await t.query<{locked_by: string | null; locked_at: Date | null}>(
    `select locked_by, locked_at from ${t.quoted}._private_job_queues where queue_name = $1`,
    [queue],
  )
  return row
}
