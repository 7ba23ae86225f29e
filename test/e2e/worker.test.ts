import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import {expect} from 'chai'

import {parseJson, runCli} from '../support/cli.js'
import {TestSchema} from '../support/db.js'
import {addJobs, createLedger, TASKS_DIR, WorkerProcess} from '../support/worker.js'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function waitUntil(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(50)
  }
}

describe('backfill worker (real binary, real signals)', function () {
  this.timeout(120_000)
  let t: TestSchema
  let ledger: string
  const workers: WorkerProcess[] = []
  const start = (args: string[], env: Record<string, string> = {}): WorkerProcess => {
    const w = new WorkerProcess(['--schema', t.schema, '--tasks', TASKS_DIR, ...args], {LEDGER_TABLE: ledger, ...env})
    workers.push(w)
    return w
  }
  const count = async (sql: string): Promise<number> =>
    Number((await t.query<{n: number}>(sql.replaceAll('$S', t.quoted)))[0]?.n ?? 0)

  beforeEach(async () => {
    t = await TestSchema.create({migrated: true, prefix: 'wrk'})
    ledger = await createLedger(t)
  })
  afterEach(async () => {
    for (const w of workers.splice(0)) await w.stop()
    await t.drop()
  })

  it("runs handlers; failures retry with graphile's backoff, then exhaust into the DLQ with payload, priority, queue and key intact", async () => {
    await t.query(`select $S.add_job('work', '{"ms":1}')`.replaceAll('$S', t.quoted))
    await t.query(
      `select $S.add_job('work', '{"fail":"always"}', queue_name => 'account:7', job_key => 'acct-7', max_attempts => 2, priority => -10)`.replaceAll(
        '$S',
        t.quoted,
      ),
    )
    const first = await runCli(['worker', '--schema', t.schema, '--tasks', TASKS_DIR, '--once'], {
      env: {LEDGER_TABLE: ledger},
    })
    expect(first.code, first.stderr + first.stdout).to.equal(0)
    expect(first.stdout)
      .to.match(/work#\d+ completed/)
      .and.match(/work#\d+ failed after \d+ms, will retry in 2\.7s \(at \S+\) \(attempt 1\/2\)/)
    // Failed once: graphile's backoff (exp(1) ≈ 2.7 s) put it in the future, unlocked. Measured
    // from the attempt's start (the ledger row), not from now: the --once process's shutdown
    // comes in between, and on a loaded machine that alone can eat the margin to 2.7 s.
    const [job] = await t.query<{attempts: number; last_error: string; delay: number; locked_at: Date | null}>(
      `select j.attempts, j.last_error, extract(epoch from j.run_at - l.started_at)::float as delay, j.locked_at
       from ${t.quoted}._private_jobs j join ${ledger} l on l.job_id = j.id and l.attempt = 1`,
    )
    expect(job).to.include({attempts: 1, last_error: 'failed: always', locked_at: null})
    // At least exp(1) after the attempt began; well under exp(2) ≈ 7.4 s (a second attempt's backoff).
    expect(job!.delay).to.be.within(2.7, 6)
    // Fast-forward the retry, run again: the last attempt fails and the job moves to the DLQ.
    await t.query(`update ${t.quoted}._private_jobs set run_at = now()`)
    const second = await runCli(['worker', '--schema', t.schema, '--tasks', TASKS_DIR, '--once', '--json'], {
      env: {LEDGER_TABLE: ledger},
    })
    expect(second.code, second.stderr).to.equal(0)
    expect(parseJson<{dlqCaptured: number}>(second).dlqCaptured).to.equal(1)
    const [dlq] = await t.query(
      `select task_identifier, payload, priority, queue_name, job_key, max_attempts, failure_reason, last_error from ${t.quoted}.backfill_dlq`,
    )
    expect(dlq).to.deep.equal({
      task_identifier: 'work',
      payload: {fail: 'always'},
      priority: -10,
      queue_name: 'account:7',
      job_key: 'acct-7',
      max_attempts: 2,
      failure_reason: 'Job exceeded maximum retry attempts (2/2)',
      last_error: 'failed: always',
    })
    expect(await count(`select count(*)::int as n from $S._private_jobs`)).to.equal(0)
  })

  it('a permanent error skips the remaining attempts and lands in the DLQ at once', async () => {
    await t.query(`select ${t.quoted}.add_job('work', '{"permanent":"bad card"}', max_attempts => 8)`)
    const result = await runCli(['worker', '--schema', t.schema, '--tasks', TASKS_DIR, '--once'], {
      env: {LEDGER_TABLE: ledger},
    })
    expect(result.code, result.stderr).to.equal(0)
    expect(await count(`select count(*)::int as n from $S.test_ledger`)).to.equal(1)
    const [dlq] = await t.query(`select failure_reason, last_error, max_attempts from ${t.quoted}.backfill_dlq`)
    expect(dlq).to.deep.equal({
      failure_reason: 'Permanent failure (non-retryable error)',
      last_error: 'Permanent failure (non-retryable error): permanent: bad card',
      max_attempts: 8,
    })
  })

  it('SIGTERM mid-flight (local queue and batching on): running jobs finish, prefetched ones go back, nothing stays locked, nothing is lost', async () => {
    await addJobs(t, 40, {payload: {ms: 700}})
    const worker = start(['--concurrency', '4', '--local-queue-size', '20', '--batch-delay', '100'])
    await waitUntil(
      async () => (await count(`select count(*)::int as n from $S.test_ledger`)) >= 4,
      20_000,
      'jobs to start',
    )
    worker.signal('SIGTERM')
    const exit = await worker.exited
    expect(exit.code, worker.stdout + worker.stderr).to.equal(0)
    expect(await count(`select count(*)::int as n from $S._private_jobs where locked_at is not null`)).to.equal(0)
    expect(await count(`select count(*)::int as n from $S._private_job_queues where locked_at is not null`)).to.equal(0)
    const started = await count(`select count(distinct job_id)::int as n from $S.test_ledger`)
    const finished = await count(`select count(*)::int as n from $S.test_ledger where done_at is not null`)
    const remaining = await count(`select count(*)::int as n from $S._private_jobs`)
    expect(started).to.be.greaterThan(0)
    expect(finished, 'every started job finished').to.equal(started)
    expect(remaining + finished, 'none lost').to.equal(40)
    // Prefetched-but-not-started jobs were handed back without using an attempt.
    expect(await count(`select count(*)::int as n from $S._private_jobs where attempts <> 0`)).to.equal(0)
    expect(worker.stdout).to.match(/worker stopped .*still locked by this worker: 0/)
    const [registry] = await t.query<{stopped: boolean}>(
      `select stopped_at is not null as stopped from ${t.quoted}.backfill_workers`,
    )
    expect(registry?.stopped).to.equal(true)
  })

  it('a second SIGTERM aborts running jobs quickly, and still leaves none locked (exit 130)', async () => {
    await addJobs(t, 3, {payload: {ms: 20_000}})
    const worker = start(['--concurrency', '3', '--shutdown-timeout', '60'])
    await waitUntil(
      async () => (await count(`select count(*)::int as n from $S.test_ledger`)) >= 3,
      20_000,
      'jobs to start',
    )
    worker.signal('SIGTERM')
    await worker.waitFor(/stopping: finishing running jobs/)
    const before = Date.now()
    worker.signal('SIGTERM')
    const exit = await worker.exited
    expect(exit.code).to.equal(130)
    expect(Date.now() - before).to.be.lessThan(10_000)
    expect(await count(`select count(*)::int as n from $S._private_jobs where locked_at is not null`)).to.equal(0)
    // Aborted jobs are failed with graphile's backoff (an attempt used), so they run again later.
    const jobs = await t.query<{attempts: number; last_error: string}>(
      `select attempts, last_error from ${t.quoted}._private_jobs`,
    )
    expect(jobs).to.have.length(3)
    for (const job of jobs) expect(job.attempts).to.equal(1)
  })

  it('the shutdown timeout aborts jobs that do not finish in time (exit 130), and releases their locks', async () => {
    await addJobs(t, 2, {payload: {ms: 30_000}})
    const worker = start(['--concurrency', '2', '--shutdown-timeout', '1'])
    await waitUntil(
      async () => (await count(`select count(*)::int as n from $S.test_ledger`)) >= 2,
      20_000,
      'jobs to start',
    )
    const before = Date.now()
    worker.signal('SIGINT')
    const exit = await worker.exited
    expect(exit.code).to.equal(130)
    expect(Date.now() - before).to.be.lessThan(12_000)
    expect(await count(`select count(*)::int as n from $S._private_jobs where locked_at is not null`)).to.equal(0)
    expect(await count(`select count(*)::int as n from $S._private_jobs`)).to.equal(2)
  })

  it('two worker processes share the work without running any job twice', async () => {
    const a = start(['--concurrency', '4'])
    const b = start(['--concurrency', '4'])
    // Both running before the jobs exist: enqueued earlier, whichever process started first on a
    // loaded machine could drain all 600 (~1 s of work) before the other one fetched anything.
    await Promise.all([a.waitFor(/worker started/), b.waitFor(/worker started/)])
    await addJobs(t, 600, {payload: {ms: 2}})
    await waitUntil(
      async () => (await count(`select count(*)::int as n from $S._private_jobs`)) === 0,
      60_000,
      'queue to drain',
    )
    await Promise.all([a.stop(), b.stop()])
    expect(await count(`select count(*)::int as n from $S.test_ledger`)).to.equal(600)
    expect(await count(`select count(distinct job_id)::int as n from $S.test_ledger`)).to.equal(600)
    const pids = await t.query<{pid: number}>(`select distinct pid from ${t.quoted}.test_ledger`)
    expect(pids.length, 'both processes took jobs').to.equal(2)
  })

  it('--once drains what is runnable now, leaves future jobs, and exits', async () => {
    await addJobs(t, 25, {payload: {}})
    await t.query(`select ${t.quoted}.add_job('work', '{}', run_at => now() + interval '1 hour')`)
    const result = await runCli(['worker', '--schema', t.schema, '--tasks', TASKS_DIR, '--once', '--json'], {
      env: {LEDGER_TABLE: ledger},
    })
    expect(result.code, result.stderr).to.equal(0)
    const summary = parseJson<{jobs: {succeeded: number}; forced: boolean}>(result)
    expect(summary.jobs.succeeded).to.equal(25)
    expect(await count(`select count(*)::int as n from $S._private_jobs`)).to.equal(1)
  })

  it('captures a burst of exhausted jobs at startup, before running anything', async () => {
    await addJobs(t, 10_000, {payload: {}, maxAttempts: 1})
    await t.query(`update ${t.quoted}._private_jobs set attempts = 1, last_error = 'failed earlier'`)
    const result = await runCli(['worker', '--schema', t.schema, '--tasks', TASKS_DIR, '--once', '--json'], {
      env: {LEDGER_TABLE: ledger},
    })
    expect(result.code, result.stderr).to.equal(0)
    expect(parseJson<{dlqCaptured: number}>(result).dlqCaptured).to.equal(10_000)
    expect(await count(`select count(*)::int as n from $S.backfill_dlq`)).to.equal(10_000)
    expect(await count(`select count(*)::int as n from $S.test_ledger`)).to.equal(0)
  })

  it('--no-dlq leaves exhausted jobs in the jobs table', async () => {
    await t.query(`select ${t.quoted}.add_job('work', '{"fail":"x"}', max_attempts => 1)`)
    const result = await runCli(['worker', '--schema', t.schema, '--tasks', TASKS_DIR, '--once', '--no-dlq'], {
      env: {LEDGER_TABLE: ledger},
    })
    expect(result.code, result.stderr).to.equal(0)
    expect(await count(`select count(*)::int as n from $S.backfill_dlq`)).to.equal(0)
    expect(await count(`select count(*)::int as n from $S._private_jobs where attempts >= max_attempts`)).to.equal(1)
  })

  it('reserved fast capacity: with slow bulk jobs filling the bulk slots, a fast job starts within a second', async () => {
    // What `backfill enqueue` writes: priority >= 0 carries the bulk flag.
    await addJobs(t, 8, {payload: {ms: 15_000, abortable: true}, priority: 0, flags: ['backfill:bulk']})
    const worker = start(['--fast-concurrency', '1', '--bulk-concurrency', '2', '--shutdown-timeout', '2'])
    await waitUntil(
      async () => (await count(`select count(*)::int as n from $S.test_ledger`)) >= 2,
      20_000,
      'bulk jobs to start',
    )
    await sleep(500)
    expect(await count(`select count(*)::int as n from $S.test_ledger`), 'bulk jobs never take the fast slot').to.equal(
      2,
    )
    const [added] = await t.query<{id: string; at: Date}>(
      `select id, clock_timestamp() as at from ${t.quoted}.add_job('work', '{}', priority => -5)`,
    )
    await waitUntil(
      async () => (await count(`select count(*)::int as n from $S.test_ledger where job_id = ${added!.id}`)) === 1,
      5000,
      'fast job to start',
    )
    const [row] = await t.query<{delay: number}>(
      `select extract(epoch from started_at - $1::timestamptz)::float as delay from ${t.quoted}.test_ledger where job_id = $2`,
      [added!.at, added!.id],
    )
    expect(row!.delay).to.be.lessThan(1)
    await worker.stop()
  })

  it('runs jobs enqueued by any runtime: SQL add_job with priorities, and serial queues one at a time', async () => {
    // Three jobs in one serial queue (as the Rust crate's enqueue_serial writes them) and parallel ones by priority.
    for (let i = 0; i < 3; i++)
      await t.query(`select ${t.quoted}.add_job('work', '{"ms":200}', queue_name => 'user:1', priority => 0)`)
    await t.query(`select ${t.quoted}.add_job('other', '{}', priority => 10)`)
    await t.query(`select ${t.quoted}.add_job('other', '{}', priority => -20)`)
    const result = await runCli(
      ['worker', '--schema', t.schema, '--tasks', TASKS_DIR, '--once', '--concurrency', '1'],
      {env: {LEDGER_TABLE: ledger}},
    )
    expect(result.code, result.stderr).to.equal(0)
    const order = await t.query<{task: string; priority: number}>(
      `select l.task from ${t.quoted}.test_ledger l order by l.started_at`,
    )
    // Priority order among available jobs: -20 first, then the queue's first job (0) before the 10.
    // Later on, whether the queue's next job is available at a fetch depends on when the previous
    // completion commits, so only the counts are fixed.
    expect(order.map((r) => r.task).slice(0, 2)).to.deep.equal(['other', 'work'])
    expect(order.map((r) => r.task).sort()).to.deep.equal(['other', 'other', 'work', 'work', 'work'])
    // Serial: no two runs of the queue overlapped (each started after the previous finished).
    const overlaps = await count(
      `select count(*)::int as n from $S.test_ledger a join $S.test_ledger b on a.job_id < b.job_id and a.task = 'work' and b.task = 'work' and b.started_at < a.done_at and a.started_at < b.done_at`,
    )
    expect(overlaps).to.equal(0)
  })

  it('serves Prometheus metrics on loopback', async () => {
    await addJobs(t, 5, {payload: {}})
    await t.query(`select ${t.quoted}.add_job('work', '{"fail":"x"}', max_attempts => 1)`)
    const worker = start(['--metrics-port', '0', '--dlq-interval', '1'])
    const [, url] = await worker.waitFor(/metrics at (http:\/\/127\.0\.0\.1:\d+\/metrics)/)
    await waitUntil(
      async () => (await count(`select count(*)::int as n from $S.backfill_dlq`)) === 1,
      20_000,
      'the failed job to be captured',
    )
    const text = await (await fetch(url!)).text()
    expect(text).to.match(/backfill_jobs_completed_total\{task="work"\} 5/)
    expect(text).to.match(/backfill_jobs_failed_total\{task="work",outcome="exhausted"\} 1/)
    expect(text).to.match(/backfill_dlq_jobs_added\{task="work"\} 1/)
    expect(text).to.match(/backfill_worker_active\{pool="shared"\} 1/)
    expect(text).to.match(/backfill_job_duration_seconds_bucket/)
    expect(text).not.to.match(/job_key|queue_name="/)
  })

  describe('bad flags and task sources: a clear error, a documented exit code', () => {
    const cases: [string[], number, RegExp][] = [
      [['--concurrency', '0'], 2, /Expected an integer greater than or equal to 1/],
      [['--poll-interval', 'soon'], 2, /--poll-interval "soon" is not a duration/],
      [['--concurrency', '4', '--fast-concurrency', '2'], 2, /--concurrency cannot be combined/],
      [['--log-format', 'xml'], 2, /Expected --log-format=xml to be one of: text, json/],
    ]
    for (const [args, code, message] of cases) {
      it(`${args.join(' ')} → exit ${code}`, async () => {
        const result = await runCli(['worker', '--schema', t.schema, '--tasks', TASKS_DIR, ...args])
        expect(result.code, result.stderr).to.equal(code)
        expect(result.stderr).to.match(message)
      })
    }

    it('an empty tasks directory names the directory (exit 3)', async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'empty-tasks-'))
      const result = await runCli(['worker', '--schema', t.schema, '--tasks', dir])
      expect(result.code).to.equal(3)
      expect(result.stderr).to.contain(`no tasks found in ${dir}`)
    })

    it('a missing tasks directory names it (exit 3)', async () => {
      // A directory of its own: the default ./tasks must not exist there, whatever others leave in the temp dir.
      const cwd = mkdtempSync(path.join(os.tmpdir(), 'no-tasks-'))
      try {
        const result = await runCli(['worker', '--schema', t.schema], {cwd})
        expect(result.code).to.equal(3)
        expect(result.stderr).to.contain(`no tasks directory at ${path.join(cwd, 'tasks')}`)
      } finally {
        rmSync(cwd, {recursive: true, force: true})
      }
    })

    it('a task file with a syntax error names the directory (exit 3, not an internal error)', async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'broken-tasks-'))
      writeFileSync(path.join(dir, 'broken.mjs'), 'export default async function ( {\n')
      const result = await runCli(['worker', '--schema', t.schema, '--tasks', dir, '--once'])
      expect(result.code, result.stderr).to.equal(3)
      expect(result.stderr).to.contain(`cannot load the tasks in ${dir}`)
    })

    it('a task module and an invalid crontab', async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'taskmod-'))
      writeFileSync(path.join(dir, 'tasks.mjs'), 'export const tasks = {hello: async () => {}}\n')
      writeFileSync(path.join(dir, 'crontab'), 'this is not cron\n')
      const bad = await runCli([
        'worker',
        '--schema',
        t.schema,
        '--task-module',
        path.join(dir, 'tasks.mjs'),
        '--crontab',
        path.join(dir, 'crontab'),
        '--once',
      ])
      expect(bad.code).to.equal(3)
      expect(bad.stderr).to.contain('invalid crontab')
      await t.query(`select ${t.quoted}.add_job('hello', '{}')`)
      const good = await runCli([
        'worker',
        '--schema',
        t.schema,
        '--task-module',
        path.join(dir, 'tasks.mjs'),
        '--once',
        '--json',
      ])
      expect(good.code, good.stderr).to.equal(0)
      expect(parseJson<{jobs: {succeeded: number}}>(good).jobs.succeeded).to.equal(1)
    })

    it("--once: an unhandled rejection (as graphile's unawaited writes give) fails the run, as it fails a long-running worker", async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'taskmod-'))
      writeFileSync(
        path.join(dir, 'tasks.mjs'),
        "export const tasks = {leak: async () => { void Promise.reject(new Error('leaked rejection')) }}\n",
      )
      await t.query(`select ${t.quoted}.add_job('leak', '{}')`)
      const result = await runCli([
        'worker',
        '--schema',
        t.schema,
        '--task-module',
        path.join(dir, 'tasks.mjs'),
        '--once',
      ])
      rmSync(dir, {recursive: true, force: true})
      expect(result.code, result.stderr).to.equal(1)
      expect(result.stderr).to.contain('leaked rejection')
    })

    it('--no-migrate on an un-migrated schema: exit 4, nothing created', async () => {
      const result = await runCli([
        'worker',
        '--schema',
        'nothing_here_xyz',
        '--tasks',
        TASKS_DIR,
        '--no-migrate',
        '--once',
      ])
      expect(result.code).to.equal(4)
      expect(result.stderr).to.contain('backfill migrate')
      expect(await count(`select count(*)::int as n from pg_namespace where nspname = 'nothing_here_xyz'`)).to.equal(0)
    })
  })
})
