import {existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import {expect} from 'chai'
import YAML from 'yaml'

import {ROOT} from '../support/cli.js'
import {TestSchema} from '../support/db.js'
import {freePort, ServerProcess, waitUntil} from '../support/fleet.js'
import {createLedger, TASKS_DIR} from '../support/worker.js'

const PROMETHEUS = '/usr/bin/prometheus'

interface Alert {
  labels: Record<string, string>
  annotations: Record<string, string>
  state: 'pending' | 'firing'
}

describe('a real Prometheus scrapes a worker and an exporter; a backed-up queue fires BackfillQueueBackingUp', function () {
  this.timeout(150_000)
  let t: TestSchema
  let dir: string
  const processes: ServerProcess[] = []

  before(function () {
    if (!existsSync(PROMETHEUS)) {
      console.warn(`skipping: ${PROMETHEUS} not installed (apt-get install prometheus)`)
      this.skip()
    }
  })
  afterEach(async () => {
    // Prometheus first (by its PID), then the scraped processes.
    for (const p of processes.splice(0).reverse()) await p.stop(10_000)
    await t?.drop()
    if (dir) rmSync(dir, {recursive: true, force: true})
  })

  it('scrapes both targets, records without double counting, and the alert reaches firing', async () => {
    t = await TestSchema.create({migrated: true, prefix: 'prom'})
    const ledger = await createLedger(t)
    dir = mkdtempSync(path.join(os.tmpdir(), 'backfill-prom-'))

    const worker = ServerProcess.cli(
      [
        'worker',
        '--schema',
        t.schema,
        '--tasks',
        TASKS_DIR,
        '--metrics-port',
        '0',
        '--queue-metrics-interval',
        '500ms',
      ],
      {LEDGER_TABLE: ledger},
    )
    processes.push(worker)
    const exporter = ServerProcess.cli(['metrics', 'serve', '--schema', t.schema, '--port', '0', '--interval', '500ms'])
    processes.push(exporter)
    const [, workerTarget] = await worker.waitFor(/metrics at http:\/\/(127\.0\.0\.1:\d+)\/metrics/)
    const [, exporterTarget] = await exporter.waitFor(/queue metrics at http:\/\/(127\.0\.0\.1:\d+)\/metrics/)

    // The shipped rules, unchanged but for `for:` (minutes in production; the promtool unit
    // tests cover it): this test is about real scrapes and real evaluation.
    const rules = YAML.parse(
      readFileSync(path.join(ROOT, 'docs', 'observability', 'prometheus-rules.yml'), 'utf8'),
    ) as {
      groups: {rules: {alert?: string; for?: string}[]}[]
    }
    for (const group of rules.groups) for (const rule of group.rules) if (rule.alert) rule.for = '2s'
    writeFileSync(path.join(dir, 'rules.yml'), YAML.stringify(rules))
    writeFileSync(
      path.join(dir, 'prometheus.yml'),
      YAML.stringify({
        global: {scrape_interval: '1s', evaluation_interval: '1s', scrape_timeout: '900ms'},
        rule_files: ['rules.yml'],
        scrape_configs: [
          {job_name: 'backfill-worker', static_configs: [{targets: [workerTarget]}]},
          {job_name: 'backfill-exporter', static_configs: [{targets: [exporterTarget]}]},
        ],
      }),
    )
    const port = await freePort()
    const prometheus = new ServerProcess(
      PROMETHEUS,
      [
        `--config.file=${path.join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${path.join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--log.level=warn',
      ],
      {PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir},
      dir,
    )
    processes.push(prometheus)
    const api = async <T>(pathAndQuery: string): Promise<T> => {
      const response = await fetch(`http://127.0.0.1:${port}/api/v1/${pathAndQuery}`)
      const body = (await response.json()) as {status: string; data: T}
      if (body.status !== 'success') throw new Error(`${pathAndQuery}: ${JSON.stringify(body)}`)
      return body.data
    }
    const query = async (promql: string): Promise<{metric: Record<string, string>; value: [number, string]}[]> =>
      (
        await api<{result: {metric: Record<string, string>; value: [number, string]}[]}>(
          `query?query=${encodeURIComponent(promql)}`,
        )
      ).result

    await waitUntil(
      'both targets up',
      async () => {
        const targets = await api<{activeTargets: {health: string}[]}>('targets').catch(() => undefined)
        return targets?.activeTargets.length === 2 && targets.activeTargets.every((x) => x.health === 'up')
      },
      60_000,
    )
    const firing = async (): Promise<Alert[]> =>
      (await api<{alerts: Alert[]}>('alerts')).alerts.filter(
        (a) => a.labels.alertname === 'BackfillQueueBackingUp' && a.state === 'firing',
      )
    expect(await firing()).to.deep.equal([])

    // The queue backs up: 40 jobs ready for ten minutes that no worker can run (task unknown to the fleet).
    await t.query(
      `select ${t.quoted}.add_job('nobody_runs_this', '{}', run_at => now() - interval '10 minutes') from generate_series(1, 40)`,
    )
    await waitUntil('BackfillQueueBackingUp to fire', async () => (await firing()).length === 1, 60_000)
    const [alert] = await firing()
    expect(alert!.labels).to.include({queue: '(parallel)', severity: 'warning'})
    expect(alert!.annotations.runbook_url).to.equal('docs/runbook.md#backfillqueuebackingup')
    expect(alert!.annotations.summary).to.match(/^Queue \(parallel\): the oldest ready job has waited 1\dm /)

    // Both targets serve the queue series (exporter, worker leader); the recording rule counts them once.
    const perTarget = await query('backfill_jobs{task="nobody_runs_this", state="ready"}')
    expect(perTarget.map((r) => r.metric.job).sort()).to.deep.equal(['backfill-exporter', 'backfill-worker'])
    const [ready] = await query('backfill:jobs_ready:sum')
    expect(Number(ready!.value[1])).to.equal(40)
    // No other alert fires: a live worker, no dead locks, nothing exhausted.
    const others = (await api<{alerts: Alert[]}>('alerts')).alerts.filter(
      (a) => a.state === 'firing' && a.labels.alertname !== 'BackfillQueueBackingUp',
    )
    expect(others.map((a) => a.labels.alertname)).to.deep.equal([])
  })
})
