/**
 * Peer benchmark (issue 17): backfill against pg-boss 10.4.2, the most used Node PostgreSQL
 * queue, on the same PostgreSQL in the same run, each side with its recommended settings:
 * bulk enqueue, drain of no-op jobs and of 10 ms jobs, and pickup latency on an idle worker.
 *
 * backfill: BackfillClient.enqueueMany, and WorkerRunner (what `backfill worker` runs) with its
 * defaults (adaptive prefetch, batched completions), concurrency 10 (50 for the 10 ms jobs).
 * pg-boss: boss.insert() (its bulk path), and `work()` subscriptions with the same number of
 * jobs running at once: one subscription per slot, batchSize 50 handled in turn (pg-boss has
 * no per-job slots), polling every 0.5 s (the minimum pg-boss allows; its default is 2 s). pg-boss
 * 10 has no LISTEN/NOTIFY: a worker that found nothing waits for its polling interval.
 */
import PgBoss from 'pg-boss'
import pg from 'pg'

import {BackfillClient} from '../src/lib/client/client.js'
import {targetFromUrl} from '../src/lib/connection.js'
import {Database} from '../src/lib/db.js'
import {parseSchemaName, quoteIdent} from '../src/lib/identifiers.js'
import {migrate} from '../src/lib/schema/migrate.js'
import {sleep} from '../src/lib/sleep.js'
import {requiredPoolSize, WorkerRunner} from '../src/lib/worker/runner.js'
import {percentile} from './lib/stats.js'
import type {BenchContext, BenchSuite, Metric} from './lib/types.js'

const QUEUE = 'bench'
const BOSS_BATCH = 50
const BOSS_POLL_S = 0.5

interface Side {
  /** Enqueue n trivial jobs ({"id": i}); returns ms. */
  enqueue(n: number, task?: string): Promise<number>
  /** Start workers of `concurrency` slots running `handler`; returns stop. */
  work(concurrency: number, handler: (payload: unknown) => Promise<void>): Promise<() => Promise<void>>
  /** Jobs not yet completed. */
  pending(): Promise<number>
  end(): Promise<void>
}

async function backfillSide(ctx: BenchContext): Promise<Side> {
  const schema = parseSchemaName(`peer_bf_${Math.random().toString(36).slice(2, 8)}`)
  const db = Database.connect({
    target: targetFromUrl(ctx.url, 'flag-or-env'),
    schema,
    max: requiredPoolSize({concurrency: 50}),
  })
  await migrate(db)
  const client = await BackfillClient.connect(ctx.url, {schema, ensureSchema: false, maxConnections: 4})
  const q = quoteIdent(schema)
  return {
    async enqueue(n, task = 'job') {
      const jobs = Array.from({length: n}, (_, i) => ({task, payload: {id: i}}))
      const started = performance.now()
      await client.enqueueMany(jobs)
      return performance.now() - started
    },
    async work(concurrency, handler) {
      const runner = new WorkerRunner({db, tasks: {job: handler}, config: {concurrency}})
      const handle = await runner.start()
      return async () => void (await handle.stop())
    },
    async pending() {
      return (await db.pool.query<{n: number}>(`select count(*)::int as n from ${q}._private_jobs`)).rows[0]!.n
    },
    async end() {
      await client.end()
      await db.pool.query(`drop schema ${q} cascade`)
      await db.end()
    },
  }
}

async function bossSide(ctx: BenchContext): Promise<Side> {
  const schema = `peer_boss_${Math.random().toString(36).slice(2, 8)}`
  const boss = new PgBoss({
    connectionString: ctx.url,
    schema,
    max: 60,
    // Maintenance off during a measurement (it runs on its own schedule otherwise).
    supervise: false,
    schedule: false,
  })
  boss.on('error', (error: Error) => ctx.log(`pg-boss error: ${error.message}`))
  await boss.start()
  await boss.createQueue(QUEUE)
  const admin = new pg.Pool({connectionString: ctx.url, max: 2})
  return {
    async enqueue(n) {
      const jobs = Array.from({length: n}, (_, i) => ({name: QUEUE, data: {id: i}}))
      const started = performance.now()
      // insert() takes one JSON document; send it in chunks of 10,000 like enqueueMany's batches.
      for (let i = 0; i < jobs.length; i += 10_000) await boss.insert(jobs.slice(i, i + 10_000))
      return performance.now() - started
    },
    async work(concurrency, handler) {
      const ids: string[] = []
      for (let i = 0; i < concurrency; i++) {
        ids.push(
          await boss.work(
            QUEUE,
            {batchSize: BOSS_BATCH, pollingIntervalSeconds: BOSS_POLL_S},
            async (jobs: PgBoss.Job<unknown>[]) => {
              for (const job of jobs) await handler(job.data)
            },
          ),
        )
      }
      return async () => {
        for (const id of ids) await boss.offWork({id})
      }
    },
    async pending() {
      const {rows} = await admin.query<{n: number}>(
        `select count(*)::int as n from "${schema}".job where name = $1 and state < 'completed'`,
        [QUEUE],
      )
      return rows[0]!.n
    },
    async end() {
      await boss.stop({graceful: false, wait: true})
      await admin.query(`drop schema "${schema}" cascade`)
      await admin.end()
    },
  }
}

/** Enqueue n, then time from starting the workers until every job is completed (written). */
async function drain(side: Side, n: number, concurrency: number, jobMs: number): Promise<number> {
  await side.enqueue(n)
  let done = 0
  const started = performance.now()
  const stop = await side.work(concurrency, async () => {
    if (jobMs > 0) await sleep(jobMs)
    done += 1
  })
  while (done < n) await sleep(5)
  while ((await side.pending()) > 0) await sleep(10)
  const ms = performance.now() - started
  await stop()
  return (n / ms) * 1000
}

/** Idle worker: enqueue one job, time until its handler starts; sequential samples. */
async function pickup(side: Side, samples: number): Promise<number[]> {
  const arrivals: bigint[] = []
  const stop = await side.work(10, async () => {
    arrivals.push(process.hrtime.bigint())
  })
  await sleep(1500)
  const values: number[] = []
  for (let i = 0; i < samples; i++) {
    const before = process.hrtime.bigint()
    await side.enqueue(1)
    while (arrivals.length <= i) await sleep(0.5)
    values.push(Number(arrivals[i]! - before) / 1e6)
    await sleep(20)
  }
  await stop()
  return values
}

export const suite: BenchSuite = {
  name: 'peer',
  issue: 17,
  description: `backfill vs pg-boss 10.4.2 on the same PostgreSQL, same run, each with its recommended settings: bulk enqueue (enqueueMany vs boss.insert), drain of no-op jobs (concurrency 10) and of 10 ms jobs (concurrency 50), pickup latency on an idle worker. backfill: WorkerRunner defaults (adaptive prefetch, batched completions, LISTEN/NOTIFY). pg-boss: one work() subscription per slot, batchSize ${BOSS_BATCH}, polling every ${BOSS_POLL_S} s (its minimum; default 2 s), maintenance off during measurements.`,
  async run(ctx) {
    const enqueueN = ctx.quick ? 20_000 : 50_000
    const noopN = ctx.quick ? 10_000 : 30_000
    const ioN = ctx.quick ? 3000 : 10_000
    const samples = ctx.quick ? 20 : 60
    const r = {
      enqueue: {ours: [] as number[], boss: [] as number[]},
      noop: {ours: [] as number[], boss: [] as number[]},
      io: {ours: [] as number[], boss: [] as number[]},
    }
    const lat = {ours: [] as number[], boss: [] as number[]}
    const sides = [
      ['backfill', backfillSide, 'ours'],
      ['pg-boss', bossSide, 'boss'],
    ] as const
    for (let round = 0; round < ctx.rounds; round++) {
      for (const [label, make, key] of round % 2 === 0 ? sides : [...sides].reverse()) {
        let side = await make(ctx)
        const ms = await side.enqueue(enqueueN)
        r.enqueue[key].push((enqueueN / ms) * 1000)
        await side.end()
        side = await make(ctx)
        r.noop[key].push(await drain(side, noopN, 10, 0))
        await side.end()
        side = await make(ctx)
        r.io[key].push(await drain(side, ioN, 50, 10))
        await side.end()
        if (round === 0) {
          side = await make(ctx)
          lat[key].push(...(await pickup(side, samples)))
          await side.end()
        }
        ctx.log(
          `round ${round + 1}: ${label}: enqueue ${Math.round(r.enqueue[key].at(-1)!)}/s, no-op ${Math.round(r.noop[key].at(-1)!)}/s, 10 ms ${Math.round(r.io[key].at(-1)!)}/s`,
        )
      }
    }
    const ref = 'pg-boss 10.4.2'
    const metrics: Metric[] = [
      {
        name: `bulk enqueue of ${enqueueN.toLocaleString('en-US')} jobs`,
        unit: 'jobs/s',
        referenceName: `${ref} insert() in chunks of 10,000`,
        higherIsBetter: true,
        sample: {ours: r.enqueue.ours, reference: r.enqueue.boss},
        notes: ['BackfillClient.enqueueMany (add_jobs in batches)'],
      },
      {
        name: `drain of ${noopN.toLocaleString('en-US')} no-op jobs, concurrency 10`,
        unit: 'jobs/s',
        referenceName: ref,
        higherIsBetter: true,
        target: {kind: 'ratio-min', value: 1},
        sample: {ours: r.noop.ours, reference: r.noop.boss},
      },
      {
        name: `drain of ${ioN.toLocaleString('en-US')} jobs of 10 ms, concurrency 50`,
        unit: 'jobs/s',
        referenceName: ref,
        higherIsBetter: true,
        target: {kind: 'ratio-min', value: 1},
        sample: {ours: r.io.ours, reference: r.io.boss},
      },
      {
        name: 'pickup latency p50 (idle worker)',
        unit: 'ms',
        referenceName: ref,
        higherIsBetter: false,
        target: {kind: 'ratio-max', value: 1},
        sample: {ours: [percentile(lat.ours, 50)], reference: [percentile(lat.boss, 50)]},
        notes: [`${lat.ours.length} / ${lat.boss.length} sequential samples (one round)`],
      },
      {
        name: 'pickup latency p99 (idle worker)',
        unit: 'ms',
        referenceName: ref,
        higherIsBetter: false,
        sample: {ours: [percentile(lat.ours, 99)], reference: [percentile(lat.boss, 99)]},
      },
    ]
    return metrics
  },
}
