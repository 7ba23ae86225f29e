/**
 * DLQ operations at 100,000 and 1,000,000 entries (quick mode: 20,000): `dlq list` first page
 * and `dlq stats` through the CLI binary (plus the in-library time: from the trigger-kept
 * group counts vs the scan of every entry), the cost of those triggers on capture and on a
 * bulk insert, and `dlq retry --all` / `dlq purge --all` side by side with one hand-written
 * SQL statement doing the same move / delete on identical data. BENCH_DLQ_READS_ONLY=1 skips
 * retry and purge (minutes at 1M).
 */
import {existsSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import pg from 'pg'

import {targetFromUrl} from '../src/lib/connection.js'
import {Database} from '../src/lib/db.js'
import {captureExhausted} from '../src/lib/dlq/capture.js'
import {listDlq} from '../src/lib/dlq/entries.js'
import {backfillFingerprints} from '../src/lib/dlq/fingerprint-store.js'
import {dlqStats, type StatsSource} from '../src/lib/dlq/stats.js'
import {parseSchemaName, quoteIdent} from '../src/lib/identifiers.js'
import {BULK_FLAG, DEFAULT_MAX_ATTEMPTS} from '../src/lib/jobs/priority.js'
import {GROUP_COUNTS_TRIGGERS} from '../src/lib/schema/backfill-objects.js'
import {initDlq, migrate} from '../src/lib/schema/migrate.js'
import {timedRun, type TimedRun} from './lib/process.js'
import type {BenchContext, BenchSuite, Metric} from './lib/types.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const BIN = path.join(ROOT, 'bin', 'run.js')
const SCHEMA = 'bench_dlq'

/**
 * A DLQ as an outage leaves it: 20 tasks, errors that differ by user id (so ~1,000 distinct
 * lines per task, 20 failure groups), 10% serial queues, a quarter of the jobs keyed, a
 * payload of ~150 bytes, failed_at one per second.
 */
function fillSql(q: string, n: number): string {
  return `insert into ${q}.backfill_dlq (original_job_id, task_identifier, payload, queue_name, priority, job_key, max_attempts, failure_reason, last_error, original_created_at, original_run_at, failed_at)
select i, 'task_' || (i % 20), jsonb_build_object('i', i, 'user', 'user-' || (i % 1000), 'body', repeat('x', 100)),
       case when i % 10 = 0 then 'serial_' || (i % 50) else '' end, (i % 3) * 5 - 5,
       case when i % 4 = 0 then 'key-' || i end, 8, 'Job exceeded maximum retry attempts (8/8)',
       to_jsonb('SMTP 421 temporary failure for user ' || (i % 977) || ' at 2024-01-01T00:00:00Z'),
       now() - interval '2 days', now() - interval '1 day', now() - make_interval(secs => i)
from generate_series(1, ${n}) i`
}

/** The reference retry: the same move (same queue, priority, max attempts and flags) as one statement. */
function referenceRetrySql(q: string): string {
  return `with moved as (delete from ${q}.backfill_dlq returning *)
select count(*) from ${q}.add_jobs(array(
  select row(task_identifier, payload::json, case when queue_name in ('', 'default') then null else queue_name end, now(),
             greatest(1, least(32767, coalesce(max_attempts, ${DEFAULT_MAX_ATTEMPTS})))::smallint, job_key,
             greatest(-32768, least(32767, priority))::smallint,
             case when priority >= 0 then array['${BULK_FLAG}'] end)::${q}.job_spec
  from moved))`
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const started = performance.now()
  await fn()
  return performance.now() - started
}

export const suite: BenchSuite = {
  name: 'dlq',
  issue: 5,
  description:
    "DLQ of 100k and 1M entries (quick: 20k): list first page and stats through the CLI and in library (stats from the trigger-kept group counts vs the same stats scanning every entry, identical result checked), the triggers' cost on capture and on a bulk insert (with vs without them), retry --all and purge --all through the CLI vs one hand-written SQL statement doing the same move/delete on identical data.",
  async run(ctx: BenchContext): Promise<Metric[]> {
    if (!existsSync(path.join(ROOT, 'dist', 'commands')))
      throw new Error('build first: npm run build (the benchmark runs the CLI binary)')
    const q = quoteIdent(SCHEMA)
    const admin = new pg.Pool({connectionString: ctx.url, max: 2})
    const db = Database.connect({
      target: targetFromUrl(ctx.url, 'flag-or-env'),
      schema: parseSchemaName(SCHEMA),
      max: 4,
    })
    const env = {...process.env, DATABASE_URL: ctx.url, GRAPHILE_WORKER_SCHEMA: SCHEMA, NO_COLOR: '1'}
    const cli = async (args: string[]): Promise<TimedRun> => {
      const run = await timedRun(process.execPath, [BIN, ...args], {env})
      if (run.code !== 0) throw new Error(`backfill ${args.join(' ')} exited ${run.code}: ${run.stderr.slice(0, 500)}`)
      return run
    }
    // Generated once per size into a template table, then copied: identical data every round,
    // and a copy costs about two thirds of generating it again.
    // Two templates per size: as our capture writes entries (with stored fingerprints, the
    // batched backfill of migrate gives the generated rows theirs) and as the Rust crate
    // writes them (none: stats then fingerprints every distinct error line, as before schema 4).
    let templateSize = 0
    let backfillMs = 0
    let lastInsertMs = 0
    const setTriggers = async (on: boolean): Promise<void> => {
      for (const name of GROUP_COUNTS_TRIGGERS)
        await admin.query(`alter table ${q}.backfill_dlq ${on ? 'enable' : 'disable'} trigger ${name}`)
      // Back on: the counts missed what happened meanwhile; init-dlq recounts them.
      if (on) await initDlq(db)
    }
    const refill = async (n: number, fingerprints = true): Promise<void> => {
      await admin.query(
        `truncate ${q}.backfill_dlq, ${q}.backfill_dlq_events, ${q}.backfill_dlq_retried_jobs, ${q}.backfill_dlq_audit`,
      )
      await admin.query(`truncate ${q}._private_jobs`)
      if (templateSize !== n) {
        await admin.query(`drop table if exists ${q}.bench_dlq_template`)
        await admin.query(`drop table if exists ${q}.bench_dlq_template_raw`)
        await admin.query(fillSql(q, n))
        await admin.query(`create table ${q}.bench_dlq_template_raw as select * from ${q}.backfill_dlq`)
        backfillMs = (await backfillFingerprints(db)).durationMs
        await admin.query(`create table ${q}.bench_dlq_template as select * from ${q}.backfill_dlq`)
        templateSize = n
        if (!fingerprints) {
          await admin.query(`truncate ${q}.backfill_dlq`)
          await admin.query(`insert into ${q}.backfill_dlq select * from ${q}.bench_dlq_template_raw`)
        }
      } else {
        lastInsertMs = await timed(() =>
          admin.query(
            `insert into ${q}.backfill_dlq select * from ${q}.${fingerprints ? 'bench_dlq_template' : 'bench_dlq_template_raw'}`,
          ),
        )
      }
      await admin.query(`vacuum analyze ${q}.backfill_dlq`)
      await admin.query(`vacuum analyze ${q}._private_jobs`)
    }
    const metrics: Metric[] = []
    try {
      await migrate(db)
      // BENCH_DLQ_SIZES=100000 runs only the sizes listed (e.g. a re-run of the 100k figures).
      const sizes = process.env.BENCH_DLQ_SIZES
        ? process.env.BENCH_DLQ_SIZES.split(',').map(Number)
        : ctx.quick
          ? [20_000]
          : [100_000, 1_000_000]
      for (const n of sizes) {
        const label = n >= 1_000_000 ? `${n / 1_000_000}M` : `${n / 1000}k`
        ctx.log(`filling a DLQ of ${n} entries`)
        await refill(n)
        // Reads: list first page and stats (from the group counts, and scanning every entry).
        const listCli: number[] = []
        const listLib: number[] = []
        const statsCli: number[] = []
        const statsLib: number[] = []
        const statsScan: number[] = []
        let listRss = 0
        let statsRss = 0
        const statsVia = async (source: 'auto' | 'scan', into: number[]): Promise<string> => {
          let used: StatsSource | undefined
          const started = performance.now()
          const stats = await dlqStats(db, {selector: {}, source, onSource: (s) => (used = s)})
          into.push(performance.now() - started)
          if (used !== (source === 'auto' ? 'group-counts' : 'scan')) throw new Error(`dlq stats counted by ${used}`)
          return JSON.stringify({...stats, durationMs: 0})
        }
        for (let round = 0; round < ctx.rounds; round++) {
          const list = await cli(['dlq', 'list', '--limit', '50', '--json'])
          listCli.push(list.ms)
          listRss = Math.max(listRss, list.peakRssMb ?? 0)
          listLib.push(await timed(() => listDlq(db, {selector: {limit: 50}})))
          const stats = await cli(['dlq', 'stats', '--json'])
          statsCli.push(stats.ms)
          statsRss = Math.max(statsRss, stats.peakRssMb ?? 0)
          // Alternating which goes first (caches, the machine's load).
          const [a, b] =
            round % 2 === 0
              ? [await statsVia('auto', statsLib), await statsVia('scan', statsScan)]
              : [await statsVia('scan', statsScan), await statsVia('auto', statsLib)].reverse()
          if (a !== b) throw new Error('dlq stats differ between the group counts and the scan')
        }
        const median = (v: number[]): number => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)] as number
        metrics.push({
          name: `dlq stats, ${label} entries (in library)`,
          unit: 'ms',
          higherIsBetter: false,
          referenceName: 'the same stats scanning every entry (idx_backfill_dlq_fingerprint_seen, index-only)',
          ...(n >= 1_000_000 ? {target: {kind: 'max' as const, value: 300}} : {}),
          sample: {ours: statsLib, reference: statsScan},
          notes: [
            'groups from backfill_dlq_group_counts, first/last entry one index probe each, samples read by id',
            'identical result checked every round',
          ],
        })

        // What the triggers cost writers: the bulk insert refill() times, and a capture of
        // exhausted jobs (batches of the default size), with the triggers on and off.
        const insertOn: number[] = []
        const insertOff: number[] = []
        const captureOn: number[] = []
        const captureOff: number[] = []
        const jobs = ctx.quick ? 5000 : 20_000
        const exhaustSql = `select count(*) from ${q}.add_jobs(array(
  select row('task_' || (i % 20), json_build_object('i', i), null, now(), 3::smallint, null, 0::smallint, null)::${q}.job_spec
  from generate_series(1, ${jobs}) i));
update ${q}._private_jobs set attempts = max_attempts, last_error = 'SMTP 421 temporary failure for user ' || (id % 977)`
        for (let round = 0; round < ctx.rounds; round++) {
          for (const on of round % 2 === 0 ? [true, false] : [false, true]) {
            if (!on) await setTriggers(false)
            await refill(n)
            ;(on ? insertOn : insertOff).push(lastInsertMs)
            await admin.query(exhaustSql)
            await admin.query(`vacuum analyze ${q}._private_jobs`)
            const captured = await captureExhausted(db)
            if (captured.captured !== jobs) throw new Error(`capture moved ${captured.captured} of ${jobs}`)
            ;(on ? captureOn : captureOff).push(captured.durationMs)
            if (!on) await setTriggers(true)
          }
        }
        await refill(n)
        metrics.push({
          name: `capture of ${jobs / 1000}k exhausted jobs into a DLQ of ${label} (in library)`,
          unit: 'ms',
          higherIsBetter: false,
          referenceName: 'the same capture with the group-count triggers disabled',
          sample: {ours: captureOn, reference: captureOff},
          notes: [`${(jobs / (median(captureOn) / 1000)).toFixed(0)} jobs/s with the triggers`],
        })
        metrics.push({
          name: `bulk insert of ${label} fingerprinted entries, one statement`,
          unit: 'ms',
          higherIsBetter: false,
          referenceName: 'the same insert with the group-count triggers disabled',
          sample: {ours: insertOn, reference: insertOff},
          notes: ['insert … select from a copy; the trigger upserts the counts once for the statement'],
        })
        metrics.push({
          name: `fingerprint backfill of ${label} entries (migrate / init-dlq, once)`,
          unit: 'ms',
          higherIsBetter: false,
          sample: {ours: [backfillMs]},
          notes: ['batches of 5000: lock, fingerprint here, update', 'one run'],
        })
        metrics.push({
          name: `dlq list first page, ${label} entries (in library)`,
          unit: 'ms',
          higherIsBetter: false,
          ...(n >= 1_000_000 ? {target: {kind: 'max' as const, value: 100}} : {}),
          sample: {ours: listLib},
          notes: [`keyset page + uncaptured-jobs check`],
        })
        metrics.push({
          name: `dlq list first page, ${label} entries (CLI)`,
          unit: 'ms',
          higherIsBetter: false,
          sample: {ours: listCli},
          notes: [`includes process start-up`, `peak RSS ${listRss.toFixed(0)} MB`],
        })
        metrics.push({
          name: `dlq stats, ${label} entries (CLI)`,
          unit: 'ms',
          higherIsBetter: false,
          sample: {ours: statsCli},
          notes: [
            `includes process start-up`,
            `peak RSS ${statsRss.toFixed(0)} MB`,
            '20 tasks, ~19.5k distinct error lines, 20 groups',
          ],
        })

        if (process.env.BENCH_DLQ_READS_ONLY === '1') continue
        // Writes: retry and purge through the CLI, each against its single-statement reference on
        // identical data; the in-library time is the durationMs the command reports.
        const retryCli: number[] = []
        const retryLib: number[] = []
        const retryRef: number[] = []
        const purgeCli: number[] = []
        const purgeLib: number[] = []
        const purgeRef: number[] = []
        let retryRss = 0
        let purgeRss = 0
        for (let round = 0; round < ctx.rounds; round++) {
          await refill(n)
          const retry = await cli(['dlq', 'retry', '--all', '--yes', '--json'])
          const retried = JSON.parse(retry.stdout) as {retried: number; durationMs: number}
          if (retried.retried !== n) throw new Error(`dlq retry moved ${retried.retried} of ${n}`)
          retryCli.push(retry.ms)
          retryLib.push(retried.durationMs)
          retryRss = Math.max(retryRss, retry.peakRssMb ?? 0)
          await refill(n)
          retryRef.push(await timed(() => admin.query(referenceRetrySql(q))))

          await refill(n)
          const purge = await cli(['dlq', 'purge', '--all', '--yes', '--json'])
          const purged = JSON.parse(purge.stdout) as {purged: number; durationMs: number}
          if (purged.purged !== n) throw new Error(`dlq purge deleted ${purged.purged} of ${n}`)
          purgeCli.push(purge.ms)
          purgeLib.push(purged.durationMs)
          purgeRss = Math.max(purgeRss, purge.peakRssMb ?? 0)
          await refill(n)
          purgeRef.push(await timed(() => admin.query(`delete from ${q}.backfill_dlq`)))
        }
        const retryRef0 = 'one statement: delete … returning → add_jobs()'
        metrics.push({
          name: `dlq retry --all, ${label} entries (in library)`,
          unit: 'ms',
          higherIsBetter: false,
          referenceName: retryRef0,
          target: {kind: 'ratio-max', value: 2},
          sample: {ours: retryLib, reference: retryRef},
          notes: [
            `${(n / (median(retryLib) / 1000)).toFixed(0)} entries/s`,
            'batches of 5000: lock, move, audit and lineage in one statement each',
          ],
        })
        metrics.push({
          name: `dlq retry --all, ${label} entries (CLI)`,
          unit: 'ms',
          higherIsBetter: false,
          referenceName: retryRef0,
          sample: {ours: retryCli, reference: retryRef},
          notes: ['includes process start-up, schema check and count', `peak RSS ${retryRss.toFixed(0)} MB`],
        })
        metrics.push({
          name: `dlq purge --all, ${label} entries (in library)`,
          unit: 'ms',
          higherIsBetter: false,
          referenceName: 'one statement: delete from backfill_dlq',
          target: {kind: 'ratio-max', value: 2},
          sample: {ours: purgeLib, reference: purgeRef},
          notes: [
            'batches by heap page range sized by time (from ~10000 rows, growing while under 50 ms, ≤ 200 ms each), audit row each',
          ],
        })
        metrics.push({
          name: `dlq purge --all, ${label} entries (CLI)`,
          unit: 'ms',
          higherIsBetter: false,
          referenceName: 'one statement: delete from backfill_dlq',
          sample: {ours: purgeCli, reference: purgeRef},
          notes: ['includes process start-up, schema check and count', `peak RSS ${purgeRss.toFixed(0)} MB`],
        })
      }
    } finally {
      await admin.query(`drop schema if exists ${q} cascade`).catch(() => undefined)
      await admin.end()
      await db.end()
    }
    return metrics
  },
}
