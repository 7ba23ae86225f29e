/**
 * Worker throughput and latency, ours (WorkerRunner, the code `backfill worker` runs) vs a raw
 * graphile-worker run() on the same database, same process, same pg pool size.
 */
import {spawn} from 'node:child_process'
import {mkdirSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {run, Logger, type Runner, type TaskList} from 'graphile-worker'
import type pg from 'pg'

import {targetFromUrl} from '../src/lib/connection.js'
import {Database} from '../src/lib/db.js'
import {captureExhausted} from '../src/lib/dlq/capture.js'
import {parseSchemaName, quoteIdent} from '../src/lib/identifiers.js'
import {migrate} from '../src/lib/schema/migrate.js'
import {sleep} from '../src/lib/sleep.js'
import {WORKER_DEFAULTS, type WorkerConfigInput} from '../src/lib/worker/config.js'
import {DEFAULT_PREFETCH_CAP, DEFAULT_PREFETCH_HORIZON_MS} from '../src/lib/worker/prefetch.js'
import {requiredPoolSize, WorkerRunner} from '../src/lib/worker/runner.js'
import {percentile} from './lib/stats.js'
import type {BenchContext, BenchSuite, Metric} from './lib/types.js'

const here = path.dirname(fileURLToPath(import.meta.url))
const BIN = path.join(here, '..', 'bin', 'run.js')
const silent = new Logger(() => () => undefined)
const CONCURRENCY: number = WORKER_DEFAULTS.concurrency
const IO_CONCURRENCY = 50
/** graphile-worker's best configuration measured here (issue 17): a local queue of 500 and batched completions. */
const BEST_QUEUE = 500
const BEST_PRESET = {localQueue: {size: BEST_QUEUE}, completeJobBatchDelay: 0, failJobBatchDelay: 0}

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

async function harness(ctx: BenchContext, name: string, concurrency = CONCURRENCY): Promise<Harness> {
  const schema = parseSchemaName(`${name}_${Math.random().toString(36).slice(2, 8)}`)
  const db = Database.connect({
    target: targetFromUrl(ctx.url, 'flag-or-env'),
    schema,
    max: requiredPoolSize({concurrency}),
  })
  await migrate(db)
  let completed = 0
  const starts = new Map<number, bigint>()
  const tasks: TaskList = {
    noop: async () => {
      completed += 1
    },
    // I/O-bound: 10 ms of waiting, no CPU.
    io10: async () => {
      await sleep(10)
      completed += 1
    },
    latency: async (payload) => {
      starts.set((payload as {n: number}).n, process.hrtime.bigint())
    },
  }
  return {db, pool: db.pool, schema, quoted: quoteIdent(schema), done: () => completed, tasks, starts}
}

async function insertNoops(h: Harness, count: number, task = 'noop'): Promise<void> {
  for (let offset = 0; offset < count; offset += 50_000) {
    const n = Math.min(50_000, count - offset)
    await h.pool.query(
      `select 1 from ${h.quoted}.add_jobs(array(select row($2::text, '{}'::json, null, null, 8, null, 0, null)::${h.quoted}.job_spec from generate_series(1, $1::int)))`,
      [n, task],
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
  concurrency = CONCURRENCY,
): () => Promise<() => Promise<void>> {
  return async () => {
    const runner: Runner = await run({
      pgPool: h.pool,
      schema: h.schema,
      concurrency,
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

function ourRunner(h: Harness, config: WorkerConfigInput = {}): () => Promise<() => Promise<void>> {
  return async () => {
    const runner = new WorkerRunner({db: h.db, tasks: h.tasks, config: {concurrency: CONCURRENCY, ...config}})
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

interface KillRound {
  /** Jobs left locked by the killed worker (charged an attempt, stranded until released). */
  locked: number
  /** concurrency + jobs completed in 200 ms at the rate measured just before the kill. */
  bound: number
  rate: number
  prefetch: number | null
  /** The same for a plain graphile-worker process (local queue 500). */
  rawLocked: number
}

/** Starts a worker process on a backlog, measures its rate for ~1 s, SIGKILLs it, counts locked jobs. */
async function killOnce(
  ctx: BenchContext,
  command: string[],
  env: NodeJS.ProcessEnv,
  h: Harness,
  metricsPort: number | null,
): Promise<{locked: number; rate: number; prefetch: number | null}> {
  const remaining = async (): Promise<number> =>
    (await h.pool.query<{n: number}>(`select count(*)::int as n from ${h.quoted}._private_jobs`)).rows[0]!.n
  const total = await remaining()
  const child = spawn(process.execPath, command, {env, stdio: ['ignore', 'ignore', 'pipe']})
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()))
  try {
    // Full speed: well into the backlog.
    const deadline = Date.now() + 60_000
    while ((await remaining()) > total - 3000) {
      if (Date.now() > deadline || child.exitCode !== null)
        throw new Error(`worker did not start: ${stderr.slice(-500)}`)
      await sleep(20)
    }
    const r0 = await remaining()
    const t0 = performance.now()
    await sleep(1000)
    const r1 = await remaining()
    const rate = ((r0 - r1) / (performance.now() - t0)) * 1000
    let prefetch: number | null = null
    if (metricsPort !== null) {
      const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text()
      const m = /^backfill_worker_prefetch_size\{pool="shared"\} (\d+)/m.exec(text)
      prefetch = m ? Number(m[1]) : null
      if (!m)
        ctx.log(
          `no prefetch gauge in the metrics: ${text
            .split('\n')
            .filter((l) => l.includes('prefetch'))
            .join(' | ')}`,
        )
    }
    child.kill('SIGKILL')
    await exited
    const {rows} = await h.pool.query<{n: number}>(
      `select count(*)::int as n from ${h.quoted}._private_jobs where locked_at is not null`,
    )
    return {locked: rows[0]!.n, rate, prefetch}
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL')
    ctx.log(`killed worker stderr tail: ${stderr.trim().split('\n').slice(-1)[0] ?? ''}`)
  }
}

async function sigkillRounds(ctx: BenchContext): Promise<KillRound[]> {
  const tasksDir = path.join(ctx.workDir, 'kill-tasks')
  mkdirSync(tasksDir, {recursive: true})
  writeFileSync(path.join(tasksDir, 'noop.mjs'), 'export default async () => {}\n')
  const rounds: KillRound[] = []
  for (let round = 0; round < ctx.rounds; round++) {
    const port = 20_000 + Math.floor(Math.random() * 30_000)
    const h = await harness(ctx, 'bk')
    await insertNoops(h, 200_000)
    const env = {...process.env, DATABASE_URL: ctx.url, NO_COLOR: '1'}
    const ours = await killOnce(
      ctx,
      [BIN, 'worker', '--tasks', tasksDir, '--schema', h.schema, '--metrics-port', String(port), '--log-level', 'warn'],
      env,
      h,
      port,
    )
    await teardown(h)
    const r = await harness(ctx, 'bk')
    await insertNoops(r, 200_000)
    const raw = await killOnce(
      ctx,
      [path.join(here, 'scripts', 'raw-worker.mjs')],
      {...env, SCHEMA: r.schema, CONCURRENCY: String(CONCURRENCY)},
      r,
      null,
    )
    await teardown(r)
    const bound = CONCURRENCY + ours.rate * 0.2
    ctx.log(
      `round ${round + 1}: SIGKILL: ours ${ours.locked} locked (bound ${Math.round(bound)}, rate ${Math.round(ours.rate)}/s, prefetch ${ours.prefetch}), graphile LQ 500: ${raw.locked} locked (rate ${Math.round(raw.rate)}/s)`,
    )
    rounds.push({locked: ours.locked, bound, rate: ours.rate, prefetch: ours.prefetch, rawLocked: raw.locked})
  }
  return rounds
}

/**
 * DLQ capture of 10,000 exhausted jobs (captureExhausted, the worker's and `dlq capture`'s
 * code) vs one hand-written unbatched move statement, fresh jobs each side, ctx.rounds rounds.
 * Exported for bench/scripts/capture.ts, which runs only this.
 */
export async function captureRounds(ctx: BenchContext): Promise<{capture: number[]; single: number[]}> {
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
  return {capture, single}
}

async function teardown(h: Harness): Promise<void> {
  await h.pool.query(`drop schema ${h.quoted} cascade`)
  await h.db.end()
}

export const suite: BenchSuite = {
  name: 'worker',
  issue: 4,
  description: `No-op and 10 ms jobs drained by WorkerRunner (what \`backfill worker\` runs; defaults: concurrency ${CONCURRENCY}, adaptive prefetch, completion batching) vs a raw graphile-worker 0.17.3 run() in its best configuration (local queue ${BEST_QUEUE}, batched completions) and with its defaults, in the same process and database, order rotated per round; a real \`backfill worker\` process SIGKILLed at full speed (jobs left locked); pickup latency = add_job → handler start on an idle worker; DLQ capture of 10,000 exhausted jobs vs one hand-written move statement.`,
  async run(ctx) {
    const jobs = ctx.quick ? 20_000 : 50_000
    const ours: number[] = []
    const oursSame: number[] = []
    const best: number[] = []
    const graphileDefaults: number[] = []
    const variants = [
      ['ours (defaults: adaptive prefetch)', ours, (h: Harness) => ourRunner(h)],
      ['ours, local queue fixed at 500', oursSame, (h: Harness) => ourRunner(h, {localQueueSize: BEST_QUEUE})],
      ['graphile run(), local queue 500 + batching', best, (h: Harness) => graphileRunner(h, BEST_PRESET)],
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
      // Rotate the order so no side always runs first (or last) in a round.
      const ordered = [...variants.slice(round % variants.length), ...variants.slice(0, round % variants.length)]
      for (const [label, target, start] of ordered) {
        const h = await harness(ctx, 'bw')
        await insertNoops(h, jobs)
        const rate = await drain(h, jobs, start(h))
        target.push(rate)
        ctx.log(`round ${round + 1}: ${label}: ${Math.round(rate)} jobs/s`)
        await teardown(h)
      }
    }

    // I/O-bound jobs (10 ms each), concurrency 50 on both sides.
    const ioJobs = ctx.quick ? 5000 : 20_000
    const ioOurs: number[] = []
    const ioBest: number[] = []
    for (let round = 0; round < ctx.rounds; round++) {
      const pair = [
        ['ours (defaults), 10 ms jobs', ioOurs, (h: Harness) => ourRunner(h, {concurrency: IO_CONCURRENCY})],
        [
          'graphile run(), local queue 500 + batching, 10 ms jobs',
          ioBest,
          (h: Harness) => graphileRunner(h, BEST_PRESET, IO_CONCURRENCY),
        ],
      ] as const
      for (const [label, target, start] of round % 2 === 0 ? pair : [...pair].reverse()) {
        const h = await harness(ctx, 'bi', IO_CONCURRENCY)
        await insertNoops(h, ioJobs, 'io10')
        const rate = await drain(h, ioJobs, start(h))
        target.push(rate)
        ctx.log(`round ${round + 1}: ${label}: ${Math.round(rate)} jobs/s`)
        await teardown(h)
      }
    }

    // SIGKILL at full speed: a worker process (the real CLI, defaults) killed while draining a
    // backlog; jobs left locked (charged an attempt, stranded until a cleaner releases them).
    const kills = await sigkillRounds(ctx)

    const samples = ctx.quick ? 50 : 200
    const h1 = await harness(ctx, 'bl')
    const ourLatency = await latency(h1, samples, ourRunner(h1))
    await teardown(h1)
    const h2 = await harness(ctx, 'bl')
    const rawLatency = await latency(h2, samples, graphileRunner(h2, BEST_PRESET))
    await teardown(h2)
    ctx.log(
      `latency p50 ours ${percentile(ourLatency, 50).toFixed(2)} ms, raw ${percentile(rawLatency, 50).toFixed(2)} ms`,
    )

    const {capture, single} = await captureRounds(ctx)

    const median = (v: number[]): number => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)] as number
    const metrics: Metric[] = [
      {
        name: `throughput, ${jobs.toLocaleString('en-US')} no-op jobs, our defaults vs graphile's best configuration`,
        unit: 'jobs/s',
        referenceName: 'graphile run() with local queue 500 and batched completions',
        higherIsBetter: true,
        target: {kind: 'ratio-min', value: 0.9},
        sample: {ours, reference: best},
        notes: [
          `concurrency ${CONCURRENCY}; ours: adaptive prefetch (cap ${DEFAULT_PREFETCH_CAP}, ${DEFAULT_PREFETCH_HORIZON_MS} ms of work)`,
        ],
      },
      {
        name: `throughput, ${jobs.toLocaleString('en-US')} no-op jobs, same configuration`,
        unit: 'jobs/s',
        referenceName: 'graphile run() with local queue 500 and batched completions',
        higherIsBetter: true,
        target: {kind: 'ratio-min', value: 0.95},
        sample: {ours: oursSame, reference: best},
        notes: ['ours with --local-queue-size 500: the per-job cost of our instrumentation'],
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
        name: `throughput, ${ioJobs.toLocaleString('en-US')} jobs of 10 ms (I/O), concurrency ${IO_CONCURRENCY}, our defaults vs graphile's best`,
        unit: 'jobs/s',
        referenceName: 'graphile run() with local queue 500 and batched completions',
        higherIsBetter: true,
        target: {kind: 'ratio-min', value: 0.95},
        sample: {ours: ioOurs, reference: ioBest},
      },
      {
        name: 'SIGKILL at full speed: jobs left locked (charged an attempt)',
        unit: 'jobs',
        referenceName: 'the bound: concurrency + jobs completed in 200 ms at the measured rate',
        higherIsBetter: false,
        target: {kind: 'ratio-max', value: 1},
        sample: {ours: kills.map((k) => k.locked), reference: kills.map((k) => k.bound)},
        notes: [
          `backfill worker (CLI, defaults, concurrency ${CONCURRENCY}) killed after ~2 s draining no-op jobs`,
          `rates ${kills.map((k) => Math.round(k.rate)).join(', ')} jobs/s; prefetch size at the kill ${kills.map((k) => k.prefetch ?? '?').join(', ')}`,
          `graphile run() with local queue 500 killed the same way: ${median(kills.map((k) => k.rawLocked))} locked`,
        ],
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
        notes: ['batches of 2,000: lock, fingerprint, one atomic move statement each'],
      },
    ]
    return metrics
  },
}
