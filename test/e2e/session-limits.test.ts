import {expect} from 'chai'
import pg from 'pg'

import {parseJson, runCli, type CliResult} from '../support/cli.js'
import {TestSchema} from '../support/db.js'
import {addJobs, TASKS_DIR, WorkerProcess} from '../support/worker.js'

/** Bounded sessions (issue 13): ops commands time out instead of hanging; the worker is exempt from the statement limit. */
describe('session limits (real binary)', function () {
  this.timeout(120_000)
  let t: TestSchema
  const cli = (args: string[], env: Record<string, string> = {}): Promise<CliResult> =>
    runCli([...args, '--schema', t.schema], {env})

  beforeEach(async () => {
    t = await TestSchema.create({migrated: true, prefix: 'limits'})
  })
  afterEach(async () => {
    await t.drop()
  })

  /** Another session holding ACCESS EXCLUSIVE on the jobs table until release() (a migration, a VACUUM FULL). */
  async function lockJobsTable(): Promise<{release: () => Promise<void>}> {
    const client = new pg.Client({connectionString: t.url})
    await client.connect()
    await client.query('begin')
    await client.query(`lock table ${t.quoted}._private_jobs in access exclusive mode`)
    return {
      release: async () => {
        await client.query('rollback')
        await client.end()
      },
    }
  }

  /** Records the session settings of whoever inserts into the jobs table (enqueue, or a task through a trigger). */
  async function recordSettingsOn(table: string, sleepSeconds = 0): Promise<void> {
    await t.query(`create table ${t.quoted}.seen (app text, statement text, lock text, idle text)`)
    await t.query(`create function ${t.quoted}.record_settings() returns trigger language plpgsql as $$
      begin
        insert into ${t.quoted}.seen values (current_setting('application_name'), current_setting('statement_timeout'),
          current_setting('lock_timeout'), current_setting('idle_in_transaction_session_timeout'));
        perform pg_sleep(tg_argv[0]::float);
        return new;
      end $$`)
    await t.query(
      `create trigger record_settings after insert on ${table} for each row execute function ${t.quoted}.record_settings('${sleepSeconds}')`,
    )
  }

  it('status behind an ACCESS EXCLUSIVE lock ends with the timeout error (exit 7) instead of hanging', async () => {
    const lock = await lockJobsTable()
    try {
      let started = Date.now()
      const short = await cli(['status', '--statement-timeout', '1s'])
      const shortMs = Date.now() - started
      expect(short.code, short.stderr).to.equal(7)
      expect(short.stdout).to.equal('')
      const lines = short.stderr.trim().split('\n')
      expect(lines[0]).to.match(/^Error: .*(statement timeout|lock timeout).*--statement-timeout/)
      expect(shortMs, 'ends about when the 1s limit is reached').to.be.below(8_000)

      // The default: the lock wait gives up after 5s.
      started = Date.now()
      const byDefault = await cli(['status'])
      const defaultMs = Date.now() - started
      expect(byDefault.code, byDefault.stderr).to.equal(7)
      expect(byDefault.stderr).to.match(
        /^Error: gave up waiting 5s for a lock another session holds \(lock timeout\); retry later, or lift the limits with --statement-timeout 0\n/,
      )
      expect(defaultMs).to.be.at.least(5_000).and.below(15_000)

      // The environment variable, and the JSON envelope.
      const json = parseJson<{error: {code: string; exitCode: number; message: string}}>(
        await cli(['status', '--json'], {BACKFILL_STATEMENT_TIMEOUT: '1s'}),
      )
      expect(json.error).to.include({code: 'E_TIMEOUT', exitCode: 7})
      expect(json.error.message).to.contain('--statement-timeout')

      // dlq and jobs commands are bounded too.
      const jobsList = await cli(['jobs', 'list', '--statement-timeout', '1s'])
      expect(jobsList.code, jobsList.stderr).to.equal(7)
    } finally {
      await lock.release()
    }
  })

  it('--statement-timeout 0 lifts the limits: status waits for the lock and succeeds once it is released', async () => {
    const lock = await lockJobsTable()
    const started = Date.now()
    const status = cli(['status', '--statement-timeout', '0'])
    await new Promise((resolve) => setTimeout(resolve, 7_000))
    await lock.release()
    const result = await status
    expect(result.code, result.stderr).to.equal(0)
    expect(Date.now() - started).to.be.at.least(7_000)
  })

  it('ops sessions get statement 30s, lock 5s, idle-in-transaction 60s by default; the flag changes them', async () => {
    await recordSettingsOn(`${t.quoted}._private_jobs`)
    expect((await cli(['enqueue', 'a'])).code).to.equal(0)
    expect((await cli(['enqueue', 'b', '--statement-timeout', '2m'])).code).to.equal(0)
    expect((await cli(['enqueue', 'c'], {BACKFILL_STATEMENT_TIMEOUT: '2s'})).code).to.equal(0)
    expect((await cli(['enqueue', 'd', '--statement-timeout', '0'])).code).to.equal(0)
    const seen = await t.query(`select statement, lock, idle from ${t.quoted}.seen`)
    expect(seen).to.deep.equal([
      {statement: '30s', lock: '5s', idle: '1min'},
      {statement: '2min', lock: '5s', idle: '1min'},
      {statement: '2s', lock: '2s', idle: '1min'},
      {statement: '0', lock: '0', idle: '0'},
    ])
    const bad = await cli(['status', '--statement-timeout', '10ms'])
    expect(bad.code).to.equal(2)
    expect(bad.stderr).to.match(/^Error: --statement-timeout "10ms" is shorter than 100ms\n/)
    // Commands that change the schema take no such flag.
    const migrate = await cli(['migrate', '--statement-timeout', '1s'])
    expect(migrate.code).to.equal(2)
  })

  it('worker sessions are exempt from the statement timeout (even set in the environment) but not from the idle one', async () => {
    const ledger = `${t.quoted}.ledger`
    await t.query(`create table ${ledger} (job_id bigint, attempt int, task text, pid int, done_at timestamptz)`)
    // Each task's insert into the ledger sleeps 1.5s in the trigger: longer than the 1s limit of the environment.
    await recordSettingsOn(ledger, 1.5)
    await addJobs(t, 1)
    const worker = new WorkerProcess(['--schema', t.schema, '--tasks', TASKS_DIR, '--once'], {
      LEDGER_TABLE: ledger,
      BACKFILL_STATEMENT_TIMEOUT: '1s',
    })
    const exit = await worker.exited
    expect(exit.code, worker.stderr).to.equal(0)
    expect(worker.stdout + worker.stderr).to.not.match(/statement timeout|failed/)
    const seen = await t.query<{statement: string; lock: string; idle: string}>(
      `select statement, lock, idle from ${t.quoted}.seen`,
    )
    expect(seen[0]).to.deep.equal({statement: '0', lock: '0', idle: '1min'})
    expect(await t.query(`select done_at from ${ledger} where done_at is not null`)).to.have.length(1)
  })
})
