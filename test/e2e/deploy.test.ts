import {readdirSync, readFileSync} from 'node:fs'
import path from 'node:path'

import {expect} from 'chai'
import YAML from 'yaml'

import {parseJson, ROOT, runCli} from '../support/cli.js'
import {TestSchema, testUrl} from '../support/db.js'
import {probe, scrape, servedNames, ServerProcess, waitUntil} from '../support/fleet.js'
import {createLedger, TASKS_DIR} from '../support/worker.js'

const DEPLOY = path.join(ROOT, 'docs', 'deploy')

interface EnvVar {
  name: string
  value?: string
  valueFrom?: unknown
}
interface Probe {
  httpGet: {path: string; port: string | number}
}
interface Container {
  name: string
  command?: string[]
  args?: string[]
  env?: EnvVar[]
  ports?: {name: string; containerPort: number}[]
  livenessProbe?: Probe
  readinessProbe?: Probe
  startupProbe?: Probe
  lifecycle?: {preStop?: {exec: {command: string[]}}}
  resources?: {requests?: unknown; limits?: unknown}
}
interface K8sObject {
  kind: string
  metadata: {name: string; annotations?: Record<string, string>}
  spec: Record<string, unknown>
}

function manifests(): {file: string; object: K8sObject}[] {
  const out: {file: string; object: K8sObject}[] = []
  for (const file of readdirSync(DEPLOY).filter((f) => f.endsWith('.yaml'))) {
    for (const doc of YAML.parseAllDocuments(readFileSync(path.join(DEPLOY, file), 'utf8'))) {
      expect(doc.errors, `${file}: ${doc.errors.map((e) => e.message).join('; ')}`).to.deep.equal([])
      out.push({file, object: doc.toJS() as K8sObject})
    }
  }
  return out
}

function containersOf(object: K8sObject): Container[] {
  const template = (object.spec.template ??
    (object.spec.jobTemplate as {spec?: {template?: unknown}})?.spec?.template) as
    {spec: {containers: Container[]}} | undefined
  return template?.spec.containers ?? []
}

/** The backfill command a container runs: its id ("worker", "metrics serve") and arguments. */
function backfillInvocation(container: Container): {id: string; args: string[]} | undefined {
  const command = container.command ?? []
  if (path.basename(command[0] ?? '') !== 'backfill') return undefined
  const words = [...command.slice(1), ...(container.args ?? [])]
  const firstFlag = words.findIndex((w) => w.startsWith('-'))
  const idWords = firstFlag < 0 ? words : words.slice(0, firstFlag)
  return {id: idWords.join(' '), args: firstFlag < 0 ? [] : words.slice(firstFlag)}
}

interface ManifestFlag {
  name: string
  env?: string
}
function commandFlags(id: string): ManifestFlag[] {
  const manifest = JSON.parse(readFileSync(path.join(ROOT, 'oclif.manifest.json'), 'utf8')) as {
    commands: Record<string, {flags: Record<string, ManifestFlag>}>
  }
  const command = manifest.commands[id.replace(/ /g, ':')]
  expect(command, `backfill ${id} exists`).to.not.equal(undefined)
  return Object.values(command!.flags)
}

/** Variables backfill reads that are not a flag's (documented in the README). */
const NON_FLAG_VARIABLES = ['BACKFILL_PREPARED_STATEMENTS']

function envValue(container: Container, name: string): string | undefined {
  return container.env?.find((e) => e.name === name)?.value
}

describe('docs/deploy: Kubernetes and KEDA recipes against the real CLI', function () {
  this.timeout(120_000)
  const all = manifests()
  const backfillContainers = all.flatMap(({file, object}) =>
    containersOf(object).flatMap((container) => {
      const invocation = backfillInvocation(container)
      return invocation ? [{file, object, container, ...invocation}] : []
    }),
  )

  it('every manifest parses; the recipes are all there', () => {
    const kinds = all.map(({file, object}) => `${file}:${object.kind}`).sort()
    expect(kinds).to.deep.equal([
      'exporter.yaml:Deployment',
      'exporter.yaml:Service',
      'keda-postgresql.yaml:ScaledObject',
      'keda-postgresql.yaml:TriggerAuthentication',
      'keda-prometheus.yaml:ScaledObject',
      'migrate-job.yaml:Job',
      'worker.yaml:Deployment',
      'worker.yaml:Service',
    ])
    expect(backfillContainers.map((c) => `${c.file}:${c.id}`).sort()).to.deep.equal([
      'exporter.yaml:metrics serve',
      'migrate-job.yaml:migrate',
      'worker.yaml:worker',
    ])
  })

  it("every flag and variable the containers use exists on that command (real --help and the CLI's flag table)", async () => {
    const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8')
    for (const {file, id, args, container} of backfillContainers) {
      const help = await runCli([...id.split(' '), '--help'], {databaseUrl: null})
      expect(help.code, `${file}: backfill ${id} --help`).to.equal(0)
      const flags = commandFlags(id)
      for (const arg of args.filter((a) => a.startsWith('--'))) {
        const name = arg.slice(2).split('=')[0]!
        expect(help.stdout, `${file}: ${arg} in backfill ${id} --help`).to.include(`--${name.replace(/^no-/, '')}`)
        expect(
          flags.some((f) => f.name === name || `no-${f.name}` === name),
          `${file}: ${arg} is a flag of ${id}`,
        ).to.equal(true)
      }
      const envs = new Set(flags.map((f) => f.env).filter(Boolean))
      for (const variable of container.env ?? []) {
        if (NON_FLAG_VARIABLES.includes(variable.name)) {
          expect(readme, `${variable.name} is documented`).to.include(variable.name)
          continue
        }
        expect(envs, `${file}: ${variable.name} is read by backfill ${id}`).to.include(variable.name)
      }
    }
  })

  it('ports and probe paths agree: container port = the port the command serves, probes name it, Services and scrape annotations match', () => {
    for (const {file, object, container, id, args} of backfillContainers) {
      if (id === 'migrate') continue
      const served =
        id === 'worker'
          ? Number(envValue(container, 'BACKFILL_METRICS_PORT'))
          : Number(args[args.indexOf('--port') + 1])
      expect(served, `${file}: serving port`).to.be.greaterThan(0)
      const port = container.ports?.find((p) => p.name === 'metrics')
      expect(port?.containerPort, `${file}: containerPort metrics`).to.equal(served)
      const host = id === 'worker' ? envValue(container, 'BACKFILL_METRICS_HOST') : args[args.indexOf('--host') + 1]
      expect(host, `${file}: binds beyond loopback so the kubelet reaches it`).to.equal('0.0.0.0')
      for (const [kind, p] of [
        ['liveness', container.livenessProbe],
        ['readiness', container.readinessProbe],
      ] as const) {
        expect(p?.httpGet.port, `${file}: ${kind} probe port`).to.equal('metrics')
        expect(p?.httpGet.path, `${file}: ${kind} probe path`).to.equal(kind === 'liveness' ? '/healthz' : '/readyz')
      }
      expect(container.resources?.requests, `${file}: resource requests`).to.not.equal(undefined)
      const service = all.find((m) => m.file === file && m.object.kind === 'Service')!.object
      expect(service.metadata.annotations?.['prometheus.io/port']).to.equal(String(served))
      expect((service.spec.ports as {targetPort: string}[])[0]!.targetPort).to.equal('metrics')
      expect(object.kind).to.equal('Deployment')
    }
  })

  it('the worker gets longer to stop than its shutdown timeout plus preStop', () => {
    const worker = backfillContainers.find((c) => c.id === 'worker')!
    const grace = (worker.object.spec.template as {spec: {terminationGracePeriodSeconds: number}}).spec
      .terminationGracePeriodSeconds
    const shutdown = Number(envValue(worker.container, 'SHUTDOWN_TIMEOUT_SECS'))
    const preStop = worker.container.lifecycle?.preStop?.exec.command ?? []
    expect(preStop[0]).to.equal('sleep')
    // The worker forces the stop 5 s after the timeout and releases its locks; keep a margin for that.
    expect(grace).to.be.greaterThan(shutdown + Number(preStop[1]) + 10)
  })

  describe('against a real database and real processes', () => {
    let t: TestSchema
    const processes: ServerProcess[] = []
    before(async () => {
      t = await TestSchema.create({migrated: false, prefix: 'dep'})
    })
    after(async () => {
      for (const p of processes) await p.stop()
      await t.drop()
    })

    /** The container's environment with the test database and schema, and loopback on a free port. */
    function envFor(container: Container): Record<string, string> {
      const env: Record<string, string> = {}
      for (const variable of container.env ?? []) if (variable.value !== undefined) env[variable.name] = variable.value
      return {
        ...env,
        DATABASE_URL: testUrl(),
        GRAPHILE_WORKER_SCHEMA: t.schema,
        ...(env.BACKFILL_METRICS_PORT ? {BACKFILL_METRICS_PORT: '0', BACKFILL_METRICS_HOST: '127.0.0.1'} : {}),
        // Through no pooler here: prepared statements as the default.
        BACKFILL_PREPARED_STATEMENTS: 'true',
      }
    }

    it('the migration Job runs as written and installs the schema', async () => {
      const job = backfillContainers.find((c) => c.id === 'migrate')!
      const result = await runCli([...job.id.split(' '), ...job.args], {databaseUrl: null, env: envFor(job.container)})
      expect(result.code, result.stderr).to.equal(0)
      expect(parseJson<{schema: string}>(result).schema).to.equal(t.schema)
      const status = await runCli(['schema', 'status', '--schema', t.schema])
      expect(status.code, status.stderr).to.equal(0)
    })

    it('the KEDA PostgreSQL query is what `backfill status --ready-count-sql` prints, and counts ready jobs on a real database', async () => {
      const scaled = all.find((m) => m.file === 'keda-postgresql.yaml' && m.object.kind === 'ScaledObject')!.object
      const trigger = (scaled.spec.triggers as {type: string; metadata: {query: string}}[])[0]!
      expect(trigger.type).to.equal('postgresql')
      const printed = await runCli(['status', '--ready-count-sql', '--schema', 'graphile_worker'], {databaseUrl: null})
      expect(printed.code).to.equal(0)
      expect(trigger.metadata.query).to.equal(printed.stdout.trim())
      // The same query for the test schema, against known jobs: 3 ready, 1 scheduled, 1 running.
      await t.query(`select ${t.quoted}.add_job('a', '{}') from generate_series(1, 4)`)
      await t.query(`select ${t.quoted}.add_job('a', '{}', run_at => now() + interval '1 hour')`)
      await t.query(
        `update ${t.quoted}._private_jobs set locked_at = now(), locked_by = 'pool-x', attempts = 1 where id = (select min(id) from ${t.quoted}._private_jobs)`,
      )
      const forTest = await runCli(['status', '--ready-count-sql', '--schema', t.schema], {databaseUrl: null})
      expect(forTest.stdout.trim()).to.equal(trigger.metadata.query.replace('"graphile_worker"', `"${t.schema}"`))
      const [row] = await t.query<{ready: number}>(forTest.stdout)
      expect(row!.ready).to.equal(3)
      await t.query(`delete from ${t.quoted}._private_jobs`)
    })

    it('the worker and exporter containers, started as written, answer their probes; the KEDA Prometheus query uses served metrics', async () => {
      const ledger = await createLedger(t)
      const started: {file: string; container: Container; process: ServerProcess}[] = []
      for (const {file, container, id, args} of backfillContainers.filter((c) => c.id !== 'migrate')) {
        const runArgs = args.map((a) => (a === '/app/dist/tasks' ? TASKS_DIR : a))
        if (id === 'metrics serve') {
          runArgs[runArgs.indexOf('--port') + 1] = '0'
          runArgs[runArgs.indexOf('--host') + 1] = '127.0.0.1'
          runArgs[runArgs.indexOf('--interval') + 1] = '200ms'
        }
        const env: Record<string, string> = {...envFor(container), LEDGER_TABLE: ledger}
        if (env.BACKFILL_QUEUE_METRICS_INTERVAL_SECS) env.BACKFILL_QUEUE_METRICS_INTERVAL_SECS = '0.2'
        const p = ServerProcess.cli([...id.split(' '), ...runArgs], env)
        processes.push(p)
        started.push({file, container, process: p})
      }
      const names = new Set<string>()
      for (const {file, container, process: p} of started) {
        const [, base] = await p.waitFor(/metrics at (http:\/\/127\.0\.0\.1:\d+)\/metrics/)
        for (const probeSpec of [container.livenessProbe, container.readinessProbe, container.startupProbe]) {
          if (!probeSpec) continue
          await waitUntil(
            `${file} ${probeSpec.httpGet.path}`,
            async () => (await probe(`${base}${probeSpec.httpGet.path}`)).status === 200,
          )
        }
        // The worker serves the queue series once it leads, the exporter after its first scan.
        await waitUntil(`${file} queue metrics`, async () =>
          servedNames(await scrape(`${base}/metrics`)).has('backfill_jobs'),
        )
        for (const name of servedNames(await scrape(`${base}/metrics`))) names.add(name)
      }
      const scaled = all.find((m) => m.file === 'keda-prometheus.yaml')!.object
      const trigger = (scaled.spec.triggers as {type: string; metadata: {query: string}}[])[0]!
      expect(trigger.type).to.equal('prometheus')
      const used = [...trigger.metadata.query.matchAll(/\b(backfill_[a-z0-9_]+)\b/g)].map((m) => m[1])
      expect(used).to.deep.equal(['backfill_jobs'])
      for (const name of used) expect(names, `${name} is served`).to.include(name)
      const target = (scaled.spec.scaleTargetRef as {name: string}).name
      expect(all.some((m) => m.object.kind === 'Deployment' && m.object.metadata.name === target)).to.equal(true)
    })
  })
})
