import type {TestSchema} from './db.js'

/** One DLQ row as the Rust crate (or our capture) writes it; unset fields get the crate's typical values. */
export interface DlqRowSpec {
  task?: string
  payload?: unknown
  /** '' = parallel (crate ≥ 1.1.1), 'default' = the crate's legacy parallel, else a serial queue. */
  queue?: string
  priority?: number
  jobKey?: string | null
  maxAttempts?: number | null
  failureReason?: string
  /** A string is stored as a JSON string (the scanner's shape); anything else as that JSON (add_to_dlq's). */
  lastError?: unknown
  failedAt?: Date | string
  originalJobId?: number | null
  requeuedCount?: number
  notes?: string | null
}

/** Inserts rows in order; returns their ids. */
export async function insertDlq(t: TestSchema, rows: DlqRowSpec[]): Promise<string[]> {
  const ids: string[] = []
  for (const [i, row] of rows.entries()) {
    const [inserted] = await t.query<{id: string}>(
      `insert into ${t.quoted}.backfill_dlq (original_job_id, task_identifier, payload, queue_name, priority, job_key, max_attempts,
         failure_reason, failure_count, last_error, original_created_at, original_run_at, failed_at, requeued_count, notes)
       values ($1, $2, $3::jsonb, $4, $5, $6, $7, $8, 1, $9::jsonb, now() - interval '1 day', now() - interval '1 hour', coalesce($10::timestamptz, now()), $11, $12)
       returning id`,
      [
        row.originalJobId === undefined ? 1000 + i : row.originalJobId,
        row.task ?? 'send_email',
        JSON.stringify(row.payload ?? {n: i}),
        row.queue ?? '',
        row.priority ?? 0,
        row.jobKey ?? null,
        row.maxAttempts === undefined ? 8 : row.maxAttempts,
        row.failureReason ?? `Job exceeded maximum retry attempts (8/8)`,
        row.lastError === undefined ? JSON.stringify(`boom ${i}`) : JSON.stringify(row.lastError),
        row.failedAt ?? null,
        row.requeuedCount ?? 0,
        row.notes ?? null,
      ],
    )
    ids.push(inserted!.id)
  }
  return ids
}

/**
 * n scanner-shaped rows in one statement: payload {"i": i} (1-based), task task_(i % tasks),
 * error "SMTP 421 try later for user <i>", failed_at spread one second apart (newest = i = 1).
 */
export async function fillDlq(
  t: TestSchema,
  n: number,
  options: {tasks?: number; keyed?: boolean} = {},
): Promise<void> {
  await t.query(
    `insert into ${t.quoted}.backfill_dlq (original_job_id, task_identifier, payload, queue_name, priority, job_key, max_attempts, failure_reason, last_error, failed_at)
     select i, 'task_' || (i % $2), jsonb_build_object('i', i), '', 0, case when $3 then 'key-' || i end, 8,
            'Job exceeded maximum retry attempts (8/8)', to_jsonb('SMTP 421 try later for user ' || i), now() - make_interval(secs => i)
     from generate_series(1, $1::int) i`,
    [n, options.tasks ?? 3, options.keyed ?? false],
  )
}

/** Every payload "i" in the DLQ and in the jobs table (to check that nothing is lost or doubled). */
export async function whereIsEverything(t: TestSchema): Promise<{dlq: number[]; jobs: number[]}> {
  const dlq = await t.query<{i: number}>(`select (payload ->> 'i')::int as i from ${t.quoted}.backfill_dlq order by 1`)
  const jobs = await t.query<{i: number}>(
    `select (payload::jsonb ->> 'i')::int as i from ${t.quoted}._private_jobs order by 1`,
  )
  return {dlq: dlq.map((r) => r.i), jobs: jobs.map((r) => r.i)}
}
