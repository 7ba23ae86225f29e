import {spawnSync} from 'node:child_process'
import {existsSync, readFileSync} from 'node:fs'
import path from 'node:path'

import {expect} from 'chai'
import YAML from 'yaml'

import {ROOT} from '../support/cli.js'
import {TestSchema} from '../support/db.js'
import {scrape, servedNames, ServerProcess, waitUntil} from '../support/fleet.js'
import {addJobs, createLedger, TASKS_DIR} from '../support/worker.js'

const OBSERVABILITY = path.join(ROOT, 'docs', 'observability')
const RULES = path.join(OBSERVABILITY, 'prometheus-rules.yml')
const RULE_TESTS = path.join(OBSERVABILITY, 'prometheus-rules.test.yml')
const DASHBOARD = path.join(OBSERVABILITY, 'grafana-dashboard.json')
const RUNBOOK = path.join(ROOT, 'docs', 'runbook.md')
const PROMTOOL = '/usr/bin/promtool'

interface Rule {
  alert?: string
  record?: string
  expr: string
  annotations?: Record<string, string>
}

function rules(): Rule[] {
  const doc = YAML.parse(readFileSync(RULES, 'utf8')) as {groups: {rules: Rule[]}[]}
  return doc.groups.flatMap((g) => g.rules)
}

interface Panel {
  id: number
  type: string
  title: string
  gridPos: {x: number; y: number; w: number; h: number}
  targets?: {expr: string}[]
}

function dashboard(): {panels: Panel[]; templating: {list: {query?: unknown; definition?: string}[]}} {
  return JSON.parse(readFileSync(DASHBOARD, 'utf8')) as ReturnType<typeof dashboard>
}

/** Metric names (backfill_…) an expression reads; recording rule names (backfill:…) are not metrics. */
function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\b(backfill_[a-z0-9_]+)\b/g)].map((m) => m[1] as string)
}

/** GitHub's heading anchors. */
function anchors(markdown: string): Set<string> {
  const out = new Set<string>()
  for (const [, heading] of markdown.matchAll(/^#{1,6} (.+)$/gm))
    out.add(
      (heading as string)
        .toLowerCase()
        .replace(/[^\p{L}\p{N} _-]/gu, '')
        .replace(/ /g, '-'),
    )
  return out
}

describe('observability: rules, runbook, dashboard', function () {
  this.timeout(120_000)

  describe('Prometheus rules (promtool)', () => {
    before(function () {
      if (!existsSync(PROMTOOL)) {
        console.warn(`skipping: ${PROMTOOL} not installed (apt-get install prometheus)`)
        this.skip()
      }
    })

    it('promtool check rules accepts the rules file', () => {
      const result = spawnSync(PROMTOOL, ['check', 'rules', RULES], {encoding: 'utf8'})
      expect(result.status, result.stdout + result.stderr).to.equal(0)
      expect(result.stdout).to.match(/SUCCESS: 14 rules found/)
    })

    it('promtool test rules passes the unit-test series (every alert fires when it should, not before)', () => {
      const result = spawnSync(PROMTOOL, ['test', 'rules', RULE_TESTS], {encoding: 'utf8'})
      expect(result.status, result.stdout + result.stderr).to.equal(0)
      const tested = new Set(
        [...readFileSync(RULE_TESTS, 'utf8').matchAll(/alertname: (\w+)/g)].map((m) => m[1] as string),
      )
      for (const rule of rules().filter((r) => r.alert))
        expect(tested, `${rule.alert} has unit tests`).to.include(rule.alert)
    })
  })

  it('every alert has a runbook_url into docs/runbook.md, and the runbook has a section per alert linking back', () => {
    const runbook = readFileSync(RUNBOOK, 'utf8')
    const headings = anchors(runbook)
    const alerts = rules().filter((r) => r.alert)
    expect(alerts.map((a) => a.alert)).to.have.length(7)
    for (const alert of alerts) {
      const url = alert.annotations?.runbook_url ?? ''
      expect(url, alert.alert).to.match(/^docs\/runbook\.md#[a-z0-9-]+$/)
      const anchor = url.split('#')[1] as string
      expect(headings, `${alert.alert} → #${anchor}`).to.include(anchor)
      expect(anchor).to.equal(alert.alert!.toLowerCase())
      expect(alert.annotations?.summary, alert.alert).to.be.a('string').and.not.equal('')
    }
    // The Alerts section lists exactly the rules' alerts.
    const section = runbook.slice(runbook.indexOf('## Alerts'), runbook.indexOf('<!-- runbook: '))
    const listed = [...section.matchAll(/^### (\w+)$/gm)].map((m) => m[1])
    expect(listed.sort()).to.deep.equal(alerts.map((a) => a.alert).sort())
    // Every in-page link of the runbook resolves; each playbook names the alerts that lead to it.
    for (const [, target] of runbook.matchAll(/\]\(#([^)]+)\)/g)) expect(headings, `link #${target}`).to.include(target)
    for (const alert of alerts) {
      const backLinks = runbook.split(`(#${alert.alert!.toLowerCase()})`).length - 1
      expect(backLinks, `${alert.alert} is linked from a playbook`).to.be.greaterThan(0)
    }
  })

  it('the dashboard is well-formed Grafana JSON: unique panel ids, every panel has a query, on a 24-column grid', () => {
    const dash = dashboard()
    const ids = dash.panels.map((p) => p.id)
    expect(new Set(ids).size).to.equal(ids.length)
    for (const panel of dash.panels.filter((p) => p.type !== 'row')) {
      expect(panel.targets?.length, panel.title).to.be.greaterThan(0)
      expect(panel.gridPos.x + panel.gridPos.w, panel.title).to.be.at.most(24)
    }
  })

  describe('every metric the rules and the dashboard use is served by a real worker or exporter', () => {
    let t: TestSchema
    const processes: ServerProcess[] = []
    after(async () => {
      for (const p of processes) await p.stop()
      await t?.drop()
    })

    it('scrapes a worker (its own metrics, and the queue metrics as leader) and `backfill metrics serve`', async () => {
      t = await TestSchema.create({migrated: true, prefix: 'obs'})
      const ledger = await createLedger(t)
      await addJobs(t, 3, {task: 'work'})
      // One job exhausts into the DLQ so that the capture series have values too.
      await t.query(`select ${t.quoted}.add_job('work', '{"fail":"always"}', max_attempts => 1)`)
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
          '200ms',
          '--dlq-interval',
          '1',
        ],
        {LEDGER_TABLE: ledger},
      )
      const exporter = ServerProcess.cli([
        'metrics',
        'serve',
        '--schema',
        t.schema,
        '--port',
        '0',
        '--interval',
        '200ms',
      ])
      processes.push(worker, exporter)
      const [, workerUrl] = await worker.waitFor(/metrics at (http:\/\/127\.0\.0\.1:\d+\/metrics)/)
      const [, exporterUrl] = await exporter.waitFor(/queue metrics at (http:\/\/127\.0\.0\.1:\d+\/metrics)/)
      await waitUntil('the worker to lead and capture', async () => {
        const text = await scrape(workerUrl!)
        return (
          /^backfill_queue_metrics_leader 1$/m.test(text) && /^backfill_dlq_jobs_added\{task="work"\} 1$/m.test(text)
        )
      })
      const served = new Set([...servedNames(await scrape(workerUrl!)), ...servedNames(await scrape(exporterUrl!))])

      const used = new Map<string, string>()
      for (const rule of rules())
        for (const name of metricNames(rule.expr)) used.set(name, `rule ${rule.alert ?? rule.record}`)
      const dash = dashboard()
      for (const panel of dash.panels)
        for (const target of panel.targets ?? [])
          for (const name of metricNames(target.expr)) used.set(name, `panel "${panel.title}"`)
      for (const variable of dash.templating.list)
        for (const name of metricNames(variable.definition ?? '')) used.set(name, 'a dashboard variable')
      expect(used.size).to.be.greaterThan(15)
      const missing = [...used].filter(([name]) => !served.has(name)).map(([name, where]) => `${name} (${where})`)
      expect(missing, 'metric names used but never served').to.deep.equal([])
    })
  })
})
