/**
 * Issue 16: the queue-metrics scan (what the worker leader and `backfill metrics serve` run
 * every interval) on 1,000,000 jobs (quick: 100,000), side by side with the job-count SQL at
 * the core of `status`; and one scrape of the exporter's /metrics over HTTP (served from the
 * last scan, so it does not touch the database).
 */
import http from 'node:http'

import pg from 'pg'

import {targetFromUrl} from '../src/lib/connection.js'
import {Database} from '../src/lib/db.js'
import {parseSchemaName} from '../src/lib/identifiers.js'
import {QueueMetricsExporter} from '../src/lib/metrics/exporter.js'
import {collectQueueMetrics, type FailureGroupCache} from '../src/lib/metrics/queue-metrics.js'
import {migrate} from '../src/lib/schema/migrate.js'
import {sleep} from '../src/lib/sleep.js'
import {jobCounts} from '../src/lib/sql/status.js'
import {WORKER_DEFAULTS} from '../src/lib/worker/config.js'
import {serveMetrics} from '../src/lib/worker/metrics-server.js'
import {requiredPoolSize, WorkerRunner} from '../src/lib/worker/runner.js'
import {median, timeIt} from './lib/stats.js'
import type {BenchContext, BenchSuite, Metric} from './lib/types.js'

const SCHEMA = 'bench_metrics'
const DLQ_ENTRIES = 20_000
/** No-op jobs drained per round of the leader-cost measurement (quick: 20,000). */
const DRAIN_JOBS = 200_000

/**
 * A big, busy queue: 40 tasks; 10% of jobs in 2,000 serial queues; 5% scheduled, 2% retrying,
 * 0.5% exhausted; 1,000 running jobs of 8 owners; 20,000 DLQ entries in 60 failure groups and
 * an audit trail of 2,000 runs.
 */
async function populate(client: pg.Client, jobs: number): Promise<void> {
  const s = `"${SCHEMA}"`
  await client.query(`insert into ${s}._private_tasks (identifier) select 'task_' || i from generate_series(1, 40) i`)
  await client.query(
    `insert into ${s}._private_job_queues (queue_name) select 'user:' || i from generate_series(1, 2000) i`,
  )
  await client.query(
    `insert into ${s}._private_jobs (task_id, job_queue_id, payload, run_at, attempts, max_attempts, last_error)
     select (i % 40) + 1,
            case when i % 10 = 0 then (i / 10) % 2000 + 1 end,
            json_build_object('id', i),
            case when i % 20 = 1 then now() + interval '1 hour' else now() - (i % 3600) * interval '1 second' end,
            case when i % 200 = 3 then 8 when i % 50 = 7 then 2 else 0 end,
            8,
            case when i % 200 = 3 or i % 50 = 7 then 'boom' end
     from generate_series(1, $1::int) i`,
    [jobs],
  )
  await client.query(
    `with picked as (
       select id, row_number() over (order by id desc) as n from ${s}._private_jobs
       where attempts < max_attempts order by id desc limit 1000
     )
     update ${s}._private_jobs j set locked_by = 'pool-' || lpad(to_hex(p.n % 8), 18, '0'),
       locked_at = now() - (p.n % 600) * interval '1 second', attempts = j.attempts + 1
     from picked p where j.id = p.id`,
  )
  await client.query(`insert into ${s}.backfill_workers (pool_id, hostname, pid, last_heartbeat_at, metadata) values
    ('pool-' || lpad(to_hex(0), 18, '0'), 'bench-a', 1, now(), '{"heartbeatIntervalMs": 10000}'),
    ('pool-' || lpad(to_hex(1), 18, '0'), 'bench-b', 2, now() - interval '1 hour', '{"heartbeatIntervalMs": 10000}')`)
  await client.query(
    `insert into ${s}.backfill_dlq (original_job_id, task_identifier, payload, queue_name, priority, max_attempts, failure_reason, last_error, failed_at)
     select i, 'task_' || (i % 20), json_build_object('i', i), '', 0, 8, 'Job exceeded maximum retry attempts (8/8)',
            to_jsonb('error kind ' || (i % 60) || ' for user ' || i), now() - i * interval '1 second'
     from generate_series(1, $1::int) i`,
    [DLQ_ENTRIES],
  )
  await client.query(
    `insert into ${s}.backfill_dlq_audit (action, count) select (array['retry','purge','capture'])[i % 3 + 1], 100 from generate_series(1, 2000) i`,
  )
  await client.query(`vacuum analyze ${s}._private_jobs`)
  await client.query(`analyze ${s}.backfill_dlq`)
}

interface LeaderRound {
  /** jobs/s without and with the queue-metrics leader scanning. */
  alone: number
  leading: number
  scans: number
  scanMs: number
  drainMs: number
}

/**
 * The cost of the leader's scan on a worker's throughput: `backfill worker --metrics-port`
 * as the worker command builds it (WorkerRunner on its pool; QueueMetricsExporter with
 * leader election, the default interval, on a pool of its own) draining no-op jobs queued
 * ahead of the 1M jobs above (so every scan covers the whole big table), vs the same drain
 * with no exporter. Order alternates per round.
 */
async function leaderRounds(ctx: BenchContext, client: pg.Client, rounds: number): Promise<LeaderRound[]> {
  const count = ctx.quick ? 20_000 : DRAIN_JOBS
  const s = `"${SCHEMA}"`
  const config = {concurrency: WORKER_DEFAULTS.concurrency}
  let completed = 0
  const tasks = {noop: async (): Promise<void> => void (completed += 1)}
  const fill = async (): Promise<void> => {
    for (let offset = 0; offset < count; offset += 50_000) {
      const n = Math.min(50_000, count - offset)
      // run_at a day back: ahead of the big table's ready jobs in the fetch order.
      await client.query(
        `select 1 from ${s}.add_jobs(array(select row('noop', '{}'::json, null, now() - interval '1 day', 8, null, 0, null)::${s}.job_spec from generate_series(1, $1::int)))`,
        [n],
      )
    }
    await client.query(`vacuum analyze ${s}._private_jobs`)
  }
  const drain = async (withLeader: boolean): Promise<{rate: number; scans: number; scanMs: number; ms: number}> => {
    await fill()
    const target = targetFromUrl(ctx.url, 'flag-or-env')
    const db = Database.connect({target, schema: parseSchemaName(SCHEMA), max: requiredPoolSize(config)})
    const queueDb = withLeader
      ? Database.connect({target, schema: parseSchemaName(SCHEMA), max: 2, applicationName: 'bench queue-metrics'})
      : undefined
    let scans = 0
    let scanMs = 0
    const exporter = queueDb
      ? new QueueMetricsExporter(queueDb, {
          leaderElection: true,
          restartGrace: false,
          onScan: (snapshot) => {
            scans += 1
            scanMs += snapshot.durationMs
          },
        })
      : undefined
    completed = 0
    const started = performance.now()
    try {
      // As the worker command does: the exporter starts beside the runner (first scan at once).
      const [handle] = await Promise.all([
        new WorkerRunner({db, tasks, config: {...config, dlqIntervalMs: null}}).start(),
        exporter?.start(),
      ])
      while (completed < count) await sleep(5)
      await handle.stop()
      const ms = performance.now() - started
      return {rate: (count / ms) * 1000, scans, scanMs, ms}
    } finally {
      await exporter?.stop()
      await queueDb?.end()
      await db.end()
    }
  }
  // Warm-up (JIT, plan caches, the table's first vacuum): the first drain of a run is slower.
  await drain(false)
  const result: LeaderRound[] = []
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? [false, true] : [true, false]
    const runs = new Map<boolean, Awaited<ReturnType<typeof drain>>>()
    for (const withLeader of order) runs.set(withLeader, await drain(withLeader))
    const alone = runs.get(false)
    const leading = runs.get(true)
    if (!alone || !leading) throw new Error('leader round incomplete')
    result.push({
      alone: alone.rate,
      leading: leading.rate,
      scans: leading.scans,
      scanMs: leading.scanMs,
      drainMs: leading.ms,
    })
    ctx.log(
      `leader round ${round + 1}: ${alone.rate.toFixed(0)} jobs/s alone, ${leading.rate.toFixed(0)} jobs/s with the leader scanning (${leading.scans} scans, ${leading.scanMs.toFixed(0)} ms of scans in ${(leading.ms / 1000).toFixed(1)} s)`,
    )
  }
  return result
}

export const suite: BenchSuite = {
  name: 'metrics',
  issue: 16,
  description:
    "The queue-metrics scan (collectQueueMetrics: status's statements + DLQ failure groups + audit totals) on 1,000,000 jobs (quick: 100,000) with 1,000 running jobs and 20,000 DLQ entries, vs the job-count SQL at the core of status; and one exporter scrape (GET /metrics over loopback HTTP).",
  async run(ctx: BenchContext): Promise<Metric[]> {
    const jobs = ctx.quick ? 100_000 : 1_000_000
    const db = Database.connect({
      target: targetFromUrl(ctx.url, 'flag-or-env'),
      schema: parseSchemaName(SCHEMA),
      max: 4,
    })
    const raw = new pg.Client({connectionString: ctx.url})
    await raw.connect()
    const samples = {
      steady: [] as number[],
      parallel: [] as number[],
      changed: [] as number[],
      core: [] as number[],
      scrape: [] as number[],
    }
    let scrapeBytes = 0
    const leader: LeaderRound[] = []
    try {
      ctx.log(`populating ${jobs.toLocaleString('en-US')} jobs`)
      await migrate(db)
      await populate(raw, jobs)
      const coreSql = db.sqlFor(jobCounts)
      const options = {restartGrace: false}
      const cache: FailureGroupCache = {}
      const exporter = new QueueMetricsExporter(db, {intervalMs: 3_600_000, ...options})
      await exporter.start()
      const server = await serveMetrics(exporter.metrics.registry, {port: 0})
      const agent = new http.Agent({keepAlive: true})
      const get = (): Promise<string> =>
        new Promise((resolve, reject) => {
          http
            .get(server.url, {agent}, (response) => {
              let body = ''
              response.setEncoding('utf8').on('data', (d: string) => (body += d))
              response.on('end', () => resolve(body))
            })
            .on('error', reject)
        })
      try {
        for (let round = 0; round < ctx.rounds; round++) {
          // What the leader runs every interval while the DLQ is unchanged (failure groups cached).
          samples.steady.push(await timeIt(() => collectQueueMetrics(db, {...options, groupCache: cache})))
          samples.core.push(await timeIt(() => raw.query(coreSql, [20])))
          // The same scan with parallel query workers (what `status` does for a human).
          samples.parallel.push(
            await timeIt(() => collectQueueMetrics(db, {...options, groupCache: cache, background: false})),
          )
          // After the DLQ changed: everything, failure groups regrouped (every entry's error line normalised).
          samples.changed.push(await timeIt(() => collectQueueMetrics(db, options), 3))
          samples.scrape.push(
            await timeIt(async () => {
              scrapeBytes = (await get()).length
            }, 20),
          )
          ctx.log(
            `round ${round + 1}: scan ${samples.steady.at(-1)?.toFixed(0)} ms (parallel ${samples.parallel.at(-1)?.toFixed(0)} ms; DLQ changed: ${samples.changed.at(-1)?.toFixed(0)} ms), status core SQL ${samples.core.at(-1)?.toFixed(0)} ms, scrape ${samples.scrape.at(-1)?.toFixed(2)} ms`,
          )
        }
      } finally {
        agent.destroy()
        await server.close()
        await exporter.stop()
      }
      ctx.log(
        `leader cost: draining ${(ctx.quick ? 20_000 : DRAIN_JOBS).toLocaleString('en-US')} no-op jobs with and without the leader`,
      )
      leader.push(...(await leaderRounds(ctx, raw, ctx.rounds)))
    } finally {
      await raw.end()
      await db.end()
    }
    const k = `${jobs / 1000}k`
    return [
      {
        name: `queue-metrics scan on ${k} jobs`,
        unit: 'ms',
        referenceName: "status's job-count SQL alone",
        higherIsBetter: false,
        target: {kind: 'max', value: 300},
        sample: {ours: samples.steady, reference: samples.core},
        notes: [
          `every interval while the DLQ is unchanged (failure groups cached), as a background scan (no parallel query workers, the default); with parallel workers: ${median(samples.parallel).toFixed(0)} ms; a scan after the DLQ changed regroups it: ${median(samples.changed).toFixed(0)} ms`,
          `${DLQ_ENTRIES.toLocaleString('en-US')} DLQ entries in 60 groups, 1,000 running jobs, 40 tasks, 2,000 serial queues`,
        ],
      },
      {
        name: `worker throughput with the queue-metrics leader scanning, ${k} jobs in the table`,
        unit: 'jobs/s',
        referenceName: 'the same worker without the leader',
        higherIsBetter: true,
        target: {kind: 'ratio-min', value: 0.98},
        sample: {ours: leader.map((r) => r.leading), reference: leader.map((r) => r.alone)},
        notes: [
          `${(ctx.quick ? 20_000 : DRAIN_JOBS).toLocaleString('en-US')} no-op jobs per drain, defaults (concurrency ${WORKER_DEFAULTS.concurrency}, adaptive prefetch), default scan interval (15 s, first scan at start); scans per drain ${leader.map((r) => r.scans).join('/')}, scan time ${leader.map((r) => ((100 * r.scanMs) / r.drainMs).toFixed(1)).join('/')} % of the drain`,
        ],
      },
      {
        name: 'exporter scrape (GET /metrics, loopback)',
        unit: 'ms',
        higherIsBetter: false,
        target: {kind: 'max', value: 20},
        sample: {ours: samples.scrape},
        notes: [`served from the last scan (no database work); ${scrapeBytes.toLocaleString('en-US')} bytes`],
      },
    ]
  },
}
