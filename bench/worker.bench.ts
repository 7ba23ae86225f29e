/**
 * Worker throughput and latency, ours (WorkerRunner, the code `backfill worker` runs) vs a raw
 * graphile-worker run() on the same database, same process, same pg pool size.
 */
import {run, Logger, type Runner, type TaskList} from 'graphile-worker'
import type pg from 'pg'

import {targetFromUrl} from '../src/lib/connection.js'
import {Database} from '../src/lib/db.js'
import {captureExhausted} from '../src/lib/dlq/capture.js'
import {parseSchemaName, quoteIdent} from '../src/lib/identifiers.js'
import {migrate} from '../src/lib/schema/migrate.js'
import {defaultLocalQueueSize, WORKER_DEFAULTS} from '../src/lib/worker/config.js'
import {requiredPoolSize, WorkerRunner} from '../src/lib/worker/runner.js'
import {percentile} from './lib/stats.js'
import type {BenchContext, BenchSuite, Metric} from './lib/types.js'

const silent = new Logger(() => () => undefined)
const CONCURRENCY = WORKER_DEFAULTS.concurrency

interface Harness {
  db: Database
  pool: pg.Pool
  schema: string
  quoted: string
  done: () => number
  tasks: TaskList
  /** Handler start times of the latency task, by sample number. */
  starts: Map<number, bigint>
}

async function harness(ctx: BenchContext, name: string): Promise<Harness> {
  const schema = parseSchemaName(`${name}_${Math.random().toString(36).slice(2, 8)}`)
  const db = Database.connect({
    target: targetFromUrl(ctx.url, 'flag-or-env'),
    schema,
    max: requiredPoolSize({concurrency: CONCURRENCY}),
  })
  await migrate(db)
  let completed = 0
  const starts = new Map<number, bigint>()
  const tasks: TaskList = {
    noop: async () => {
      completed += 1
    },
    latency: async (payload) => {
      starts.set((payload as {n: number}).n, process.hrtime.bigint())
    },
  }
  return {db, pool: db.pool, schema, quoted: quoteIdent(schema), done: () => completed, tasks, starts}
}

async function insertNoops(h: Harness, count: number): Promise<void> {
  for (let offset = 0; offset < count; offset += 50_000) {
    const n = Math.min(50_000, count - offset)
    await h.pool.query(
      `select 1 from ${h.quoted}.add_jobs(array(select row('noop', '{}'::json, null, null, 8, null, 0, null)::${h.quoted}.job_spec from generate_series(1, $1::int)))`,
      [n],
    )
  }
  await h.pool.query(`vacuum analyze ${h.quoted}._private_jobs`)
}

/** Time from starting the worker until every job is done and its completion written. */
async function drain(h: Harness, count: number, startWorker: () => Promise<() => Promise<void>>): Promise<number> {
  const started = performance.now()
  const stop = await startWorker()
  while (h.done() < count) await sleep(5)
  for (;;) {
    const {rows} = await h.pool.query<{n: number}>(`select count(*)::int as n from ${h.quoted}._private_jobs`)
    if (rows[0]?.n === 0) break
    await sleep(10)
  }
  const ms = performance.now() - started
  await stop()
  return (count / ms) * 1000
}

function graphileRunner(
  h: Harness,
  preset: {localQueue?: {size: number}; completeJobBatchDelay?: number; failJobBatchDelay?: number},
): () => Promise<() => Promise<void>> {
  return async () => {
    const runner: Runner = await run({
      pgPool: h.pool,
      schema: h.schema,
      concurrency: CONCURRENCY,
      pollInterval: WORKER_DEFAULTS.pollIntervalMs,
      noHandleSignals: true,
      logger: silent,
      taskList: h.tasks,
      parsedCronItems: [],
      preset: {worker: preset},
    })
    return async () => runner.stop()
  }
}

function ourRunner(h: Harness): () => Promise<() => Promise<void>> {
  return async () => {
    const runner = new WorkerRunner({db: h.db, tasks: h.tasks, config: {concurrency: CONCURRENCY}})
    const handle = await runner.start()
    return async () => void (await handle.stop())
  }
}

/** Idle pickup latency: enqueue with add_job, measure until the handler starts (sequential samples). */
async function latency(
  h: Harness,
  samples: number,
  startWorker: () => Promise<() => Promise<void>>,
): Promise<number[]> {
  const stop = await startWorker()
  await sleep(500)
  const values: number[] = []
  for (let n = 0; n < samples + 10; n++) {
    const before = process.hrtime.bigint()
    await h.pool.query(`select ${h.quoted}.add_job('latency', json_build_object('n', $1::int))`, [n])
    while (!h.starts.has(n)) await sleep(0.2)
    if (n >= 10) values.push(Number((h.starts.get(n) as bigint) - before) / 1e6) // first 10 are warm-up
    await sleep(20)
  }
  await stop()
  return values
}

async function teardown(h: Harness): Promise<void> {
  await h.pool.query(`drop schema ${h.quoted} cascade`)
  await h.db.end()
}

export const suite: BenchSuite = {
  name: 'worker',
  issue: 4,
  description: `No-op jobs drained by WorkerRunner (what \`backfill worker\` runs; defaults: concurrency ${CONCURRENCY}, local queue ${defaultLocalQueueSize(CONCURRENCY)}, completion batching) vs a raw graphile-worker 0.17.3 run() in the same process and database; pickup latency = add_job → handler start on an idle worker; DLQ capture of 10,000 exhausted jobs vs one hand-written move statement.`,
  async run(ctx) {
    const jobs = ctx.quick ? 20_000 : 100_000
    const ours: number[] = []
    const sameSettings: number[] = []
    const graphileDefaults: number[] = []
    const variants = [
      ['ours', ours, ourRunner],
      [
        'graphile run(), same settings',
        sameSettings,
        (h: Harness) =>
          graphileRunner(h, {
            localQueue: {size: defaultLocalQueueSize(CONCURRENCY)},
            completeJobBatchDelay: 0,
            failJobBatchDelay: 0,
          }),
      ],
      ['graphile run(), graphile defaults', graphileDefaults, (h: Harness) => graphileRunner(h, {})],
    ] as const
    // Warm-up (not recorded): the first drain in a process pays for JIT compilation.
    for (const [, , start] of variants) {
      const h = await harness(ctx, 'bw')
      await insertNoops(h, 5000)
      await drain(h, 5000, start(h))
      await teardown(h)
    }
    for (let round = 0; round < ctx.rounds; round++) {
      // Alternate the order so neither side always runs first (or last) in a round.
      const ordered = round % 2 === 0 ? variants : [...variants].reverse()
      for (const [label, target, start] of ordered) {
        const h = await harness(ctx, 'bw')
        await insertNoops(h, jobs)
        const rate = await drain(h, jobs, start(h))
        target.push(rate)
        ctx.log(`round ${round + 1}: ${label}: ${Math.round(rate)} jobs/s`)
        await teardown(h)
      }
    }

    const samples = ctx.quick ? 50 : 200
    const h1 = await harness(ctx, 'bl')
    const ourLatency = await latency(h1, samples, ourRunner(h1))
    await teardown(h1)
    const h2 = await harness(ctx, 'bl')
    const rawLatency = await latency(
      h2,
      samples,
      graphileRunner(h2, {
        localQueue: {size: defaultLocalQueueSize(CONCURRENCY)},
        completeJobBatchDelay: 0,
        failJobBatchDelay: 0,
      }),
    )
    await teardown(h2)
    ctx.log(
      `latency p50 ours ${percentile(ourLatency, 50).toFixed(2)} ms, raw ${percentile(rawLatency, 50).toFixed(2)} ms`,
    )

    const capture: number[] = []
    const single: number[] = []
    for (let round = 0; round < ctx.rounds; round++) {
      const h = await harness(ctx, 'bc')
      await insertNoops(h, 10_000)
      await h.pool.query(`update ${h.quoted}._private_jobs set attempts = max_attempts, last_error = 'failed'`)
      let t0 = performance.now()
      const result = await captureExhausted(h.db)
      capture.push(performance.now() - t0)
      if (result.captured !== 10_000) throw new Error(`captured ${result.captured}, expected 10000`)
      await h.pool.query(`truncate ${h.quoted}.backfill_dlq`)
      await insertNoops(h, 10_000)
      await h.pool.query(`update ${h.quoted}._private_jobs set attempts = max_attempts, last_error = 'failed'`)
      t0 = performance.now()
      await h.pool
        .query(`with moved as (delete from ${h.quoted}._private_jobs where attempts >= max_attempts and locked_at is null returning *)
        insert into ${h.quoted}.backfill_dlq (original_job_id, task_identifier, payload, queue_name, priority, job_key, max_attempts, failure_reason, last_error, original_created_at, original_run_at)
        select m.id, t.identifier, m.payload::jsonb, coalesce(q.queue_name, ''), m.priority, m.key, m.max_attempts, 'exhausted', to_jsonb(m.last_error), m.created_at, m.run_at
        from moved m join ${h.quoted}._private_tasks t on t.id = m.task_id left join ${h.quoted}._private_job_queues q on q.id = m.job_queue_id`)
      single.push(performance.now() - t0)
      await teardown(h)
    }

    const metrics: Metric[] = [
      {
        name: `throughput, ${jobs.toLocaleString('en-US')} no-op jobs, same settings`,
        unit: 'jobs/s',
        referenceName: 'graphile run() with our local queue and batching',
        higherIsBetter: true,
        target: {kind: 'ratio-min', value: 0.95},
        sample: {ours, reference: sameSettings},
      },
      {
        name: `throughput, ${jobs.toLocaleString('en-US')} no-op jobs, each side's defaults`,
        unit: 'jobs/s',
        referenceName: 'graphile run() defaults: no local queue, no batching',
        higherIsBetter: true,
        target: {kind: 'ratio-min', value: 5},
        sample: {ours, reference: graphileDefaults},
      },
      {
        name: 'pickup latency p50 (idle worker)',
        unit: 'ms',
        referenceName: 'graphile run(), same settings',
        higherIsBetter: false,
        target: {kind: 'max', value: 10},
        sample: {ours: [percentile(ourLatency, 50)], reference: [percentile(rawLatency, 50)]},
        notes: [`${samples} sequential samples`],
      },
      {
        name: 'pickup latency p99 (idle worker)',
        unit: 'ms',
        referenceName: 'graphile run(), same settings',
        higherIsBetter: false,
        sample: {ours: [percentile(ourLatency, 99)], reference: [percentile(rawLatency, 99)]},
      },
      {
        name: 'DLQ capture of 10,000 exhausted jobs',
        unit: 'ms',
        referenceName: 'one unbatched move statement',
        higherIsBetter: false,
        target: {kind: 'max', value: 5000},
        sample: {ours: capture, reference: single},
        notes: ['batches of 2,000, one atomic statement each'],
      },
    ]
    return metrics
  },
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
