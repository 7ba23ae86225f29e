import {expect} from 'chai'

import {rustAddJobSql, rustMigration19Sql} from '../fixtures/rust.js'
import {parseJson, runCli, type CliResult} from '../support/cli.js'
import {TestSchema} from '../support/db.js'
import {addJob, craftStates, jobExists} from '../support/jobs.js'
import {addJobs, createLedger, TASKS_DIR, WorkerProcess} from '../support/worker.js'

const ANSI = /\u001B\[/

describe('backfill jobs … (real binary)', function () {
  this.timeout(120_000)
  let t: TestSchema
  const jobsCli = (args: string[], env: Record<string, string> = {}): Promise<CliResult> =>
    runCli(['jobs', ...args, '--schema', t.schema], {env})
  const snapshot = async (): Promise<unknown> => ({
    jobs: await t.jobs(),
    dlq: await t.query(`select * from ${t.quoted}.backfill_dlq order by id`),
    audit: await t.query(`select id from ${t.quoted}.backfill_dlq_audit`),
  })

  beforeEach(async () => {
    t = await TestSchema.create({migrated: true, prefix: 'jobse'})
  })
  afterEach(async () => {
    await t.drop()
  })

  it('list: a table for people (no colour when piped), full rows with --json, keyset pages', async () => {
    const c = await craftStates(t)
    const table = await jobsCli(['list'])
    expect(table.code, table.stderr).to.equal(0)
    expect(table.stdout).to.not.match(ANSI)
    const lines = table.stdout.trim().split('\n')
    expect(lines[0]).to.match(/^\s*ID\s+TASK\s+QUEUE\s+STATE\s+PRI\s+ATTEMPTS\s+RUN AT\s+AGE\s+LAST ERROR\s+PAYLOAD$/)
    expect(lines).to.have.length(8)
    expect(table.stdout).to.match(
      new RegExp(`${c.running}\\s+send_email\\s+\\(parallel\\)\\s+running \\((dead|live)\\)`),
    )
    expect(table.stdout).to.match(new RegExp(`${c.blocked}\\s+sync_account\\s+account:42\\s+blocked`))
    expect(table.stdout).to.contain('image 7 not found')

    const json = parseJson<{
      jobs: {id: string; state: string; payload: unknown; lastError: string | null}[]
      nextCursor: string
    }>(await jobsCli(['list', '--state', 'retrying', '--state', 'exhausted', '--json']))
    expect(json.jobs.map((j) => j.state).sort()).to.deep.equal(['exhausted', 'retrying'])
    expect(json.jobs.find((j) => j.id === c.retrying)).to.deep.include({
      payload: {n: 2},
      lastError: 'timeout after 30s',
    })

    const page = await jobsCli(['list', '--limit', '3'])
    expect(page.stderr).to.match(/more: backfill jobs list --schema \S+ --cursor (\S+)/)
    const cursor = /--cursor (\S+)/.exec(page.stderr)![1]!
    const next = parseJson<{jobs: {id: string}[]}>(
      await jobsCli(['list', '--limit', '3', '--cursor', cursor, '--json']),
    )
    expect(next.jobs).to.have.length(3)

    const waiting = parseJson<{jobs: {id: string}[]}>(await jobsCli(['list', '--sort', 'next', '--json']))
    expect(waiting.jobs.map((j) => j.id)).to.have.members([c.ready, c.blocked, c.retrying, c.scheduled])
  })

  it('show: state and why, full error, pretty payload with exact numbers, by id or job key; exit 4 when gone', async () => {
    const c = await craftStates(t)
    const [{id}] = (await t.query<{id: string}>(
      `select id::text from ${t.quoted}.add_job('billing', '{"amount": 12345678901234567890, "cents": 1.10}', job_key => 'invoice:42')`,
    )) as [{id: string}]
    const shown = await jobsCli(['show', id])
    expect(shown.code, shown.stderr).to.equal(0)
    expect(shown.stdout)
      .to.match(/State:\s+ready/)
      .and.match(/Why:\s+ready: due/)
    expect(shown.stdout).to.contain('"amount": 12345678901234567890').and.contain('"cents": 1.10')
    const byKey = parseJson<{job: {id: string}; why: string}>(
      await jobsCli(['show', '--job-key', 'invoice:42', '--json']),
    )
    expect(byKey.job.id).to.equal(id)
    const running = await jobsCli(['show', c.running])
    expect(running.stdout).to.match(/Locked by:\s+pool-\S+ since/)
    const exhausted = await jobsCli(['show', c.exhausted])
    expect(exhausted.stdout).to.match(/Last error:\nimage 7 not found/)
    const gone = await jobsCli(['show', '987654'])
    expect(gone.code).to.equal(4)
    expect(gone.stderr).to.contain('is not in the jobs table')
    const both = await jobsCli(['show', id, '--job-key', 'x'])
    expect(both.code).to.equal(2)
  })

  it('--dry-run shows count, per-task breakdown and a sample, and changes nothing', async () => {
    const c = await craftStates(t)
    const before = await snapshot()
    const dry = await jobsCli(['remove', '--all', '--dry-run'])
    expect(dry.code, dry.stderr).to.equal(0)
    expect(dry.stdout).to.contain('dry run: 5 jobs to remove (left out: 2 running)')
    expect(dry.stdout).to.match(/TASK\s+JOBS\n\s*resize_image\s+2/)
    expect(dry.stdout).to.contain('First 5 (in id order):')
    const json = parseJson<{dryRun: boolean; selection: {count: number; byTask: unknown[]; sample: {id: string}[]}}>(
      await jobsCli(['fail', '--all', '--dry-run', '--json', '--capture']),
    )
    expect(json).to.deep.include({dryRun: true})
    expect(json.selection.count).to.equal(4) // not the exhausted one, not the running ones
    expect(json.selection.sample.map((j) => j.id)).to.not.include(c.exhausted)
    expect(await snapshot()).to.deep.equal(before)
  })

  it('never removes, fails or reschedules a running job; the audit trail shows every action in dlq history', async () => {
    const c = await craftStates(t)
    for (const command of [
      ['remove', c.running, c.queueHead, '--yes'],
      ['fail', c.running, '--yes'],
      ['reschedule', c.running, '--delay', '1h', '--yes'],
      ['run-now', c.running, '--yes'],
    ]) {
      const result = await jobsCli(command)
      expect(result.code, result.stderr).to.equal(0)
      expect(result.stdout).to.contain('nothing to').and.contain('running')
    }
    expect(await jobExists(t, c.running)).to.equal(true)
    const [running] = await t.query<{attempts: number; run_at: Date}>(
      `select attempts, run_at from ${t.quoted}._private_jobs where id = $1`,
      [c.running],
    )
    expect(running!.attempts).to.equal(1)

    const moved = await jobsCli(['remove', '--task', 'resize_image', '--to-dlq', '--yes', '--reason', 'INC-1'])
    expect(moved.code, moved.stderr).to.equal(0)
    expect(moved.stdout).to.contain('moved 2 jobs into the DLQ')
    const later = await jobsCli(['run-now', c.scheduled, '--yes', '--json'])
    expect(parseJson<{done: number}>(later).done).to.equal(1)
    const history = parseJson<{runs: {action: string; count: number; reason: string | null}[]}>(
      await runCli(['dlq', 'history', '--schema', t.schema, '--json']),
    )
    expect(history.runs.map((r) => [r.action, r.count, r.reason])).to.deep.equal([
      ['jobs.run-now', 1, null],
      ['jobs.move-to-dlq', 2, 'INC-1'],
    ])
    const table = await runCli(['dlq', 'history', '--schema', t.schema, '--action', 'jobs.move-to-dlq'])
    expect(table.stdout).to.contain('jobs.move-to-dlq')
  })

  it('lists and operates jobs enqueued by plain SQL and by the Rust port\u2019s SQL', async () => {
    await t.db.execScript(rustMigration19Sql(t.quoted, t.schema))
    await t.query(rustAddJobSql(t.quoted), [
      'rust_task',
      '{"from":"rust"}',
      null,
      new Date(Date.now() + 3_600_000),
      8,
      'rust:1',
      -5,
      null,
      'replace',
    ])
    await addJob(t, 'node_task', {runAt: '1 hour'})
    const listed = parseJson<{jobs: {taskIdentifier: string; state: string}[]}>(await jobsCli(['list', '--json']))
    expect(listed.jobs.map((j) => [j.taskIdentifier, j.state]).sort()).to.deep.equal([
      ['node_task', 'scheduled'],
      ['rust_task', 'scheduled'],
    ])
    const now = await jobsCli(['run-now', '--all', '--yes'])
    expect(now.stdout, now.stderr).to.contain('made 2 jobs due now')
    const state = parseJson<{jobs: {state: string}[]}>(await jobsCli(['list', '--json']))
    expect(state.jobs.map((j) => j.state)).to.deep.equal(['ready', 'ready'])
  })

  it('remove --to-dlq by two operators while a worker fetches: every job ends in exactly one place', async () => {
    const ledger = await createLedger(t)
    await addJobs(t, 600, {task: 'work', payload: {ms: 5}})
    const ids = (await t.query<{id: string}>(`select id::text from ${t.quoted}._private_jobs`)).map((r) => r.id)
    const worker = new WorkerProcess(['--schema', t.schema, '--tasks', TASKS_DIR, '--concurrency', '4'], {
      LEDGER_TABLE: ledger,
    })
    try {
      await worker.waitFor(/ready|started|listening/i)
      const operator = (): Promise<CliResult> =>
        jobsCli(['remove', '--task', 'work', '--to-dlq', '--yes', '--batch-size', '50', '--json', '--reason', 'race'])
      const [a, b] = await Promise.all([operator(), operator()])
      expect(a.code, a.stderr).to.equal(0)
      expect(b.code, b.stderr).to.equal(0)
      const ra = parseJson<{done: number}>(a)
      const rb = parseJson<{done: number}>(b)
      // Let the worker finish what it took, then stop it.
      for (let i = 0; i < 200; i++) {
        const [left] = await t.query<{n: number}>(`select count(*)::int as n from ${t.quoted}._private_jobs`)
        if (left!.n === 0) break
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      await worker.stop()
      const inDlq = (
        await t.query<{id: string}>(`select original_job_id::text as id from ${t.quoted}.backfill_dlq`)
      ).map((r) => r.id)
      const ran = (
        await t.query<{id: string}>(`select distinct job_id::text as id from ${ledger} where done_at is not null`)
      ).map((r) => r.id)
      const left = (await t.query<{id: string}>(`select id::text from ${t.quoted}._private_jobs`)).map((r) => r.id)
      const places = new Map<string, number>()
      for (const id of [...inDlq, ...ran, ...left]) places.set(id, (places.get(id) ?? 0) + 1)
      for (const id of ids) expect(places.get(id), `job ${id}`).to.equal(1)
      expect(inDlq).to.have.length(ra.done + rb.done)
      expect(new Set(inDlq).size).to.equal(inDlq.length)
      const [audited] = await t.query<{n: number}>(
        `select coalesce(sum(count), 0)::int as n from ${t.quoted}.backfill_dlq_audit where action = 'jobs.move-to-dlq'`,
      )
      expect(audited!.n).to.equal(inDlq.length)
    } finally {
      await worker.stop()
    }
  })
})
