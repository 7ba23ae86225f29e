import {expect} from 'chai'
import pg from 'pg'

import {parseJson, runCli} from '../support/cli.js'
import {TestSchema} from '../support/db.js'
import {parseSeries, probe, scrape, ServerProcess, waitUntil} from '../support/fleet.js'
import {addJobs, createLedger, TASKS_DIR} from '../support/worker.js'

const METRICS_URL = /metrics at (http:\/\/127\.0\.0\.1:\d+)\/metrics/

describe('fleet metrics: worker leader, probes, exporter (real binary)', function () {
  this.timeout(120_000)
  let t: TestSchema
  let ledger: string
  const processes: ServerProcess[] = []
  const worker = (args: string[] = []): ServerProcess => {
    const p = ServerProcess.cli(
      [
        'worker',
        '--schema',
        t.schema,
        '--tasks',
        TASKS_DIR,
        '--metrics-port',
        '0',
        '--queue-metrics-interval',
        '250ms',
        '--no-migrate',
        ...args,
      ],
      {LEDGER_TABLE: ledger},
    )
    processes.push(p)
    return p
  }

  beforeEach(async () => {
    t = await TestSchema.create({migrated: true, prefix: 'fleet'})
    ledger = await createLedger(t)
  })
  afterEach(async () => {
    for (const p of processes.splice(0)) await p.stop()
    await t.drop()
  })

  it('one worker of two serves the queue metrics; the lead moves when it is killed', async () => {
    // Jobs of a task no worker knows stay ready: known values for the gauges.
    await addJobs(t, 3, {task: 'nobody_knows'})
    const a = worker()
    const b = worker()
    const [, baseA] = await a.waitFor(METRICS_URL)
    const [, baseB] = await b.waitFor(METRICS_URL)
    const bases = [baseA!, baseB!]
    const leaders = async (): Promise<number[]> => {
      const out: number[] = []
      for (const [i, base] of bases.entries()) {
        const s = parseSeries(await scrape(`${base}/metrics`).catch(() => ''))
        if (s.get('backfill_queue_metrics_leader') === 1) out.push(i)
      }
      return out
    }
    await waitUntil('a leader', async () => (await leaders()).length === 1)
    // Both ready and alive; stable for a few rounds.
    for (const base of bases) {
      // A worker reports 'starting' until its pools run, which takes a while on a loaded machine.
      await waitUntil(`${base} ready`, async () => (await probe(`${base}/readyz`)).status === 200)
      expect((await probe(`${base}/healthz`)).status).to.equal(200)
      expect(await probe(`${base}/readyz`)).to.deep.equal({status: 200, body: 'ok: running\n'})
    }
    await new Promise((r) => setTimeout(r, 1000))
    const [leader] = await leaders()
    expect(await leaders()).to.deep.equal([leader])
    const follower = 1 - leader!
    const leaderSeries = parseSeries(await scrape(`${bases[leader!]}/metrics`))
    expect(leaderSeries.get('backfill_jobs{task="nobody_knows",state="ready"}')).to.equal(3)
    expect(leaderSeries.get('backfill_workers{runtime="backfill",state="live"}')).to.equal(2)
    const followerText = await scrape(`${bases[follower]}/metrics`)
    expect(followerText, 'a follower exports its own metrics only').to.not.match(/^backfill_jobs\{/m)
    expect(followerText).to.match(/^backfill_queue_metrics_leader 0$/m)
    expect(followerText).to.match(/^# TYPE backfill_jobs_started_total counter$/m)

    // Kill the leader outright: its lock session ends with it, the follower takes over.
    const killed = [a, b][leader!]!
    killed.child.kill('SIGKILL')
    await killed.exited
    await waitUntil('the follower to lead', async () => {
      const s = parseSeries(await scrape(`${bases[follower]}/metrics`))
      return (
        s.get('backfill_queue_metrics_leader') === 1 && s.get('backfill_jobs{task="nobody_knows",state="ready"}') === 3
      )
    })
  })

  it('/readyz turns 503 while a worker drains, /healthz stays 200', async () => {
    // The job finishes only when the test lets it (its last ledger write waits on an advisory
    // lock the test holds): with a fixed-length job the drain could end, and the worker exit,
    // before a slow machine's probes saw it draining.
    const gate = new pg.Client({connectionString: t.url})
    await gate.connect()
    try {
      await gate.query(`select pg_advisory_lock(hashtext($1))`, [t.schema])
      await t.query(`create function ${t.quoted}.hold_done() returns trigger language plpgsql as $$
        begin perform pg_advisory_xact_lock(hashtext('${t.schema}')); return new; end $$`)
      await t.query(
        `create trigger hold_done before update on ${ledger} for each row execute function ${t.quoted}.hold_done()`,
      )
      await t.query(`select ${t.quoted}.add_job('work', '{}')`)
      const w = worker(['--shutdown-timeout', '60'])
      const [, base] = await w.waitFor(METRICS_URL)
      await waitUntil('the job to start', async () => (await t.query(`select 1 from ${ledger}`)).length === 1)
      expect((await probe(`${base}/readyz`)).status).to.equal(200)
      w.child.kill('SIGTERM')
      await waitUntil('readyz to report stopping', async () => {
        const r = await probe(`${base}/readyz`)
        return r.status === 503 && r.body === 'fail: stopping\n'
      })
      expect(await probe(`${base}/healthz`)).to.deep.equal({status: 200, body: 'ok: stopping\n'})
      expect(w.child.exitCode, 'still draining').to.equal(null)
      await gate.query(`select pg_advisory_unlock(hashtext($1))`, [t.schema])
      expect((await w.exited).code, w.output).to.equal(0)
      expect(await t.query(`select 1 from ${ledger} where done_at is not null`), 'the job finished').to.have.length(1)
    } finally {
      await gate.end()
    }
  })

  it('backfill metrics serve: scans, serves, probes; stops on SIGTERM with a --json summary', async () => {
    await addJobs(t, 4, {task: 'export_me', queue: 'tenant-9'})
    const exporter = ServerProcess.cli([
      'metrics',
      'serve',
      '--schema',
      t.schema,
      '--port',
      '0',
      '--interval',
      '200ms',
      '--json',
    ])
    processes.push(exporter)
    const [, url] = await exporter.waitFor(/queue metrics at (http:\/\/127\.0\.0\.1:\d+\/metrics)/)
    const base = url!.replace(/\/metrics$/, '')
    await waitUntil('readyz', async () => (await probe(`${base}/readyz`)).status === 200)
    const s = parseSeries(await scrape(url!))
    expect(s.get('backfill_jobs{task="export_me",state="ready"}')).to.equal(4)
    expect(s.get('backfill_queue_jobs{queue="tenant-9",state="ready"}')).to.equal(4)
    expect(s.get('backfill_queue_metrics_leader')).to.equal(1)
    // New jobs show up at the next scan.
    await addJobs(t, 1, {task: 'export_me', queue: 'tenant-9'})
    await waitUntil(
      'the next scan',
      async () => parseSeries(await scrape(url!)).get('backfill_jobs{task="export_me",state="ready"}') === 5,
    )
    expect((await probe(`${base}/nope`)).status).to.equal(404)
    const exit = await exporter.stop()
    expect(exit.code).to.equal(0)
    const summary = JSON.parse(exporter.stdout) as {scans: number; failures: number}
    expect(summary.scans).to.be.greaterThan(1)
    expect(summary.failures).to.equal(0)
  })

  it('backfill metrics serve refuses a bad flag or a taken port with a clear error', async () => {
    const bad = await runCli(['metrics', 'serve', '--schema', t.schema, '--interval', 'soon'])
    expect(bad.code).to.equal(2)
    expect(bad.stderr).to.match(/--interval "soon" is not a duration/)
    const first = ServerProcess.cli(['metrics', 'serve', '--schema', t.schema, '--port', '0'])
    processes.push(first)
    const [, port] = await first.waitFor(/queue metrics at http:\/\/127\.0\.0\.1:(\d+)\/metrics/)
    const taken = await runCli(['metrics', 'serve', '--schema', t.schema, '--port', port!, '--json'])
    expect(taken.code).to.not.equal(0)
    const error = parseJson<{error: {message: string; suggestions: string[]}}>(taken).error
    expect(error.message).to.match(/cannot serve metrics on 127\.0\.0\.1:\d+: address in use/)
    expect(error.suggestions.join(' ')).to.match(/another --port/)
  })

  it('status --ready-count-sql prints SQL (no connection needed) that counts what status calls ready', async () => {
    await addJobs(t, 3, {task: 'a'})
    await t.query(`select ${t.quoted}.add_job('a', '{}', run_at => now() + interval '1 hour')`)
    const printed = await runCli(['status', '--schema', t.schema, '--ready-count-sql'], {databaseUrl: null})
    expect(printed.code, printed.stderr).to.equal(0)
    const [row] = await t.query<{ready: number}>(printed.stdout)
    expect(row!.ready).to.equal(3)
    const status = parseJson<{totals: {ready: number}}>(await runCli(['status', '--schema', t.schema, '--json']))
    expect(status.totals.ready).to.equal(3)
    const json = parseJson<{sql: string}>(await runCli(['status', '--schema', t.schema, '--ready-count-sql', '--json']))
    expect(json.sql).to.equal(printed.stdout.trim())
  })

  it('an unmigrated schema: the exporter runs but is not ready, and says why', async () => {
    const exporter = ServerProcess.cli(['metrics', 'serve', '--schema', `${t.schema}_missing`, '--port', '0'])
    processes.push(exporter)
    const [, url] = await exporter.waitFor(/queue metrics at (http:\/\/127\.0\.0\.1:\d+\/metrics)/)
    const base = url!.replace(/\/metrics$/, '')
    await exporter.waitFor(/queue metrics scan failed: schema "\S+_missing" does not exist/)
    const ready = await probe(`${base}/readyz`)
    expect(ready.status).to.equal(503)
    expect(ready.body).to.match(/last scan failed: schema/)
    expect(await scrape(url!)).to.not.match(/^backfill_jobs\{/m)
  })
})
