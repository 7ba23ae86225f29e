/**
 * The operator contract, walked over every command in oclif.manifest.json (not a hand-picked
 * list): a new command fails the first case until it is classified below, and is then covered
 * by every part that applies to its kind.
 */
import {spawnSync} from 'node:child_process'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import {expect} from 'chai'
import {Logger} from 'graphile-worker'

import {BIN, cleanEnv, ROOT, runCli, type CliResult} from '../support/cli.js'
import {catalogSnapshot} from '../support/catalog.js'
import {sql, testDatabaseName, TestSchema, testUrl, uniqueName, urlForDatabase} from '../support/db.js'
import {insertDlq} from '../support/dlq.js'
import {addJob, craftStates, setJob, type CraftedJobs} from '../support/jobs.js'

/**
 * - read-only: never creates, alters or deletes anything.
 * - destructive: moves, changes or deletes jobs/entries: --dry-run, --yes, refused without a TTY.
 * - writes: adds work (enqueue); its --dry-run is read-only.
 * - schema: installs or changes schema objects (migrate, init-dlq); --dry-run is read-only.
 * - serves: streams or serves until stopped (worker, ui, metrics serve) or runs a long load
 *   (bench, on a throwaway schema of its own): only the parts that end by themselves apply.
 * - dev: manages the project's embedded development server (no --database-url, no schema);
 *   its lifecycle is covered by dev.test.ts, here only help and the destructive gate.
 */
type Kind = 'read-only' | 'destructive' | 'writes' | 'schema' | 'serves' | 'dev'

interface Fixture {
  jobs: CraftedJobs
  dlqId: string
}

interface Spec {
  kind: Kind
  /** Arguments that make the command do real work (fixture ids for a migrated schema). */
  argv: (f: Fixture) => string[]
}

const none = (): string[] => []
const COMMANDS: Record<string, Spec> = {
  bench: {kind: 'serves', argv: () => ['--jobs', '100']},
  check: {kind: 'read-only', argv: () => ['--max-ready', '1000', '--max-dlq', '1000']},
  enqueue: {kind: 'writes', argv: () => ['send_email', '--payload', '{"to":"x@example.com"}']},
  'init-dlq': {kind: 'schema', argv: none},
  migrate: {kind: 'schema', argv: none},
  status: {kind: 'read-only', argv: none},
  ui: {kind: 'serves', argv: none},
  'dev:reset': {kind: 'dev', argv: none},
  'dev:start': {kind: 'dev', argv: none},
  'dev:status': {kind: 'dev', argv: none},
  'dev:stop': {kind: 'dev', argv: none},
  'dev:url': {kind: 'dev', argv: none},
  'metrics:serve': {kind: 'serves', argv: none},
  // --force: the fixture's locks are then released whatever liveness makes of their owners.
  'locks:clean': {kind: 'destructive', argv: () => ['--force']},
  'locks:list': {kind: 'read-only', argv: none},
  'dlq:capture': {kind: 'destructive', argv: none},
  'dlq:history': {kind: 'read-only', argv: none},
  'dlq:list': {kind: 'read-only', argv: none},
  'dlq:purge': {kind: 'destructive', argv: (f) => [f.dlqId]},
  'dlq:retry': {kind: 'destructive', argv: (f) => [f.dlqId]},
  'dlq:show': {kind: 'read-only', argv: (f) => [f.dlqId]},
  'dlq:stats': {kind: 'read-only', argv: none},
  'jobs:fail': {kind: 'destructive', argv: (f) => [f.jobs.ready]},
  'jobs:list': {kind: 'read-only', argv: none},
  'jobs:remove': {kind: 'destructive', argv: (f) => [f.jobs.ready]},
  'jobs:reschedule': {kind: 'destructive', argv: (f) => [f.jobs.ready, '--delay', '1h']},
  'jobs:run-now': {kind: 'destructive', argv: (f) => [f.jobs.scheduled]},
  'jobs:show': {kind: 'read-only', argv: (f) => [f.jobs.ready]},
  worker: {kind: 'serves', argv: none},
  'worker:start': {kind: 'serves', argv: none},
  'schema:print': {kind: 'read-only', argv: none},
  'schema:status': {kind: 'read-only', argv: none},
}

/** Fixture ids for runs where no fixture exists (failure paths fail before they matter). */
const PLACEHOLDER: Fixture = {
  jobs: {
    ready: '1',
    scheduled: '2',
    retrying: '3',
    exhausted: '4',
    running: '5',
    queueHead: '6',
    blocked: '7',
    deadOwner: 'pool-x',
  },
  dlqId: '1',
}

interface ManifestCommand {
  id: string
  hidden?: boolean
  examples?: unknown[]
  flags: Record<string, {name: string; type: string; default?: unknown}>
}

function manifest(): ManifestCommand[] {
  const parsed = JSON.parse(readFileSync(path.join(ROOT, 'oclif.manifest.json'), 'utf8')) as {
    commands: Record<string, ManifestCommand>
  }
  return Object.values(parsed.commands).sort((a, b) => a.id.localeCompare(b.id))
}

/** The exit codes the README's "Exit codes" table documents. */
function documentedExitCodes(): Set<number> {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8')
  const section = readme.split('\n## Exit codes')[1]?.split('\n## ')[0] ?? ''
  return new Set([...section.matchAll(/^\| `(\d+)` \|/gm)].map((m) => Number(m[1])))
}

const words = (id: string): string[] => id.split(':')
const ANSI = /\u001B\[/
const PASSWORD = 'Pw-d0nt-Pr1nt-me'
/** Refused at once: nothing listens on port 1. */
const UNREACHABLE = `postgres://operator:${PASSWORD}@127.0.0.1:1/queue`

/** A real server URL with a password in it (the embedded server trusts its socket, so any works). */
function urlWithPassword(): string {
  return testUrl().replace(/^(postgres(?:ql)?:\/\/)(?:[^@/]*@)?/, `$1postgres:${PASSWORD}@`)
}

type ErrorEnvelope = {error: {code: string; message: string; exitCode: number; suggestions: string[]}}

/** Exactly one JSON document on stdout (pretty or not), nothing after it. */
function oneDocument(result: CliResult, what: string): unknown {
  try {
    return JSON.parse(result.stdout) as unknown
  } catch {
    throw new Error(
      `${what}: stdout is not one JSON document (exit ${result.code}):\n${result.stdout.slice(0, 2000)}\nstderr:\n${result.stderr.slice(0, 2000)}`,
    )
  }
}

function expectClean(result: CliResult, what: string): void {
  expect(result.stdout + result.stderr, `${what}: password printed`).not.to.contain(PASSWORD)
  expect(result.stdout, `${what}: colour on a pipe (stdout)`).not.to.match(ANSI)
  expect(result.stderr, `${what}: colour on a pipe (stderr)`).not.to.match(ANSI)
}

/** Every row of every table in the schema, hashed per table: any data change shows. */
async function dataSnapshot(t: TestSchema): Promise<Record<string, string>> {
  const tables = await t.query<{relname: string}>(
    `select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where n.nspname = $1 and c.relkind in ('r', 'p') order by 1`,
    [t.schema],
  )
  const out: Record<string, string> = {}
  for (const {relname} of tables) {
    const [row] = await t.query<{h: string | null; n: string}>(
      `select md5(string_agg(x::text, ',' order by x::text)) as h, count(*)::text as n from ${t.quoted}."${relname}" x`,
    )
    out[relname] = `${row?.n}:${row?.h ?? ''}`
  }
  return out
}

async function schemaExists(schema: string): Promise<boolean> {
  const rows = await sql<{exists: boolean}>('select exists (select 1 from pg_namespace where nspname = $1) as exists', [
    schema,
  ])
  return rows[0]?.exists ?? false
}

describe('operator contract, every command in the manifest (real binary)', function () {
  this.timeout(300_000)
  const commands = manifest()
  const exitCodes = documentedExitCodes()
  const ofKind = (...kinds: Kind[]): ManifestCommand[] =>
    commands.filter((c) => kinds.includes(COMMANDS[c.id]?.kind as Kind))
  const spec = (id: string): Spec => COMMANDS[id] as Spec
  // The worker needs a task to get as far as connecting.
  let tasks = ''
  before(() => {
    tasks = mkdtempSync(path.join(os.tmpdir(), 'bf-tasks-'))
    writeFileSync(path.join(tasks, 'send_email.js'), 'module.exports = async () => {}\n')
    COMMANDS.worker = {kind: 'serves', argv: () => ['--tasks', tasks]}
    COMMANDS['worker:start'] = {kind: 'serves', argv: () => ['--tasks', tasks]}
  })
  after(() => rmSync(tasks, {recursive: true, force: true}))

  it('every command is classified, and the classification matches the flags (--yes means destructive)', () => {
    expect(exitCodes.size, 'README exit code table').to.be.greaterThan(5)
    expect(commands.map((c) => c.id).sort(), 'classify new commands in COMMANDS').to.deep.equal(
      Object.keys(COMMANDS).sort(),
    )
    for (const command of commands) {
      const destructive = COMMANDS[command.id]?.kind === 'destructive' || command.id === 'dev:reset'
      expect(Boolean(command.flags.yes), `${command.id}: --yes only on destructive commands`).to.equal(destructive)
    }
  })

  it('--help of every command shows examples, no colour on a pipe, and no password from the environment', async () => {
    for (const command of commands) {
      expect(command.examples ?? [], `${command.id}: examples`).not.to.be.empty
      const result = await runCli([...words(command.id), '--help'], {
        databaseUrl: UNREACHABLE,
        env: {PGPASSWORD: PASSWORD, BACKFILL_DATABASE_URL: UNREACHABLE},
      })
      expect(result.code, `${command.id} --help: ${result.stderr}`).to.equal(0)
      expect(result.stdout, `${command.id} --help`).to.contain('EXAMPLES')
      expectClean(result, `${command.id} --help`)
    }
    // -h is --help, for the root, a topic and a command (oclif.additionalHelpFlags).
    for (const argv of [['-h'], ['dlq', '-h'], ['status', '-h']]) {
      const short = await runCli(argv, {databaseUrl: UNREACHABLE})
      expect(short.code, `${argv.join(' ')}: ${short.stderr}`).to.equal(0)
      expect(short.stdout, argv.join(' ')).to.contain('USAGE')
    }
  })

  it('unreachable database, password in the URL: one JSON error envelope with a documented code, or one line of text; no password', async () => {
    // ui has no --json (it serves pages); metrics serve keeps serving and reports failed
    // scans on /metrics, as a scrape target should; dev commands and schema print connect nowhere.
    {
      for (const command of commands) {
        if (['ui', 'metrics:serve'].includes(command.id) || !command.flags['database-url']) continue
        const argv = [...words(command.id), ...spec(command.id).argv(PLACEHOLDER)]
        const yes = command.flags.yes ? ['--yes'] : []
        const json = await runCli([...argv, ...yes, '--json'], {databaseUrl: UNREACHABLE, timeoutMs: 30_000})
        const what = `${command.id} --json`
        expectClean(json, what)
        const envelope = oneDocument(json, what) as ErrorEnvelope
        expect(envelope.error?.code, `${what}: ${json.stdout}`).to.equal('E_CONNECTION')
        expect(envelope.error.exitCode, what).to.equal(json.code)
        expect(exitCodes.has(json.code as number), `${what}: exit ${json.code} documented`).to.equal(true)
        expect(json.code, what).to.equal(3)

        // NO_COLOR wins over FORCE_COLOR. sslmode=require, as managed databases ask for: the
        // reason stays one line (a dependency's multi-line notice must not bury it).
        const text = await runCli([...argv, ...yes], {
          databaseUrl: `${UNREACHABLE}?sslmode=require`,
          timeoutMs: 30_000,
          env: {FORCE_COLOR: '1', NO_COLOR: '1'},
        })
        expectClean(text, command.id)
        expect(text.code, `${command.id}: ${text.stderr}`).to.equal(3)
        expect(text.stdout, command.id).to.equal('')
        const lines = text.stderr.split('\n').filter((l) => l !== '')
        expect(
          lines.filter((l) => l.startsWith('Error: ')),
          command.id,
        ).to.have.length(1)
        for (const line of lines)
          expect(line, `${command.id}: stderr\n${text.stderr}`).to.match(/^(Error: |Warning: | {2}→ )/)
      }
    }
  })

  it('bad input to every command (unknown flag, unsafe schema name, bad duration, unparseable URL with a password): exit 2/3, one JSON envelope, no password', async () => {
    const badUrl = `postgres://operator:${PASSWORD}@db.example:notaport/queue`
    for (const command of commands) {
      if (command.id === 'ui') continue // no --json: it serves pages (its flags are checked in console.test.ts)
      const base = [...words(command.id), ...spec(command.id).argv(PLACEHOLDER)]
      const cases: {argv: string[]; code: string; url?: string}[] = [{argv: ['--no-such-flag'], code: 'E_USAGE'}]
      if (command.flags.schema) cases.push({argv: ['--schema', 'jobs; drop table x'], code: 'E_INVALID_SCHEMA'})
      if (command.flags['statement-timeout'])
        cases.push({argv: ['--statement-timeout', 'soon'], code: 'E_INVALID_DURATION'})
      if (command.flags['database-url']) cases.push({argv: [], code: 'E_BAD_DATABASE_URL', url: badUrl})
      for (const c of cases) {
        const what = `${command.id} ${c.argv.join(' ')}${c.url ? ' (unparseable URL)' : ''}`
        const result = await runCli([...base, ...c.argv, '--json'], {
          databaseUrl: c.url ?? UNREACHABLE,
          cwd: os.tmpdir(),
        })
        expectClean(result, what)
        const envelope = oneDocument(result, what) as ErrorEnvelope
        expect(envelope.error?.code, `${what}: ${result.stdout}`).to.equal(c.code)
        expect(result.code, `${what}: ${result.stdout}`).to.equal(c.code === 'E_BAD_DATABASE_URL' ? 3 : 2)
        expect(envelope.error.exitCode, what).to.equal(result.code)
        expect(envelope.error.message, what).not.to.contain('\n')
      }
    }
  })

  describe('against a real server', () => {
    const schemas: TestSchema[] = []
    let t: TestSchema
    let fixture: Fixture
    before(async () => {
      t = await TestSchema.create({migrated: true})
      schemas.push(t)
      const jobs = await craftStates(t)
      const [dlqId] = await insertDlq(t, [{task: 'send_email', lastError: 'SMTP 421'}])
      fixture = {jobs, dlqId: dlqId as string}
    })
    after(async () => {
      for (const s of schemas) await s.drop()
    })

    const url = (): string => urlWithPassword()

    it('un-migrated schema (absent, or empty): exit 4 in a JSON document, no password, and the schema is left as it was', async () => {
      // Commands that install the schema (migrate, init-dlq, worker --migrate) are checked
      // with --dry-run; bench migrates a throwaway schema of its own; serving commands do not end.
      const empty = await TestSchema.create()
      schemas.push(empty)
      await empty.query(`create schema ${empty.quoted}`)
      const before = await catalogSnapshotOrEmpty(empty.schema)
      for (const command of ofKind('read-only', 'destructive', 'writes', 'schema')) {
        const dryRun = spec(command.id).kind === 'schema' ? ['--dry-run'] : []
        const yes = command.flags.yes ? ['--yes'] : []
        for (const schema of [uniqueName('absent'), empty.schema]) {
          const what = `${command.id} --schema ${schema === empty.schema ? 'empty' : 'absent'}`
          const result = await runCli(
            [
              ...words(command.id),
              ...spec(command.id).argv(PLACEHOLDER),
              ...dryRun,
              ...yes,
              '--schema',
              schema,
              '--json',
            ],
            {databaseUrl: url()},
          )
          expectClean(result, what)
          const document = oneDocument(result, what) as ErrorEnvelope
          expect(exitCodes.has(result.code as number), `${what}: exit ${result.code} documented`).to.equal(true)
          if (command.id === 'schema:print') {
            expect(result.code, what).to.equal(0) // prints the SQL it would install; needs no database
          } else if (spec(command.id).kind === 'schema') {
            expect(result.code, `${what}: ${result.stdout}`).to.equal(0) // a dry run of the install
          } else {
            expect(result.code, `${what}: ${result.stdout}`).to.equal(4)
            // schema status and check report a finding in their own document (README).
            if (!['schema:status', 'check'].includes(command.id))
              expect(document.error?.exitCode, `${what}: ${result.stdout}`).to.equal(4)
          }
          if (schema !== empty.schema) expect(await schemaExists(schema), `${what} created the schema`).to.equal(false)
        }
      }
      expect(await catalogSnapshotOrEmpty(empty.schema), 'the empty schema changed').to.deep.equal(before)
    })

    it('a schema graphile-worker migrated without the DLQ: no command but migrate/init-dlq adds or alters a schema object', async () => {
      const bare = await TestSchema.create()
      schemas.push(bare)
      const {runMigrations} = await import('graphile-worker')
      await runMigrations({pgPool: bare.db.pool, schema: bare.schema, logger: quietLogger()})
      // No backfill_workers table here (craftStates registers a worker): plain add_job rows.
      const ready = await addJob(bare, 'send_email', {key: 'mail:1'})
      const scheduled = await addJob(bare, 'send_email', {runAt: '1 hour'})
      const exhausted = await addJob(bare, 'resize_image', {maxAttempts: 1})
      await setJob(bare, exhausted, `attempts = 1, last_error = 'boom'`)
      const bareFixture: Fixture = {jobs: {...PLACEHOLDER.jobs, ready, scheduled, exhausted}, dlqId: '1'}
      for (const command of ofKind('read-only', 'destructive', 'writes', 'schema')) {
        const dryRun = spec(command.id).kind === 'schema' ? ['--dry-run'] : []
        const yes = command.flags.yes ? ['--yes'] : []
        const what = `${command.id} on a schema without the DLQ`
        const catalog = await catalogSnapshot(bare.url, bare.schema)
        const result = await runCli(
          [
            ...words(command.id),
            ...spec(command.id).argv(bareFixture),
            ...dryRun,
            ...yes,
            '--schema',
            bare.schema,
            '--json',
          ],
          {databaseUrl: url()},
        )
        expectClean(result, what)
        oneDocument(result, what)
        expect(exitCodes.has(result.code as number), `${what}: exit ${result.code}`).to.equal(true)
        expect(result.code, `${what}: ${result.stdout}`).to.be.oneOf([0, 4, 6])
        expect(await catalogSnapshot(bare.url, bare.schema), `${what} changed the catalog`).to.deep.equal(catalog)
      }
    })

    it('read-only commands and every --dry-run leave the catalog and the data of a migrated schema with a DLQ unchanged', async () => {
      const readOnly = ofKind('read-only').map((c) => ({command: c, extra: [] as string[]}))
      const dryRuns = commands.filter((c) => c.flags['dry-run']).map((c) => ({command: c, extra: ['--dry-run']}))
      expect(dryRuns.map((r) => r.command.id)).to.include.members(['migrate', 'init-dlq', 'enqueue', 'dlq:purge'])
      for (const {command, extra} of [...readOnly, ...dryRuns]) {
        if (spec(command.id).kind === 'dev') continue // the dev server's data directory, not a schema
        const argv = [...words(command.id), ...spec(command.id).argv(fixture), ...extra, '--schema', t.schema]
        const what = `${command.id} ${extra.join(' ')}`.trim()
        const catalog = await catalogSnapshot(t.url, t.schema)
        const data = await dataSnapshot(t)
        for (const json of [true, false]) {
          const result = await runCli(json ? [...argv, '--json'] : argv, {databaseUrl: url()})
          expectClean(result, what)
          expect(exitCodes.has(result.code as number), `${what}: exit ${result.code}`).to.equal(true)
          // status/check may report findings (the fixture has dead owners); nothing else may fail.
          if (!['check', 'schema:status'].includes(command.id))
            expect(result.code, `${what} (json ${json}): ${result.stdout}${result.stderr}`).to.equal(0)
          if (json) oneDocument(result, what)
          expect(await catalogSnapshot(t.url, t.schema), `${what} changed the catalog`).to.deep.equal(catalog)
          expect(await dataSnapshot(t), `${what} changed data`).to.deep.equal(data)
        }
      }
    })

    it('roles without privileges (no schema USAGE; read-only grants): exit 3 with a JSON envelope, no password, nothing changed', async () => {
      const noUsage = uniqueName('bf_nousage')
      const readOnly = uniqueName('bf_readonly')
      await sql(`create role ${noUsage} login`)
      await sql(`create role ${readOnly} login`)
      await sql(`grant usage on schema ${t.quoted} to ${readOnly}`)
      await sql(`grant select on all tables in schema ${t.quoted} to ${readOnly}`)
      try {
        for (const role of [noUsage, readOnly]) {
          const roleUrl = urlForDatabase(testDatabaseName(), `${role}:${PASSWORD}`)
          for (const command of ofKind('read-only', 'destructive', 'writes', 'schema')) {
            if (command.id === 'schema:print') continue // connects nowhere
            const yes = command.flags.yes ? ['--yes'] : []
            const argv = [
              ...words(command.id),
              ...spec(command.id).argv(fixture),
              ...yes,
              '--schema',
              t.schema,
              '--json',
            ]
            const what = `${command.id} as ${role === noUsage ? 'a role without USAGE' : 'a read-only role'}`
            const catalog = await catalogSnapshot(t.url, t.schema)
            const data = await dataSnapshot(t)
            const result = await runCli(argv, {databaseUrl: roleUrl})
            expectClean(result, what)
            const document = oneDocument(result, what) as ErrorEnvelope
            // check and schema status report their findings in their own document.
            if (!['check', 'schema:status'].includes(command.id)) {
              expect(result.code, `${what}: ${result.stdout}`).to.equal(3)
              expect(document.error?.exitCode, `${what}: ${result.stdout}`).to.equal(3)
            } else {
              expect(exitCodes.has(result.code as number), `${what}: exit ${result.code}`).to.equal(true)
              expect(result.code, `${what}: ${result.stdout}`).not.to.equal(0)
            }
            expect(await catalogSnapshot(t.url, t.schema), `${what} changed the catalog`).to.deep.equal(catalog)
            expect(await dataSnapshot(t), `${what} changed data`).to.deep.equal(data)
          }
        }
      } finally {
        for (const role of [noUsage, readOnly]) {
          await sql(`drop owned by ${role}`).catch(() => undefined)
          await sql(`drop role if exists ${role}`)
        }
      }
    })

    it("the worker's log (--once) never prints the connection's password, even when a task's error quotes the URL", async () => {
      // worker start is an alias of worker (same flags); --once ends by itself.
      const own = await TestSchema.create({migrated: true})
      schemas.push(own)
      const dir = mkdtempSync(path.join(os.tmpdir(), 'bf-leaky-'))
      writeFileSync(
        path.join(dir, 'leaky.js'),
        'module.exports = async () => { throw new Error(`cannot reach ${process.env.DATABASE_URL}`) }\n',
      )
      try {
        await addJob(own, 'leaky', {maxAttempts: 1})
        for (const format of ['text', 'json']) {
          const result = await runCli(
            ['worker', '--tasks', dir, '--once', '--schema', own.schema, '--log-format', format],
            {databaseUrl: url()},
          )
          expect(result.code, result.stderr).to.equal(0)
          expect(result.stdout, `--log-format ${format}`).to.contain('cannot reach postgres://postgres:***@')
          expectClean(result, `worker --log-format ${format}`)
          await addJob(own, 'leaky', {maxAttempts: 1})
        }
      } finally {
        rmSync(dir, {recursive: true, force: true})
      }
    })

    it('on a terminal, destructive commands ask; declining exits 5 and changes nothing; --no-color leaves the prompt plain', async function () {
      // util-linux script(1) gives the command a pseudo-terminal (stdin and stderr are TTYs).
      if (spawnSync('script', ['--version']).status !== 0) this.skip()
      const sgr = /\u001B\[[0-9;]*m/
      for (const command of ofKind('destructive')) {
        const argv = [...words(command.id), ...spec(command.id).argv(fixture), '--schema', t.schema, '--no-color']
        const data = await dataSnapshot(t)
        const line = ['env', `DATABASE_URL=${url()}`, process.execPath, BIN, ...argv].map(shellQuote).join(' ')
        const result = spawnSync('script', ['-qec', line, '/dev/null'], {
          input: 'n\r',
          encoding: 'utf8',
          timeout: 60_000,
          env: cleanEnv({TERM: 'xterm'}),
        })
        const out = result.stdout
        expect(result.status, `${command.id}: ${out}`).to.equal(5)
        expect(out, command.id).to.match(/\(y\/N\)/)
        expect(out, command.id).to.contain('Error: aborted: nothing was changed')
        expect(out, `${command.id} --no-color: colour in the prompt`).not.to.match(sgr)
        expect(out, command.id).not.to.contain(PASSWORD)
        expect(await dataSnapshot(t), `${command.id} changed data after a declined prompt`).to.deep.equal(data)
      }
    })

    it('destructive commands refuse without --yes when there is no TTY (text and --json), exit 2, and change nothing', async () => {
      for (const command of ofKind('destructive')) {
        expect(command.flags['dry-run'], `${command.id} --dry-run`).to.exist
        expect(command.flags.yes, `${command.id} --yes`).to.exist
        const argv = [...words(command.id), ...spec(command.id).argv(fixture), '--schema', t.schema]
        const data = await dataSnapshot(t)
        for (const json of [false, true]) {
          const what = `${command.id}${json ? ' --json' : ''}`
          const result = await runCli(json ? [...argv, '--json'] : argv, {databaseUrl: url()})
          expectClean(result, what)
          expect(result.code, `${what}: ${result.stdout}${result.stderr}`).to.equal(2)
          if (json) {
            expect((oneDocument(result, what) as ErrorEnvelope).error.code, what).to.equal('E_CONFIRMATION_REQUIRED')
          } else {
            expect(result.stdout, what).to.equal('')
            expect(result.stderr, what).to.match(/^Error: refusing to .* without --yes/m)
          }
          expect(await dataSnapshot(t), `${what} changed data`).to.deep.equal(data)
        }
      }
      // dev reset, in a project of its own: refused before anything is looked at.
      const project = mkdtempSync(path.join(os.tmpdir(), 'bf-dev-'))
      try {
        const reset = await runCli(['dev', 'reset'], {cwd: project, databaseUrl: null})
        expect(reset.code, reset.stderr).to.equal(2)
        expect(reset.stderr).to.match(/^Error: refusing to .* without --yes/m)
      } finally {
        rmSync(project, {recursive: true, force: true})
      }
    })
  })
})

/** The catalog of a schema that may hold no migrations table (catalogSnapshot reads it last). */
async function catalogSnapshotOrEmpty(schema: string): Promise<Record<string, string[]>> {
  const rows = await sql<{x: string}>(
    `select c.relname || ':' || c.relkind::text as x from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = $1
     union all select 'proc ' || p.proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname = $1
     union all select 'trigger ' || t.tgname from pg_trigger t join pg_class c on c.oid = t.tgrelid join pg_namespace n on n.oid = c.relnamespace where n.nspname = $1
     order by 1`,
    [schema],
  )
  return {objects: rows.map((r) => r.x)}
}

function quietLogger() {
  return new Logger(() => () => undefined)
}

function shellQuote(word: string): string {
  return `'${word.replaceAll("'", "'\\''")}'`
}
