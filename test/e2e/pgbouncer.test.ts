import {expect} from 'chai'

import {parseJson, runCli, type CliResult} from '../support/cli.js'
import {TestSchema} from '../support/db.js'
import {parseSeries, scrape, ServerProcess, waitUntil} from '../support/fleet.js'
import {PgBouncer} from '../support/pgbouncer.js'
import {createLedger, TASKS_DIR} from '../support/worker.js'

const NDJSON = Array.from({length: 7}, (_, i) => JSON.stringify({task: 'work', payload: {i}})).join('\n') + '\n'

describe('PgBouncer for real (Debian pgbouncer on loopback)', function () {
  this.timeout(180_000)
  before(function () {
    if (!PgBouncer.available()) {
      console.warn('skipping: /usr/sbin/pgbouncer not installed (apt-get install pgbouncer)')
      this.skip()
    }
  })

  /** Runs the CLI through the bouncer; every result is also checked for a clean exit unless told. */
  function cli(bouncer: PgBouncer, t: TestSchema, env: Record<string, string> = {}) {
    return async (args: string[], options: {input?: string; code?: number} = {}): Promise<CliResult> => {
      const result = await runCli([...args, '--schema', t.schema], {
        databaseUrl: bouncer.url,
        env,
        ...(options.input === undefined ? {} : {input: options.input}),
        timeoutMs: 60_000,
      })
      expect(result.code, `backfill ${args.join(' ')}:\n${result.stdout}\n${result.stderr}`).to.equal(options.code ?? 0)
      return result
    }
  }

  async function everyOpsCommand(run: ReturnType<typeof cli>, t: TestSchema): Promise<void> {
    const count = async (where = 'true'): Promise<number> =>
      Number(
        (await t.query<{n: number}>(`select count(*)::int as n from ${t.quoted}._private_jobs where ${where}`))[0]!.n,
      )
    await run(['enqueue', 'work', '--payload', '{"single":true}', '--job-key', 'single-1'])
    await run(['enqueue', '--ndjson', '-', '--batch-size', '2'], {input: NDJSON})
    expect(await count()).to.equal(8)
    const status = parseJson<{totals: {ready: number}}>(await run(['status', '--json']))
    expect(status.totals.ready).to.equal(8)
    await run(['check', '--max-ready', '100', '--require-migrated'])
    await run(['schema', 'status'])
    await run(['locks', 'list'])
    await run(['locks', 'clean', '--yes'])
    await run(['jobs', 'list', '--json'])
    await run(['jobs', 'show', '--job-key', 'single-1'])
    await run(['jobs', 'reschedule', '--task', 'work', '--delay', '1h', '--yes'])
    expect(await count("run_at > now() + interval '50 minutes'")).to.equal(8)
    await run(['jobs', 'run-now', '--task', 'work', '--yes'])
    await run(['jobs', 'fail', '--task', 'work', '--capture', '--yes', '--reason', 'pgbouncer test'])
    expect(await count()).to.equal(0)
    await run(['dlq', 'list'])
    await run(['dlq', 'stats'])
    await run(['dlq', 'retry', '--all', '--yes', '--batch-size', '3'])
    expect(await count()).to.equal(8)
    await run(['jobs', 'remove', '--task', 'work', '--to-dlq', '--yes'])
    await run(['dlq', 'purge', '--all', '--yes', '--batch-size', '3'])
    await run(['dlq', 'history'])
    const left = await t.query(`select 1 from ${t.quoted}.backfill_dlq`)
    expect(await count()).to.equal(0)
    expect(left).to.have.length(0)
  }

  it("a bouncer that does not ignore backfill's session-limit startup parameters: a clear error naming the setting", async () => {
    const bouncer = await PgBouncer.start('transaction', {ignoreStartupParameters: 'extra_float_digits'})
    try {
      const result = await runCli(['status', '--json'], {databaseUrl: bouncer.url})
      expect(result.code).to.equal(3)
      const error = parseJson<{error: {code: string; message: string; suggestions: string[]}}>(result).error
      expect(error.code).to.equal('E_POOLER_STARTUP_PARAMETER')
      expect(error.message).to.match(
        /unsupported startup parameter: (statement_timeout|lock_timeout|idle_in_transaction_session_timeout)/,
      )
      expect(error.suggestions.join(' ')).to.match(/ignore_startup_parameters/)
    } finally {
      await bouncer.stop()
    }
  })

  describe('transaction pooling', () => {
    let bouncer: PgBouncer
    let t: TestSchema
    before(async () => {
      bouncer = await PgBouncer.start('transaction')
    })
    after(async () => {
      await bouncer?.stop()
    })
    beforeEach(async () => {
      t = await TestSchema.create({migrated: false, prefix: 'pgbt'})
    })
    afterEach(async () => {
      await t.drop()
    })

    it('migrate refuses with a clear error (its session advisory lock would stay on a shared server connection) and changes nothing', async () => {
      const result = await cli(bouncer, t)(['migrate', '--json'], {code: 3})
      const error = parseJson<{error: {code: string; message: string; suggestions: string[]}}>(result).error
      expect(error.code).to.equal('E_SESSION_REQUIRED')
      expect(error.message).to.match(/installing the schema needs a database session .* is pooled per transaction/)
      expect(error.suggestions.join(' ')).to.match(/session mode/)
      expect(await t.query(`select 1 from pg_namespace where nspname = $1`, [t.schema])).to.have.length(0)
    })

    it('enqueue (single and NDJSON) and every ops command work with BACKFILL_PREPARED_STATEMENTS=false', async () => {
      const {migrate} = await import('../../src/lib/schema/migrate.js')
      await migrate(t.db)
      await everyOpsCommand(cli(bouncer, t, {BACKFILL_PREPARED_STATEMENTS: 'false'}), t)
    })

    it('backfill metrics serve scans through it (BACKFILL_PREPARED_STATEMENTS=false)', async () => {
      const {migrate} = await import('../../src/lib/schema/migrate.js')
      await migrate(t.db)
      await t.query(`select ${t.quoted}.add_job('work', '{}') from generate_series(1, 3)`)
      await t.query(
        `insert into ${t.quoted}.backfill_dlq (task_identifier, payload, queue_name, priority, max_attempts, failure_reason, last_error) values ('work', '{}', '', 0, 8, 'x', '"boom"')`,
      )
      const exporter = ServerProcess.cli(
        ['metrics', 'serve', '--schema', t.schema, '--port', '0', '--interval', '200ms'],
        {
          DATABASE_URL: bouncer.url,
          BACKFILL_PREPARED_STATEMENTS: 'false',
        },
      )
      try {
        const [, url] = await exporter.waitFor(/queue metrics at (http:\/\/127\.0\.0\.1:\d+\/metrics)/)
        // Several scans, so that every statement runs more than once on the shared server connections.
        await new Promise((r) => setTimeout(r, 1500))
        const s = parseSeries(await scrape(url!))
        expect(s.get('backfill_jobs{task="work",state="ready"}')).to.equal(3)
        expect(s.get('backfill_dlq_failure_groups{task="work"}')).to.equal(1)
        expect(exporter.output).to.not.match(/scan failed/)
      } finally {
        await exporter.stop()
      }
    })

    it('with prepared statements left on, commands fail with a clear error naming the fix (never a wrong result)', async () => {
      const {migrate} = await import('../../src/lib/schema/migrate.js')
      await migrate(t.db)
      const results: CliResult[] = []
      for (let i = 0; i < 3; i++)
        results.push(await runCli(['status', '--schema', t.schema], {databaseUrl: bouncer.url}))
      const failed = results.filter((r) => r.code !== 0)
      expect(failed.length, 'server connections carry statements other clients prepared').to.be.greaterThan(0)
      for (const r of failed) {
        expect(r.code).to.equal(3)
        expect(r.stderr).to.match(/named prepared statements do not work through .*pooled per transaction/)
        expect(r.stderr).to.match(/BACKFILL_PREPARED_STATEMENTS=false/)
      }
    })

    it('the worker refuses to start (LISTEN, presence session and advisory locks need a session)', async () => {
      const {migrate} = await import('../../src/lib/schema/migrate.js')
      await migrate(t.db)
      await t.query(`select ${t.quoted}.add_job('work', '{}')`)
      const result = await cli(bouncer, t, {BACKFILL_PREPARED_STATEMENTS: 'false'})(
        ['worker', '--tasks', TASKS_DIR, '--no-migrate', '--no-prepared-statements'],
        {code: 3},
      )
      expect(result.stderr).to.match(/backfill worker needs a database session \(LISTEN/)
      expect(result.stderr).to.match(/connect it directly to PostgreSQL, or through a PgBouncer pool in session mode/)
      // Nothing ran, nothing is locked, no registry row was written.
      expect(
        await t.query(`select 1 from ${t.quoted}._private_jobs where attempts > 0 or locked_at is not null`),
      ).to.have.length(0)
      expect(await t.query(`select 1 from ${t.quoted}.backfill_workers`)).to.have.length(0)
    })
  })

  describe('session pooling', () => {
    let bouncer: PgBouncer
    let t: TestSchema
    const processes: ServerProcess[] = []
    before(async () => {
      bouncer = await PgBouncer.start('session')
    })
    after(async () => {
      await bouncer?.stop()
    })
    beforeEach(async () => {
      t = await TestSchema.create({migrated: false, prefix: 'pgbs'})
    })
    afterEach(async () => {
      for (const p of processes.splice(0)) await p.stop()
      await t.drop()
    })

    it('migrate, enqueue (single and NDJSON) and every ops command work (prepared statements on)', async () => {
      await cli(bouncer, t)(['migrate'])
      await everyOpsCommand(cli(bouncer, t), t)
    })

    it('the worker runs jobs, gets new ones by LISTEN/NOTIFY, leads the queue metrics, and stops cleanly', async () => {
      await cli(bouncer, t)(['migrate'])
      const ledger = await createLedger(t)
      const worker = ServerProcess.cli(
        [
          'worker',
          '--schema',
          t.schema,
          '--tasks',
          TASKS_DIR,
          // A poll this slow means a job that starts within a second was announced by NOTIFY.
          '--poll-interval',
          '60s',
          '--metrics-port',
          '0',
          '--queue-metrics-interval',
          '300ms',
        ],
        {DATABASE_URL: bouncer.url, LEDGER_TABLE: ledger},
      )
      processes.push(worker)
      const [, url] = await worker.waitFor(/metrics at (http:\/\/127\.0\.0\.1:\d+\/metrics)/)
      await waitUntil(
        'the worker to run',
        async () => (await fetch(url!.replace('/metrics', '/readyz'))).status === 200,
      )
      await cli(bouncer, t)(['enqueue', 'work', '--payload', '{"n":1}'])
      // Timed from the enqueue's exit (the job is committed by then), not from its spawn: a CLI
      // start on a loaded machine takes seconds, and is not what this bound is about.
      const enqueued = Date.now()
      await waitUntil('the job to run', async () => (await t.query(`select 1 from ${ledger}`)).length === 1, 10_000)
      expect(Date.now() - enqueued).to.be.below(5000)
      await waitUntil(
        'the leader to report',
        async () => parseSeries(await scrape(url!)).get('backfill_queue_metrics_leader') === 1,
      )
      const exit = await worker.stop()
      expect(exit.code, worker.output).to.equal(0)
      expect(await t.query(`select 1 from ${t.quoted}._private_jobs where locked_at is not null`)).to.have.length(0)
    })
  })
})
