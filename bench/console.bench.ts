/**
 * Issue 15: the web console's API at 1,000,000 jobs and 1,000,000 DLQ entries (quick mode:
 * 100,000 and 20,000; BENCH_CONSOLE_JOBS / BENCH_CONSOLE_DLQ override). Each page's API call
 * through HTTP against the real `backfill ui` process (its shared cache off, so every request
 * queries) side by side with the same library call in process; the server's peak RSS; and what
 * 20 browser tabs refreshing the overview cost the database compared with 2 (transactions
 * counted by pg_stat_database, the default 2 s shared cache on).
 */
import {spawn, type ChildProcess} from 'node:child_process'
import {existsSync, readFileSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import pg from 'pg'

import {targetFromUrl} from '../src/lib/connection.js'
import * as ops from '../src/lib/console/operations.js'
import {Database, opsSessionLimits} from '../src/lib/db.js'
import {backfillFingerprints} from '../src/lib/dlq/fingerprint-store.js'
import {parseSchemaName, quoteIdent} from '../src/lib/identifiers.js'
import {migrate} from '../src/lib/schema/migrate.js'
import {timeIt} from './lib/stats.js'
import {browserMissing, launchBrowser} from '../test/support/browser.js'
import type {BenchContext, BenchSuite, Metric} from './lib/types.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const BIN = path.join(ROOT, 'bin', 'run.js')
const SCHEMA = 'bench_console'

async function populate(admin: pg.Pool, jobs: number, dlq: number): Promise<void> {
  const s = quoteIdent(SCHEMA)
  await admin.query(`insert into ${s}._private_tasks (identifier) select 'task_' || i from generate_series(1, 20) i`)
  await admin.query(
    `insert into ${s}._private_job_queues (queue_name) select 'user:' || i from generate_series(1, 2000) i`,
  )
  await admin.query(
    `insert into ${s}._private_jobs (task_id, job_queue_id, payload, run_at, attempts, max_attempts, last_error)
     select (i % 20) + 1, case when i % 10 = 0 then (i / 10) % 2000 + 1 end, json_build_object('id', i),
            case when i % 20 = 1 then now() + interval '1 hour' else now() - (i % 3600) * interval '1 second' end,
            case when i % 200 = 3 then 8 when i % 50 = 7 then 2 else 0 end, 8,
            case when i % 200 = 3 or i % 50 = 7 then 'boom ' || (i % 97) end
     from generate_series(1, $1::int) i`,
    [jobs],
  )
  await admin.query(
    `update ${s}._private_jobs set locked_by = 'pool-' || lpad(to_hex(id % 8), 18, '0'), locked_at = now() - (id % 600) * interval '1 second'
     where id in (select id from ${s}._private_jobs where attempts < max_attempts order by id desc limit 1000)`,
  )
  await admin.query(
    `insert into ${s}.backfill_dlq (original_job_id, task_identifier, payload, queue_name, priority, job_key, max_attempts, failure_reason, last_error, original_created_at, original_run_at, failed_at)
     select i, 'task_' || (i % 20), jsonb_build_object('i', i, 'body', repeat('x', 100)),
            case when i % 10 = 0 then 'serial_' || (i % 50) else '' end, 0, case when i % 4 = 0 then 'key-' || i end, 8,
            'Job exceeded maximum retry attempts (8/8)', to_jsonb('SMTP 421 temporary failure for user ' || (i % 977)),
            now() - interval '2 days', now() - interval '1 day', now() - make_interval(secs => i)
     from generate_series(1, $1::int) i`,
    [dlq],
  )
  await admin.query(`vacuum analyze ${s}._private_jobs`)
  await admin.query(`vacuum analyze ${s}.backfill_dlq`)
  // No autovacuum/analyze scans in the middle of the measurements.
  for (const table of ['_private_jobs', '_private_job_queues', '_private_tasks', 'backfill_dlq'])
    await admin.query(`alter table ${s}.${table} set (autovacuum_enabled = false)`)
}

interface Ui {
  child: ChildProcess
  origin: string
  stop: () => Promise<void>
}

async function startUi(url: string, args: string[]): Promise<Ui> {
  const child = spawn(process.execPath, [BIN, 'ui', '--port', '0', '--schema', SCHEMA, ...args], {
    env: {...process.env, DATABASE_URL: url, NO_COLOR: '1'},
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stderr = ''
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-4000)))
  const origin = await new Promise<string>((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => reject(new Error(`backfill ui printed no URL: ${stderr}`)), 60_000)
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d
      const match = /^(http:\/\/\S+?)\/?$/m.exec(out)
      if (match) {
        clearTimeout(timer)
        resolve(match[1] as string)
      }
    })
    child.on('exit', (code) => reject(new Error(`backfill ui exited ${code}: ${stderr}`)))
  })
  return {
    child,
    origin,
    stop: () =>
      new Promise((resolve) => {
        child.once('exit', () => resolve())
        child.kill('SIGTERM')
      }),
  }
}

/** Peak resident set of a process (VmHWM), in MB. */
function peakRssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0)
  return kb / 1024
}

/** Table and index scans of the schema's tables so far (what the console's queries did). */
async function scans(admin: pg.Pool): Promise<number> {
  const {rows} = await admin.query<{n: string}>(
    `select sum(seq_scan + coalesce(idx_scan, 0))::text as n from pg_stat_user_tables where schemaname = $1`,
    [SCHEMA],
  )
  return Number(rows[0]?.n ?? 0)
}

/** Idle backends report their statistics within PGSTAT_IDLE_INTERVAL (10 s). */
const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 11_000))

/**
 * n clients each loading the overview every second for `seconds`; the table scans it cost.
 * Every run starts on a cache-window boundary and issues its last request before the same
 * deadline, so runs of any size span the same windows (else one run's extra window would be
 * counted as the cost of its extra tabs).
 */
async function tabs(admin: pg.Pool, origin: string, clients: number, seconds: number): Promise<number> {
  await settle()
  const before = await scans(admin)
  const window = 2000 // backfill ui's default --cache-ttl
  await new Promise((r) => setTimeout(r, window - (Date.now() % window) + 50))
  const deadline = Date.now() + seconds * 1000 - 100
  await Promise.all(
    Array.from({length: clients}, async (_, c) => {
      await new Promise((r) => setTimeout(r, (c * 1000) / clients))
      while (Date.now() < deadline) {
        const started = Date.now()
        const res = await fetch(`${origin}/api/v1/overview`)
        await res.arrayBuffer()
        await new Promise((r) => setTimeout(r, Math.max(0, 1000 - (Date.now() - started))))
      }
    }),
  )
  await settle()
  return (await scans(admin)) - before
}

/**
 * First contentful paint of each page in Debian's Chromium (playwright-core, the system
 * binary, as the browser tests use it), one fresh page per load, `rounds` loads per page.
 */
async function firstPaints(
  ctx: BenchContext,
  origin: string,
  pages: [string, string][],
): Promise<Map<string, number[]>> {
  const result = new Map<string, number[]>()
  const missing = browserMissing()
  if (missing) {
    ctx.log(`first paint not measured: ${missing}`)
    return result
  }
  const browser = await launchBrowser()
  try {
    // The browser's first navigation pays its own start-up: not a page's cost.
    const warm = await browser.context.newPage()
    await warm.goto(`${origin}/schema`, {waitUntil: 'load'})
    await warm.close()
    for (let round = 0; round < ctx.rounds; round++) {
      for (const [name, path] of pages) {
        const page = await browser.context.newPage()
        try {
          const response = await page.goto(`${origin}${path}`, {waitUntil: 'load'})
          if (response?.status() !== 200) throw new Error(`${path}: HTTP ${response?.status()}`)
          // Paint entries can arrive after `load`: wait for one (buffered), 10 s at most.
          const fcp = await page.evaluate(
            () =>
              new Promise<number>((resolve) => {
                const timer = setTimeout(() => resolve(Number.NaN), 10_000)
                new PerformanceObserver((list) => {
                  const entry = list.getEntriesByName('first-contentful-paint')[0]
                  if (entry) {
                    clearTimeout(timer)
                    resolve(entry.startTime)
                  }
                }).observe({type: 'paint' as never, buffered: true}) // a browser entry type Node's typings lack
              }),
          )
          if (!Number.isFinite(fcp)) throw new Error(`${path}: no first-contentful-paint entry`)
          result.set(name, [...(result.get(name) ?? []), fcp])
          ctx.log(`round ${round + 1} first paint ${name}: ${fcp.toFixed(0)} ms`)
        } finally {
          await page.close()
        }
      }
    }
  } finally {
    await browser.close()
  }
  return result
}

export const suite: BenchSuite = {
  name: 'console',
  issue: 15,
  description:
    "backfill ui's admin API on 1M jobs and 1M DLQ entries (quick: 100k / 20k): each page's API call over HTTP against the real `backfill ui` process (shared cache off) vs the same library call in process; first paint of each page in headless Chromium (Debian's chromium); the server's peak RSS; database work (table and index scans) of 20 tabs refreshing the overview every second vs 2 tabs (default 2 s shared cache).",
  async run(ctx: BenchContext): Promise<Metric[]> {
    if (!existsSync(path.join(ROOT, 'dist', 'commands', 'ui.js')))
      throw new Error('build first: npm run build (the benchmark runs the CLI binary)')
    const jobs = Number(process.env.BENCH_CONSOLE_JOBS ?? (ctx.quick ? 100_000 : 1_000_000))
    const dlq = Number(process.env.BENCH_CONSOLE_DLQ ?? (ctx.quick ? 20_000 : 1_000_000))
    const size = (n: number): string => (n >= 1_000_000 ? `${n / 1_000_000}M` : `${n / 1000}k`)
    const admin = new pg.Pool({connectionString: ctx.url, max: 2})
    const db = Database.connect({
      target: targetFromUrl(ctx.url, 'flag-or-env'),
      schema: parseSchemaName(SCHEMA),
      max: 5,
      limits: opsSessionLimits(),
    })
    const metrics: Metric[] = []
    let ui: Ui | undefined
    try {
      await migrate(db)
      ctx.log(`populating ${jobs} jobs and ${dlq} DLQ entries`)
      await populate(admin, jobs, dlq)
      ctx.log('fingerprinting the DLQ (as migrate does for entries the Rust crate wrote)')
      await backfillFingerprints(db)
      await admin.query(`vacuum analyze ${quoteIdent(SCHEMA)}.backfill_dlq`)
      const s = quoteIdent(SCHEMA)
      const jobId = (await admin.query<{id: string}>(`select max(id)::text as id from ${s}._private_jobs`)).rows[0]!.id
      const entryId = (await admin.query<{id: string}>(`select max(id)::text as id from ${s}.backfill_dlq`)).rows[0]!.id
      const where = `${size(jobs)} jobs, ${size(dlq)} DLQ entries`
      const routes: [string, string, () => Promise<unknown>][] = [
        ['overview', '/api/v1/overview', () => ops.overview(db)],
        ['jobs list, first page', '/api/v1/jobs', () => ops.jobsList(db, {selector: {}, sort: 'newest'})],
        [
          'jobs list, --state retrying',
          '/api/v1/jobs?state=retrying',
          () => ops.jobsList(db, {selector: {states: ['retrying']}, sort: 'newest'}),
        ],
        ['job detail', `/api/v1/jobs/${jobId}`, () => ops.jobShow(db, {id: jobId})],
        ['DLQ failure groups', '/api/v1/dlq/groups', () => ops.dlqGroups(db, {})],
        ['DLQ list, first page', '/api/v1/dlq', () => ops.dlqList(db, {selector: {}})],
        ['DLQ entry', `/api/v1/dlq/${entryId}`, () => ops.dlqShow(db, entryId)],
        ['DLQ history', '/api/v1/dlq/history', () => ops.dlqAudit(db, {})],
        ['locks', '/api/v1/locks', () => ops.locks(db, {})],
        ['schema doctor', '/api/v1/schema', () => ops.schema(db)],
      ]
      ui = await startUi(ctx.url, ['--cache-ttl', '0s'])
      const server = ui
      const samples = new Map<string, {http: number[]; lib: number[]}>()
      for (let round = 0; round < ctx.rounds; round++) {
        for (const [name, path, call] of routes) {
          const lib = await timeIt(call)
          const http = await timeIt(async () => {
            const res = await fetch(`${server.origin}${path}`)
            const body = await res.arrayBuffer()
            if (res.status !== 200) throw new Error(`${path}: ${res.status} ${Buffer.from(body).toString('utf8')}`)
          })
          const sample = samples.get(name) ?? {http: [], lib: []}
          sample.http.push(http)
          sample.lib.push(lib)
          samples.set(name, sample)
          ctx.log(`round ${round + 1} ${name}: HTTP ${http.toFixed(1)} ms, library ${lib.toFixed(1)} ms`)
        }
      }
      for (const [name, sample] of samples)
        metrics.push({
          name: `${name} over HTTP, ${where}`,
          unit: 'ms',
          referenceName: 'the same library call in process',
          higherIsBetter: false,
          target: {kind: 'max', value: 500},
          sample: {ours: sample.http, reference: sample.lib},
        })
      const paints = await firstPaints(ctx, server.origin, [
        ['overview', '/'],
        ['jobs', '/jobs'],
        ['job detail', `/jobs/${jobId}`],
        ['DLQ failure groups', '/dlq'],
        ['DLQ entries', '/dlq/entries'],
        ['DLQ entry', `/dlq/${entryId}`],
        ['history', '/history'],
        ['locks', '/locks'],
        ['schema', '/schema'],
      ])
      for (const [name, times] of paints)
        metrics.push({
          name: `first paint of the ${name} page in headless Chromium, ${where}`,
          unit: 'ms',
          higherIsBetter: false,
          target: {kind: 'max', value: 1000},
          sample: {ours: times},
          notes: ['navigation start to first contentful paint (shared cache off: every load queries)'],
        })
      const rss = peakRssMb(server.child.pid!)
      metrics.push({
        name: `backfill ui peak RSS after every route, ${where}`,
        unit: 'MB',
        higherIsBetter: false,
        target: {kind: 'max', value: 150},
        sample: {ours: [rss]},
        notes: ['VmHWM of the server process'],
      })
      await ui.stop()
      ui = await startUi(ctx.url, [])
      const seconds = ctx.quick ? 5 : 10
      const twenty: number[] = []
      const two: number[] = []
      for (let round = 0; round < ctx.rounds; round++) {
        twenty.push(await tabs(admin, ui.origin, 20, seconds))
        two.push(await tabs(admin, ui.origin, 2, seconds))
        ctx.log(`round ${round + 1}: 20 tabs ${twenty.at(-1)} table scans, 2 tabs ${two.at(-1)}`)
      }
      metrics.push({
        name: `database work of 20 tabs refreshing the overview every second for ${seconds} s`,
        unit: 'scans',
        referenceName: '2 tabs doing the same',
        higherIsBetter: false,
        target: {kind: 'ratio-max', value: 1.0},
        sample: {ours: twenty, reference: two},
        notes: [
          "default 2 s shared cache (single flight); table + index scans of the schema's tables (pg_stat_user_tables)",
        ],
      })
    } finally {
      await ui?.stop()
      await db.end()
      await admin.end()
    }
    return metrics
  },
}
