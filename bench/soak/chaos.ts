/**
 * Chaos soak: several `backfill worker` processes on one database while workers are killed
 * with SIGKILL, PostgreSQL restarts, and `locks clean` / `dlq retry` run from other
 * processes. Afterwards every logical job must be in exactly one place (completed, in the
 * DLQ, or still queued), duplicates must be explained by a worker that died while running
 * them, and no lock may be left behind.
 */
import {type ChildProcess, spawn} from 'node:child_process'
import {existsSync, mkdtempSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import pg from 'pg'

import {EmbeddedPostgres} from '../../src/lib/embedded/postgres.js'
import {sleep} from '../../src/lib/sleep.js'

const here = path.dirname(fileURLToPath(import.meta.url))
const ROOT = path.resolve(here, '../..')
const BIN = path.join(ROOT, 'bin', 'run.js')
const TASKS = path.join(here, 'tasks')
const SCHEMA = 'soak'
const LEDGER = `"${SCHEMA}".soak_ledger`

export interface SoakOptions {
  jobs: number
  workers: number
  concurrency: number
  /** SIGKILL a random worker this many times, spread over the run. */
  kills: number
  restartPostgres: boolean
  /** Run `locks clean --yes` and `dlq retry --yes` from other processes. */
  operators: boolean
  timeoutMs: number
  log: (message: string) => void
}

export interface SoakReport {
  jobs: number
  completed: number
  inDlq: number
  stillQueued: number
  missing: number[]
  /** Logical jobs completed more than once. */
  duplicates: number
  duplicatesExplained: {killed: number; crashed: number}
  unexplainedDuplicates: number[]
  /** Jobs both completed and sitting in the DLQ or queue. */
  inTwoPlaces: number[]
  kills: number
  crashes: number
  postgresRestarts: number
  locksCleanRuns: number
  dlqRetryRuns: number
  dlqRetried: number
  lockedAtEnd: number
  queueLocksAtEnd: number
  cleanExits: number
  uncleanExits: {pid: number; code: number | null; signal: string | null}[]
  seconds: number
  jobsPerSecond: number
  ok: boolean
  problems: string[]
  /** Who held the locks when the run timed out or ended with locks left (see lockDiagnostics). */
  diagnostics: string[]
}

interface WorkerRecord {
  pid: number
  child: ChildProcess
  startedAt: number
  exit: Promise<{code: number | null; signal: NodeJS.Signals | null}>
  killedAt?: number
  intentional?: boolean
  /** Set once the process has exited. */
  exited?: {code: number | null; signal: NodeJS.Signals | null}
  output: string
  /** Its last lines other than per-job ones (errors, pool and shutdown lines), for diagnostics. */
  notes: string[]
}

export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  const started = Date.now()
  const dir = mkdtempSync(path.join(existsShm() ? '/dev/shm' : os.tmpdir(), 'bfsoak-'))
  const server = new EmbeddedPostgres({dir, ephemeral: true, settings: {max_connections: 300}})
  await server.start()
  const url = server.url
  const env = {...process.env, DATABASE_URL: url, GRAPHILE_WORKER_SCHEMA: SCHEMA, LEDGER_TABLE: LEDGER, NO_COLOR: '1'}
  const problems: string[] = []
  const all: WorkerRecord[] = []
  const live = new Set<WorkerRecord>()
  let stopping = false
  let crashes = 0
  let kills = 0
  let locksCleanRuns = 0
  let dlqRetryRuns = 0
  let dlqRetried = 0
  let postgresRestarts = 0
  let pgDownUntil = 0
  const diagnostics: string[] = []

  const cli = (args: string[]): Promise<{code: number | null; stdout: string; stderr: string}> =>
    new Promise((resolve) => {
      const child = spawn(process.execPath, [BIN, ...args], {env, cwd: ROOT})
      let stdout = ''
      let stderr = ''
      child.stdout.on('data', (d: Buffer) => (stdout += d))
      child.stderr.on('data', (d: Buffer) => (stderr += d))
      child.on('close', (code) => resolve({code, stdout, stderr}))
    })

  const startWorker = (): WorkerRecord => {
    const child = spawn(
      process.execPath,
      [
        BIN,
        'worker',
        '--tasks',
        TASKS,
        '--concurrency',
        String(options.concurrency),
        '--dlq-interval',
        '2',
        '--heartbeat-interval',
        '1',
        '--log-level',
        'warn',
        '--shutdown-timeout',
        '20',
      ],
      {env, cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe']},
    )
    const record: WorkerRecord = {
      pid: child.pid as number,
      child,
      startedAt: Date.now(),
      output: '',
      notes: [],
      exit: new Promise((resolve) => child.on('exit', (code, signal) => resolve({code, signal}))),
    }
    let partial = ''
    const onData = (d: Buffer): void => {
      record.output = (record.output + d.toString()).slice(-4000)
      const lines = (partial + d.toString()).split('\n')
      partial = lines.pop() ?? ''
      // Per-job lines ("soak#123 failed after ...") drown what matters here.
      record.notes.push(...lines.filter((line) => line.trim() !== '' && !/ soak#\d+ /.test(line)))
      if (record.notes.length > 40) record.notes.splice(0, record.notes.length - 40)
    }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', onData)
    all.push(record)
    live.add(record)
    void record.exit.then(({code, signal}) => {
      record.exited = {code, signal}
      live.delete(record)
      if (stopping || record.intentional) return
      crashes += 1
      const said = record.notes.slice(-3).join(' | ').slice(0, 600)
      options.log(
        `worker ${record.pid} exited on its own (code ${code}, signal ${signal}); restarting. Last output: ${said}`,
      )
      setTimeout(() => !stopping && startWorker(), 500)
    })
    return record
  }

  const admin = new pg.Pool({connectionString: url, max: 3})
  admin.on('error', () => undefined)
  const q = async <R extends pg.QueryResultRow>(text: string, params: unknown[] = []): Promise<R[]> =>
    (await admin.query<R>(text, params)).rows

  try {
    const migrated = await cli(['migrate', '--quiet'])
    if (migrated.code !== 0) throw new Error(`migrate failed: ${migrated.stderr}`)
    await q(
      `create table ${LEDGER} (i int not null, job_id bigint not null, attempt int not null, pid int not null, started_at timestamptz not null default clock_timestamp(), done_at timestamptz)`,
    )
    await q(`create index on ${LEDGER} (job_id, attempt, pid)`)
    await q(`create index on ${LEDGER} (i)`)
    // 5% fail until their last attempt, 1% fail permanently, 3% in one of 20 serial queues.
    for (let offset = 0; offset < options.jobs; offset += 20_000) {
      const n = Math.min(20_000, options.jobs - offset)
      await q(
        `select 1 from "${SCHEMA}".add_jobs(array(
           select row('soak',
             json_build_object('i', i, 'ms', 6, 'mode', case when i % 100 = 7 then 'permanent' when i % 20 = 3 then 'flaky' else 'ok' end),
             case when i % 33 = 5 then 'serial:' || (i % 20) end, null,
             case when i % 20 = 3 then 3 else 8 end, null, 0, array['backfill:bulk'])::"${SCHEMA}".job_spec
           from generate_series($1::int, $2::int) i))`,
        [offset + 1, offset + n],
      )
    }
    await q(`analyze "${SCHEMA}"._private_jobs`)
    options.log(`${options.jobs} jobs enqueued; starting ${options.workers} workers`)
    for (let i = 0; i < options.workers; i++) startWorker()

    const remaining = async (): Promise<number> => {
      try {
        const [row] = await q<{n: number}>(`select count(*)::int as n from "${SCHEMA}"._private_jobs`)
        return row?.n ?? -1
      } catch {
        return -1
      }
    }

    // Chaos schedule, spread over the expected run.
    const killEvery = Math.max(1500, Math.floor((options.jobs / 2000) * 1000) / Math.max(1, options.kills))
    let nextKill = Date.now() + killEvery
    let restartAt = options.restartPostgres ? Date.now() + Math.max(3000, killEvery * 1.5) : Number.POSITIVE_INFINITY
    let nextOps = Date.now() + 2500
    let nextRetry = Date.now() + 2000
    const deadline = Date.now() + options.timeoutMs
    let quietSince = 0
    for (;;) {
      await sleep(250)
      const now = Date.now()
      if (now > deadline) {
        problems.push(`timed out after ${options.timeoutMs} ms with ${await remaining()} jobs left`)
        // Before the final SIGTERM changes anything: who holds what, and what those workers said last.
        diagnostics.push(...(await lockDiagnostics(q, all)))
        for (const line of diagnostics) options.log(line)
        break
      }
      if (kills < options.kills && now >= nextKill && live.size > 0) {
        const victims = [...live].filter((w) => now - w.startedAt > 1000)
        const victim = victims[Math.floor(Math.random() * victims.length)]
        if (victim) {
          victim.intentional = true
          victim.killedAt = now
          process.kill(victim.pid, 'SIGKILL')
          kills += 1
          options.log(`SIGKILL worker ${victim.pid} (${kills}/${options.kills})`)
          setTimeout(() => !stopping && startWorker(), 700)
        }
        nextKill = now + killEvery
      }
      if (now >= restartAt) {
        restartAt = Number.POSITIVE_INFINITY
        options.log('restarting PostgreSQL')
        const down = Date.now()
        await server.stop()
        await sleep(1000)
        await server.start()
        pgDownUntil = Date.now() + 2000
        postgresRestarts += 1
        options.log(`PostgreSQL back after ${Date.now() - down} ms`)
      }
      const chaosOver =
        kills >= options.kills && restartAt === Number.POSITIVE_INFINITY && (!options.operators || dlqRetryRuns >= 2)
      if (options.operators && now >= nextOps && now > pgDownUntil) {
        nextOps = now + 3000
        const clean = await cli(['locks', 'clean', '--yes', '--json'])
        if (clean.code === 0) locksCleanRuns += 1
        else options.log(`locks clean exited ${clean.code}: ${clean.stderr.trim().split('\n')[0]}`)
      }
      // Operators retry the DLQ while the chaos lasts (permanent failures would come back forever).
      if (options.operators && !chaosOver && now >= nextRetry && now > pgDownUntil) {
        nextRetry = now + 2500
        const retry = await cli(['dlq', 'retry', '--all', '--limit', '50', '--yes', '--json'])
        if (retry.code === 0) {
          dlqRetryRuns += 1
          dlqRetried += Number((JSON.parse(retry.stdout) as {retried?: number}).retried ?? 0)
        } else options.log(`dlq retry exited ${retry.code}: ${retry.stderr.trim().split('\n')[0]}`)
      }
      const left = await remaining()
      if (left === 0 && chaosOver) {
        quietSince ||= now
        // Let the last captures and operator retries settle before declaring the end.
        if (now - quietSince > 4000) break
      } else quietSince = 0
    }

    // End: graceful SIGTERM to every live worker; each must exit 0.
    stopping = true
    const finals = [...live]
    for (const w of finals) w.child.kill('SIGTERM')
    const exits = await Promise.all(
      finals.map(async (w) => ({
        w,
        result: await Promise.race([
          w.exit,
          sleep(60_000).then(() => ({code: null, signal: 'TIMEOUT' as NodeJS.Signals})),
        ]),
      })),
    )
    const cleanExits = exits.filter((e) => e.result.code === 0).length
    const uncleanExits = exits
      .filter((e) => e.result.code !== 0)
      .map((e) => ({pid: e.w.pid, code: e.result.code, signal: e.result.signal}))
    for (const e of exits)
      if (e.result.code !== 0) options.log(`worker ${e.w.pid} exit ${e.result.code}: ${e.w.output.slice(-800)}`)
    // Anything captured at shutdown.
    await cli(['dlq', 'capture', '--yes', '--quiet']).catch(() => undefined)

    // Accounting by logical job number i.
    const ids = Array.from({length: options.jobs}, (_, k) => k + 1)
    const completedRows = await q<{i: number; runs: number}>(
      `select i, count(*)::int as runs from ${LEDGER} where done_at is not null group by i`,
    )
    const dlqRows = await q<{i: number}>(`select (payload->>'i')::int as i from "${SCHEMA}".backfill_dlq`)
    const queuedRows = await q<{i: number}>(`select (payload->>'i')::int as i from "${SCHEMA}"._private_jobs`)
    const completed = new Map(completedRows.map((r) => [r.i, r.runs]))
    const inDlq = new Map<number, number>()
    for (const r of dlqRows) inDlq.set(r.i, (inDlq.get(r.i) ?? 0) + 1)
    const queued = new Map<number, number>()
    for (const r of queuedRows) queued.set(r.i, (queued.get(r.i) ?? 0) + 1)
    const missing: number[] = []
    const inTwoPlaces: number[] = []
    for (const i of ids) {
      const places = (completed.has(i) ? 1 : 0) + (inDlq.get(i) ?? 0) + (queued.get(i) ?? 0)
      if (places === 0) missing.push(i)
      else if (places > 1) inTwoPlaces.push(i)
    }

    // A duplicate (or a second place) is explained when every completion the database lost
    // was in a worker that died (SIGKILL, or a worker that stopped itself around the
    // PostgreSQL restart: exited without being asked) before recording it: for a job completed
    // more than once, every completed run but the last; for a completed job still queued or in
    // the DLQ, every completed run. A run lost by a worker that lived on is unexplained.
    const dead = all.filter((w) => w.killedAt !== undefined || (w.intentional !== true && !finals.includes(w)))
    const deadPids = new Map(dead.map((w) => [w.pid, w.killedAt !== undefined ? 'killed' : 'crashed'] as const))
    const suspicious = [...new Set([...completedRows.filter((r) => r.runs > 1).map((r) => r.i), ...inTwoPlaces])]
    const unexplained: number[] = []
    const explained = {killed: 0, crashed: 0}
    if (suspicious.length > 0) {
      const runs = await q<{i: number; pid: number}>(
        `select i, pid from ${LEDGER} where i = any($1::int[]) and done_at is not null order by i, done_at`,
        [suspicious],
      )
      const byJob = new Map<number, number[]>()
      for (const r of runs) byJob.set(r.i, [...(byJob.get(r.i) ?? []), r.pid])
      const twice = new Set(inTwoPlaces)
      for (const i of suspicious) {
        const completedRuns = byJob.get(i) ?? []
        const lost = twice.has(i) ? completedRuns : completedRuns.slice(0, -1)
        const causes = lost.map((pid) => deadPids.get(pid))
        const cause = causes[0]
        if (cause && causes.every(Boolean)) explained[cause] += 1
        else unexplained.push(i)
      }
    }
    const [locks] = await q<{jobs: number; queues: number}>(
      `select (select count(*)::int from "${SCHEMA}"._private_jobs where locked_at is not null) as jobs,
              (select count(*)::int from "${SCHEMA}"._private_job_queues where locked_at is not null) as queues`,
    )
    const duplicates = completedRows.filter((r) => r.runs > 1).length
    if (missing.length > 0) problems.push(`${missing.length} job(s) missing, e.g. ${missing.slice(0, 5).join(', ')}`)
    if (unexplained.length > 0)
      problems.push(`${unexplained.length} unexplained duplicate(s), e.g. ${unexplained.slice(0, 5).join(', ')}`)
    if ((locks?.jobs ?? 0) > 0 || (locks?.queues ?? 0) > 0) {
      problems.push(`locks left: ${locks?.jobs} job, ${locks?.queues} queue`)
      const left = await lockDiagnostics(q, all)
      for (const line of left) options.log(line)
      diagnostics.push('after the final SIGTERM:', ...left)
    }
    if (uncleanExits.length > 0) problems.push(`${uncleanExits.length} worker(s) did not exit 0 on SIGTERM`)
    const seconds = (Date.now() - started) / 1000
    return {
      jobs: options.jobs,
      completed: completed.size,
      inDlq: inDlq.size,
      stillQueued: queued.size,
      missing,
      duplicates,
      duplicatesExplained: explained,
      unexplainedDuplicates: unexplained,
      inTwoPlaces,
      kills,
      crashes,
      postgresRestarts,
      locksCleanRuns,
      dlqRetryRuns,
      dlqRetried,
      lockedAtEnd: locks?.jobs ?? -1,
      queueLocksAtEnd: locks?.queues ?? -1,
      cleanExits,
      uncleanExits,
      seconds,
      jobsPerSecond: options.jobs / seconds,
      ok: problems.length === 0,
      problems,
      diagnostics,
    }
  } finally {
    stopping = true
    for (const w of live) w.child.kill('SIGKILL')
    await admin.end().catch(() => undefined)
    await server.destroy()
  }
}

export function formatReport(report: SoakReport): string {
  return [
    `jobs ${report.jobs}: completed ${report.completed}, in DLQ ${report.inDlq}, still queued ${report.stillQueued}, missing ${report.missing.length}`,
    `duplicates ${report.duplicates} (explained: ${report.duplicatesExplained.killed} by SIGKILLed workers, ${report.duplicatesExplained.crashed} by workers that exited on their own (crashed or stopped themselves) around the PostgreSQL restart; unexplained ${report.unexplainedDuplicates.length}); in two places ${report.inTwoPlaces.length}`,
    `chaos: ${report.kills} SIGKILLs, ${report.crashes} crash(es), ${report.postgresRestarts} PostgreSQL restart(s), ${report.locksCleanRuns} locks clean runs, ${report.dlqRetryRuns} dlq retry runs (${report.dlqRetried} entries retried)`,
    `end: ${report.lockedAtEnd} job locks, ${report.queueLocksAtEnd} queue locks left; ${report.cleanExits} worker(s) exited 0 on SIGTERM, ${report.uncleanExits.length} did not`,
    `${report.seconds.toFixed(1)} s, ${Math.round(report.jobsPerSecond)} jobs/s overall`,
    report.ok ? 'RESULT: ok' : `RESULT: FAILED: ${report.problems.join('; ')}`,
    ...(report.diagnostics.length > 0 ? ['diagnostics:', ...report.diagnostics.map((d) => `  ${d}`)] : []),
  ].join('\n')
}

/**
 * Every lock owner with what is known about it: its locks, its registry row (pid, heartbeat,
 * stopped), whether its presence session is connected, and the worker process behind the pid
 * (alive, killed, exited) with its last output lines. Jobs completed by their handler yet
 * still queued are counted per owner (a lost completion write).
 */
async function lockDiagnostics(
  q: <R extends pg.QueryResultRow>(text: string, params?: unknown[]) => Promise<R[]>,
  workers: readonly WorkerRecord[],
): Promise<string[]> {
  try {
    const owners = await q<{
      owner: string
      jobs: number
      queues: number
      completed: number
      oldest_s: number
      pid: number | null
      heartbeat_s: number | null
      stopped: boolean | null
      sessions: number
    }>(
      `with l as (
         select locked_by as owner, count(*)::int as jobs, 0 as queues,
                count(*) filter (where exists (select 1 from ${LEDGER} g where g.job_id = j.id and g.done_at is not null))::int as completed,
                min(locked_at) as oldest
           from "${SCHEMA}"._private_jobs j where locked_at is not null group by 1
         union all
         select locked_by, 0, count(*)::int, 0, min(locked_at) from "${SCHEMA}"._private_job_queues where locked_at is not null group by 1
       )
       select l.owner, sum(l.jobs)::int as jobs, sum(l.queues)::int as queues, sum(l.completed)::int as completed,
              extract(epoch from now() - min(l.oldest))::int as oldest_s, w.pid,
              extract(epoch from now() - w.last_heartbeat_at)::int as heartbeat_s, w.stopped_at is not null as stopped,
              (select count(*)::int from pg_stat_activity a where a.application_name = 'backfill-worker:' || l.owner) as sessions
         from l left join "${SCHEMA}".backfill_workers w on w.pool_id = l.owner
        group by l.owner, w.pid, w.last_heartbeat_at, w.stopped_at order by 2 desc`,
    )
    if (owners.length === 0) return ['no locks held']
    const lines: string[] = []
    for (const o of owners) {
      const worker = workers.find((w) => w.pid === o.pid)
      const state = !worker
        ? 'not a worker of this soak'
        : worker.exited
          ? `exited (code ${worker.exited.code}, signal ${worker.exited.signal})${worker.killedAt ? ' after SIGKILL' : ''}`
          : 'process alive'
      lines.push(
        `owner ${o.owner}: ${o.jobs} job lock(s) (${o.completed} completed by their handler), ${o.queues} queue lock(s), oldest ${o.oldest_s} s; ` +
          (o.pid === null
            ? 'no registry row'
            : `pid ${o.pid}, heartbeat ${o.heartbeat_s} s ago${o.stopped ? ', stopped' : ''}, ${o.sessions} presence session(s); ${state}`),
      )
      if (worker) {
        const last = worker.output.trimEnd().split('\n').at(-1) ?? ''
        const tail = [...worker.notes.slice(-12), ...(worker.notes.at(-1) === last ? [] : [`(last line) ${last}`])]
        lines.push(...tail.map((line) => `  | ${line.slice(0, 300)}`))
      }
    }
    return lines
  } catch (error) {
    return [`lock diagnostics failed: ${error instanceof Error ? error.message : String(error)}`]
  }
}

function existsShm(): boolean {
  return existsSync('/dev/shm')
}
