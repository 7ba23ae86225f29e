/**
 * Issue 14: live-queue operations on a jobs table of 1,000,000 jobs (quick mode: 100,000):
 * `jobs list` first page (library and CLI), `jobs show`, and `jobs remove --task X` /
 * `jobs run-now --task X` on 100,000 selected jobs (quick: 10,000) side by side with one
 * hand-written SQL statement doing the same change on identical data.
 *
 * Alone: `npm run bench -- --only jobs` (add `--quick` for the small size).
 */
import {existsSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import pg from 'pg'

import {targetFromUrl} from '../src/lib/connection.js'
import {Database} from '../src/lib/db.js'
import {parseSchemaName, quoteIdent} from '../src/lib/identifiers.js'
import {performJobAction, selectJobs} from '../src/lib/jobs/actions.js'
import {listJobs} from '../src/lib/jobs/list.js'
import {showJob} from '../src/lib/jobs/show.js'
import {migrate} from '../src/lib/schema/migrate.js'
import {timedRun} from './lib/process.js'
import {median} from './lib/stats.js'
import type {BenchContext, BenchSuite, Metric} from './lib/types.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const BIN = path.join(ROOT, 'bin', 'run.js')
const SCHEMA = 'bench_jobs'
const TARGET = 'bench_target'
const LIST_CALLS = 7

const JOB_COLUMNS =
  'id, job_queue_id, task_id, payload, priority, run_at, attempts, max_attempts, last_error, created_at, updated_at, key, locked_at, locked_by, revision, flags'

/**
 * A big queue as an incident leaves it: every tenth job is the task under investigation
 * (scheduled an hour out, so run-now applies to all of them); the rest spread over 19 tasks,
 * 10% in 2,000 serial queues, 5% scheduled, 2% retrying, 0.5% exhausted, 1,000 running with
 * their queues locked. Payloads of ~100 bytes.
 */
async function populate(client: pg.Client, q: string, jobs: number): Promise<void> {
  await client.query(
    `insert into ${q}._private_tasks (identifier) select '${TARGET}' union all select 'task_' || i from generate_series(1, 19) i`,
  )
  await client.query(
    `insert into ${q}._private_job_queues (queue_name) select 'user:' || i from generate_series(1, 2000) i`,
  )
  await client.query(
    `insert into ${q}._private_jobs (task_id, job_queue_id, payload, priority, run_at, attempts, max_attempts, last_error, created_at)
     select case when i % 10 = 0 then 1 else (i % 19) + 2 end,
            case when i % 10 = 5 then (i / 10) % 2000 + 1 end,
            json_build_object('id', i, 'user', 'user-' || (i % 1000), 'body', repeat('x', 60)),
            (i % 3) * 5 - 5,
            case when i % 10 = 0 or i % 20 = 1 then now() + interval '1 hour' when i % 50 = 7 then now() + interval '5 minutes'
                 else now() - (i % 3600) * interval '1 second' end,
            case when i % 200 = 3 then 8 when i % 50 = 7 then 2 else 0 end,
            8,
            case when i % 200 = 3 or i % 50 = 7 then 'upstream timeout after 30s' end,
            now() - ($1::int - i) * interval '10 milliseconds'
     from generate_series(1, $1::int) i`,
    [jobs],
  )
  await client.query(
    `with picked as (select id, row_number() over (order by id desc) as n from ${q}._private_jobs
                     where attempts < max_attempts and task_id <> 1 order by id desc limit 1000)
     update ${q}._private_jobs j set locked_by = 'pool-' || lpad(to_hex(p.n % 8), 18, '0'), locked_at = now(), attempts = j.attempts + 1
     from picked p where j.id = p.id`,
  )
  await client.query(`update ${q}._private_job_queues qq set locked_by = j.locked_by, locked_at = j.locked_at
    from (select distinct on (job_queue_id) job_queue_id, locked_by, locked_at from ${q}._private_jobs
          where locked_at is not null and job_queue_id is not null order by job_queue_id, id) j
    where qq.id = j.job_queue_id`)
  await client.query(
    `create table ${q}.bench_target_template as select ${JOB_COLUMNS} from ${q}._private_jobs where task_id = 1`,
  )
  await client.query(`vacuum analyze ${q}._private_jobs`)
  await client.query(`analyze ${q}._private_job_queues`)
}

/** Puts the target task's jobs back exactly as populated (same ids, versions, run_at). */
async function restoreTarget(client: pg.Client, q: string): Promise<void> {
  await client.query(`delete from ${q}._private_jobs where task_id = 1`)
  await client.query(
    `insert into ${q}._private_jobs (${JOB_COLUMNS}) overriding system value select ${JOB_COLUMNS} from ${q}.bench_target_template`,
  )
  await client.query(`delete from ${q}.backfill_dlq_audit`)
  await client.query(`vacuum analyze ${q}._private_jobs`)
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const started = performance.now()
  await fn()
  return performance.now() - started
}

/** Median of several calls after a warm-up (plans and buffers). */
async function timeCalls(fn: () => Promise<unknown>, calls = LIST_CALLS): Promise<number> {
  await fn()
  const times: number[] = []
  for (let i = 0; i < calls; i++) times.push(await timed(fn))
  return median(times)
}

export const suite: BenchSuite = {
  name: 'jobs',
  issue: 14,
  description:
    'Live queue of 1,000,000 jobs (quick: 100,000): jobs list first page (library and CLI), jobs show, and jobs remove --task / run-now --task on 100,000 selected jobs (quick: 10,000) vs one hand-written SQL statement doing the same on identical data.',
  async run(ctx: BenchContext): Promise<Metric[]> {
    if (!existsSync(path.join(ROOT, 'dist', 'commands')))
      throw new Error('build first: npm run build (the benchmark runs the CLI binary)')
    const size = ctx.quick ? 100_000 : 1_000_000
    const label = size >= 1_000_000 ? `${size / 1_000_000}M` : `${size / 1000}k`
    const selected = size / 10
    const q = quoteIdent(SCHEMA)
    const db = Database.connect({
      target: targetFromUrl(ctx.url, 'flag-or-env'),
      schema: parseSchemaName(SCHEMA),
      max: 4,
    })
    const raw = new pg.Client({connectionString: ctx.url})
    await raw.connect()
    const env = {...process.env, DATABASE_URL: ctx.url, GRAPHILE_WORKER_SCHEMA: SCHEMA, NO_COLOR: '1'}
    const cli = async (args: string[]) => {
      const run = await timedRun(process.execPath, [BIN, ...args], {env})
      if (run.code !== 0) throw new Error(`backfill ${args.join(' ')} exited ${run.code}: ${run.stderr.slice(0, 500)}`)
      return run
    }
    const s = {
      listLib: [] as number[],
      listCli: [] as number[],
      listTask: [] as number[],
      listState: [] as number[],
      listNext: [] as number[],
      listQueue: [] as number[],
      show: [] as number[],
      showQueued: [] as number[],
      removeLib: [] as number[],
      removeCli: [] as number[],
      removeRef: [] as number[],
      runNowLib: [] as number[],
      runNowRef: [] as number[],
    }
    let listRss = 0
    try {
      await migrate(db)
      ctx.log(`populating ${size.toLocaleString('en-US')} jobs`)
      const t0 = performance.now()
      await populate(raw, q, size)
      ctx.log(`populated in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
      const [someJob] = (
        await raw.query<{id: string}>(
          `select id::text from ${q}._private_jobs where job_queue_id is null and locked_at is null order by id desc limit 1`,
        )
      ).rows
      const [queuedJob] = (
        await raw.query<{id: string}>(
          `select id::text from ${q}._private_jobs where job_queue_id is not null and locked_at is null order by id desc limit 1`,
        )
      ).rows
      const [{queue}] = (
        await raw.query<{queue: string}>(
          `select q.queue_name as queue from ${q}._private_job_queues q join ${q}._private_jobs j on j.job_queue_id = q.id where j.id = $1`,
          [queuedJob!.id],
        )
      ).rows as [{queue: string}]

      for (let round = 0; round < ctx.rounds; round++) {
        s.listLib.push(await timeCalls(() => listJobs(db, {selector: {limit: 50}})))
        s.listTask.push(await timeCalls(() => listJobs(db, {selector: {tasks: ['task_7'], limit: 50}})))
        s.listState.push(await timeCalls(() => listJobs(db, {selector: {states: ['retrying'], limit: 50}})))
        s.listNext.push(await timeCalls(() => listJobs(db, {sort: 'next', selector: {limit: 50}})))
        s.listQueue.push(await timeCalls(() => listJobs(db, {selector: {queues: [queue], limit: 50}}), 3))
        s.show.push(await timeCalls(() => showJob(db, {id: someJob!.id})))
        s.showQueued.push(await timeCalls(() => showJob(db, {id: queuedJob!.id}), 3))
        const list = await cli(['jobs', 'list', '--limit', '50', '--json'])
        s.listCli.push(list.ms)
        listRss = Math.max(listRss, list.peakRssMb ?? 0)
        ctx.log(
          `round ${round + 1}: list ${s.listLib.at(-1)?.toFixed(1)} ms (task ${s.listTask.at(-1)?.toFixed(1)}, state ${s.listState.at(-1)?.toFixed(1)}, next ${s.listNext.at(-1)?.toFixed(1)}, queue ${s.listQueue.at(-1)?.toFixed(1)}), show ${s.show.at(-1)?.toFixed(1)} / ${s.showQueued.at(-1)?.toFixed(1)} ms, CLI ${list.ms.toFixed(0)} ms`,
        )
      }

      const [{task_id}] = (await raw.query<{task_id: number}>(`select 1 as task_id`)).rows as [{task_id: number}]
      for (let round = 0; round < ctx.rounds; round++) {
        // remove --task: library (select + act), CLI, and the single statement, each on the same data.
        s.removeLib.push(
          await timed(async () => {
            const selection = await selectJobs(db, {action: 'remove', selector: {tasks: [TARGET]}})
            const result = await performJobAction(db, {selection})
            if (result.done !== selected) throw new Error(`jobs remove changed ${result.done} of ${selected}`)
          }),
        )
        await restoreTarget(raw, q)
        const removed = await cli(['jobs', 'remove', '--task', TARGET, '--yes', '--json'])
        const removedDone = (JSON.parse(removed.stdout) as {done: number}).done
        if (removedDone !== selected) throw new Error(`jobs remove (CLI) changed ${removedDone} of ${selected}`)
        s.removeCli.push(removed.ms)
        await restoreTarget(raw, q)
        s.removeRef.push(
          await timed(() =>
            raw.query(`delete from ${q}._private_jobs where task_id = $1 and locked_at is null`, [task_id]),
          ),
        )
        await restoreTarget(raw, q)

        s.runNowLib.push(
          await timed(async () => {
            const selection = await selectJobs(db, {action: 'run_now', selector: {tasks: [TARGET]}})
            const result = await performJobAction(db, {selection})
            if (result.done !== selected) throw new Error(`jobs run-now changed ${result.done} of ${selected}`)
          }),
        )
        await restoreTarget(raw, q)
        s.runNowRef.push(
          await timed(() =>
            raw.query(
              `update ${q}._private_jobs set run_at = now(), updated_at = now()
               where task_id = $1 and locked_at is null and run_at > now() and attempts < max_attempts`,
              [task_id],
            ),
          ),
        )
        await restoreTarget(raw, q)
        ctx.log(
          `round ${round + 1}: remove ${s.removeLib.at(-1)?.toFixed(0)} ms (CLI ${s.removeCli.at(-1)?.toFixed(0)}) vs ${s.removeRef.at(-1)?.toFixed(0)} ms; run-now ${s.runNowLib.at(-1)?.toFixed(0)} vs ${s.runNowRef.at(-1)?.toFixed(0)} ms`,
        )
      }
    } finally {
      await raw.query(`drop schema if exists ${q} cascade`).catch(() => undefined)
      await raw.end()
      await db.end()
    }
    const sel = `${(selected / 1000).toLocaleString('en-US')}k`
    return [
      {
        name: `jobs list first page, ${label} jobs (in library)`,
        unit: 'ms',
        higherIsBetter: false,
        target: size >= 1_000_000 ? {kind: 'max', value: 100} : undefined,
        sample: {ours: s.listLib},
        notes: [
          'newest first, 50 rows, schema check and owner liveness included',
          `--task (5% of jobs) ${median(s.listTask).toFixed(1)} ms`,
          `--state retrying ${median(s.listState).toFixed(1)} ms`,
          `--sort next ${median(s.listNext).toFixed(1)} ms`,
          `--queue (one of 2,000 serial queues: a full scan) ${median(s.listQueue).toFixed(0)} ms`,
        ],
      },
      {
        name: `jobs list first page, ${label} jobs (CLI)`,
        unit: 'ms',
        higherIsBetter: false,
        sample: {ours: s.listCli},
        notes: ['includes process start-up', `peak RSS ${listRss.toFixed(0)} MB`],
      },
      {
        name: `jobs show, ${label} jobs (in library)`,
        unit: 'ms',
        higherIsBetter: false,
        sample: {ours: s.show},
        notes: [`a job of a serial queue (its position counted): ${median(s.showQueued).toFixed(0)} ms`],
      },
      {
        name: `jobs remove --task, ${sel} of ${label} jobs (in library)`,
        unit: 'ms',
        higherIsBetter: false,
        referenceName: 'one statement: delete … where task_id = X and locked_at is null',
        target: {kind: 'ratio-max', value: 2},
        sample: {ours: s.removeLib, reference: s.removeRef},
        notes: ['selection read + batches of 2,000 through complete_jobs(), audit row each'],
      },
      {
        name: `jobs remove --task, ${sel} of ${label} jobs (CLI)`,
        unit: 'ms',
        higherIsBetter: false,
        referenceName: 'one statement: delete … where task_id = X and locked_at is null',
        sample: {ours: s.removeCli, reference: s.removeRef},
        notes: ['includes process start-up and the schema check'],
      },
      {
        name: `jobs run-now --task, ${sel} of ${label} jobs (in library)`,
        unit: 'ms',
        higherIsBetter: false,
        referenceName: 'one statement: update … set run_at = now() where task_id = X and not yet due',
        target: {kind: 'ratio-max', value: 2},
        sample: {ours: s.runNowLib, reference: s.runNowRef},
        notes: ['selection read + batches of 2,000 through reschedule_jobs(), audit row each'],
      },
    ]
  },
}
