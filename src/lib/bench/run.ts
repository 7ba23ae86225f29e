import {randomBytes} from 'node:crypto'

import {BackfillClient} from '../client/client.js'
import type {Database} from '../db.js'
import {PreconditionError} from '../errors.js'
import {parseSchemaName, type SchemaName} from '../identifiers.js'
import {sleep} from '../sleep.js'
import {migrate} from '../schema/migrate.js'
import {inspectSchema} from '../schema/inspect.js'
import {backfillMeta} from '../sql/schema.js'
import {deleteBenchJobs, markBenchSchema, schemaHasWork, serverVersion} from '../sql/bench.js'
import {defaultLocalQueueSize, WORKER_DEFAULTS} from '../worker/config.js'
import {requiredPoolSize, WorkerRunner} from '../worker/runner.js'
import {benchPlace} from './database.js'

export interface BenchOptions {
  /** Jobs to enqueue and work off (burn-down mode). */
  jobs: number
  concurrency: number
  /** Continuous mode: keep the queue stocked and measure for this long instead. */
  durationMs?: number | undefined
  /** Sequential idle pickup-latency samples. */
  latencySamples: number
  /** Schema to create (must not exist, or be a leftover bench schema). Default: a random bench_ name. */
  schema?: SchemaName | undefined
  /** Keep the schema (and the throwaway database) afterwards (for inspection). */
  keep?: boolean
  /**
   * Run in a schema of the target database instead of a throwaway database (implied by
   * schema). Plain graphile-worker pools of that database stop when the schema is migrated.
   */
  sameDatabase?: boolean
  /** Connections of the benchmark's own pool (throwaway database); default: what the worker needs. */
  poolSize?: number
  signal?: AbortSignal
  onProgress?: (progress: BenchProgress) => void
}

export interface BenchProgress {
  phase: 'setup' | 'enqueue' | 'process' | 'latency' | 'cleanup'
  done: number
  total: number | null
  /** Jobs per second over the phase so far. */
  rate: number | null
}

export interface BenchReport {
  schema: string
  /** Where it ran: a throwaway database of its own, or the target's (and why). */
  database: {name: string; throwaway: boolean; sharedBecause?: string}
  settings: {
    mode: 'burn-down' | 'continuous'
    jobs: number
    concurrency: number
    localQueueSize: number
    batchDelayMs: number
    pollIntervalMs: number
    durationMs: number | null
    postgres: string
  }
  enqueue: {jobs: number; seconds: number; jobsPerSecond: number}
  processing: {jobs: number; seconds: number; jobsPerSecond: number}
  latencyMs: {samples: number; p50: number; p95: number; p99: number; max: number} | null
  schemaDropped: boolean
}

const BENCH_TASK = 'backfill_bench_noop'

/**
 * `backfill bench`: sizes a database the way `river bench` does, with backfill's real code
 * paths (BackfillClient.enqueueMany to insert, WorkerRunner to work off no-op jobs, then
 * idle pickup latency), in a throwaway database (or, failing that, schema) it creates and drops.
 */
export async function runBench(base: Database, options: BenchOptions): Promise<BenchReport> {
  const schema = options.schema ?? parseSchemaName(`backfill_bench_${randomBytes(4).toString('hex')}`)
  const place = await benchPlace(base, schema, {
    sameDatabase: options.sameDatabase === true || options.schema !== undefined,
    poolSize: options.poolSize ?? requiredPoolSize({concurrency: options.concurrency}) + 2,
  })
  try {
    const report = await benchIn(place.db, schema, options)
    return {
      ...report,
      database: {
        name: place.database,
        throwaway: place.throwawayDatabase,
        ...(place.sharedBecause ? {sharedBecause: place.sharedBecause} : {}),
      },
    }
  } finally {
    if (!options.keep) await place.release()
  }
}

async function benchIn(
  db: Database,
  schema: SchemaName,
  options: BenchOptions,
): Promise<Omit<BenchReport, 'database'>> {
  const progress = (p: BenchProgress): void => options.onProgress?.(p)
  await refuseForeignSchema(db)
  progress({phase: 'setup', done: 0, total: null, rate: null})
  await migrate(db)
  await db.exec(markBenchSchema, [])
  try {
    const client = await BackfillClient.fromDatabase(db, {ensureSchema: false})
    const runner = new WorkerRunner({
      db,
      tasks: {
        [BENCH_TASK]: async (payload) => {
          const sample = (payload as {sample?: number}).sample
          if (sample !== undefined) latencyStarts.set(sample, process.hrtime.bigint())
          processed += 1
        },
      },
      config: {concurrency: options.concurrency, migrate: false},
    })
    const latencyStarts = new Map<number, bigint>()
    let processed = 0
    const settings = {
      mode: options.durationMs ? ('continuous' as const) : ('burn-down' as const),
      jobs: options.jobs,
      concurrency: options.concurrency,
      localQueueSize: runner.config.localQueueSize,
      batchDelayMs: runner.config.completeBatchDelayMs,
      pollIntervalMs: runner.config.pollIntervalMs,
      durationMs: options.durationMs ?? null,
      postgres: (await db.one(serverVersion, [])).version,
    }

    const enqueueBatch = async (count: number): Promise<number> => {
      const started = performance.now()
      await client.enqueueMany(jobsOf(count), {batchSize: 5000, ...(options.signal ? {signal: options.signal} : {})})
      return performance.now() - started
    }

    let enqueued = 0
    let enqueueMs = 0
    let processing: BenchReport['processing']
    if (!options.durationMs) {
      // Burn-down: insert everything, then time the worker draining it.
      for (let done = 0; done < options.jobs && !options.signal?.aborted;) {
        const count = Math.min(20_000, options.jobs - done)
        enqueueMs += await enqueueBatch(count)
        done += count
        enqueued = done
        progress({phase: 'enqueue', done, total: options.jobs, rate: (done / enqueueMs) * 1000})
      }
      await db.execScript(`analyze ${db.quotedSchema}._private_jobs`)
      const started = performance.now()
      const handle = await runner.start()
      try {
        while (processed < enqueued && !options.signal?.aborted) {
          await sleep(200)
          progress({
            phase: 'process',
            done: processed,
            total: enqueued,
            rate: (processed / (performance.now() - started)) * 1000,
          })
        }
      } finally {
        await handle.stop()
      }
      const seconds = (performance.now() - started) / 1000
      processing = {jobs: processed, seconds, jobsPerSecond: processed / seconds}
    } else {
      // Continuous: keep at least two batches waiting, count what the worker finishes in the window.
      enqueueMs += await enqueueBatch(Math.min(options.jobs, 20_000))
      enqueued = Math.min(options.jobs, 20_000)
      await db.execScript(`analyze ${db.quotedSchema}._private_jobs`)
      const handle = await runner.start()
      const started = performance.now()
      const deadline = started + options.durationMs
      try {
        while (performance.now() < deadline && !options.signal?.aborted) {
          if (enqueued - processed < 10_000) {
            enqueueMs += await enqueueBatch(5000)
            enqueued += 5000
          } else await sleep(50)
          progress({
            phase: 'process',
            done: processed,
            total: null,
            rate: (processed / (performance.now() - started)) * 1000,
          })
        }
      } finally {
        const windowEnd = performance.now()
        const inWindow = processed
        await handle.stop()
        processing = {
          jobs: inWindow,
          seconds: (windowEnd - started) / 1000,
          jobsPerSecond: (inWindow / (windowEnd - started)) * 1000,
        }
      }
    }

    let latencyMs: BenchReport['latencyMs'] = null
    if (options.latencySamples > 0 && !options.signal?.aborted) {
      const handle = await runner.start()
      try {
        await db.exec(deleteBenchJobs, [])
        await sleep(300)
        const values: number[] = []
        for (let n = 0; n < options.latencySamples + 5 && !options.signal?.aborted; n++) {
          const before = process.hrtime.bigint()
          await client.enqueue(BENCH_TASK, {sample: n}, {maxAttempts: 1})
          const deadline = Date.now() + 5000
          while (!latencyStarts.has(n) && Date.now() < deadline) await sleep(0.2)
          const startedAt = latencyStarts.get(n)
          if (startedAt !== undefined && n >= 5) values.push(Number(startedAt - before) / 1e6) // 5 warm-up samples
          progress({phase: 'latency', done: Math.max(0, n - 4), total: options.latencySamples, rate: null})
          await sleep(10)
        }
        values.sort((a, b) => a - b)
        const pick = (p: number): number =>
          values[Math.min(values.length - 1, Math.max(0, Math.ceil((p / 100) * values.length) - 1))] ?? Number.NaN
        latencyMs = {
          samples: values.length,
          p50: pick(50),
          p95: pick(95),
          p99: pick(99),
          max: values[values.length - 1] ?? Number.NaN,
        }
      } finally {
        await handle.stop()
      }
    }
    return {
      schema,
      settings,
      enqueue: {jobs: enqueued, seconds: enqueueMs / 1000, jobsPerSecond: (enqueued / enqueueMs) * 1000},
      processing,
      latencyMs,
      schemaDropped: !options.keep,
    }
  } finally {
    progress({phase: 'cleanup', done: 0, total: null, rate: null})
    if (!options.keep) await db.execScript(`drop schema ${db.quotedSchema} cascade`)
  }
}

/** Never touch a schema with work in it, nor one we did not create for a benchmark. */
async function refuseForeignSchema(db: Database): Promise<void> {
  const inspection = await inspectSchema(db)
  if (!inspection.schemaExists) return
  const isBench =
    inspection.backfill.catalog.relations.has('backfill_meta') &&
    (await db.rows(backfillMeta, [])).some((r) => r.key === 'bench')
  const hasJobs = inspection.graphile.installed && (await db.one(schemaHasWork, [])).has_jobs
  if (!isBench || hasJobs) {
    throw new PreconditionError(
      `schema "${db.schema}" already exists${hasJobs ? ' and holds jobs' : ''}; backfill bench only uses a schema it creates`,
      {
        code: 'E_BENCH_SCHEMA',
        suggestions: ['omit --schema to use a random throwaway schema, or name one that does not exist'],
      },
    )
  }
}

function* jobsOf(count: number): Generator<{task: string; payload: Record<string, never>; maxAttempts: number}> {
  for (let i = 0; i < count; i++) yield {task: BENCH_TASK, payload: {}, maxAttempts: 1}
}

export const BENCH_DEFAULTS = {
  jobs: 20_000,
  concurrency: WORKER_DEFAULTS.concurrency,
  latencySamples: 100,
  localQueueSize: defaultLocalQueueSize(WORKER_DEFAULTS.concurrency),
} as const
