import http from 'node:http'
import type {AddressInfo} from 'node:net'

import {expect} from 'chai'

import {Logger, runOnce} from 'graphile-worker'

import {createConsoleHandler} from '../../src/lib/console/handler.js'
import {overview} from '../../src/lib/console/operations.js'
import {ThroughputRing} from '../../src/lib/console/throughput.js'
import {SCHEMAS, openApiDocument} from '../../src/lib/console/openapi.js'
import {ROUTES} from '../../src/lib/console/routes.js'
import {checkBind, startConsoleServer} from '../../src/lib/console/server.js'
import {ConfigError} from '../../src/lib/errors.js'
import {ApiClient, startConsole, type RunningConsole} from '../support/console.js'
import {TestSchema, testUrl} from '../support/db.js'
import {fillDlq, whereIsEverything} from '../support/dlq.js'
import {runInProcess} from '../support/in-process.js'
import {addJob, craftStates, jobExists} from '../support/jobs.js'
import {lockedJob} from '../support/locks.js'

/** A GET with headers fetch() will not send as given (Host). */
function rawGet(
  origin: string,
  path: string,
  headers: Record<string, string>,
): Promise<{status: number; body: string}> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${origin}${path}`, {headers}, (res) => {
      let body = ''
      res.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')))
      res.on('end', () => resolve({status: res.statusCode ?? 0, body}))
    })
    req.on('error', reject)
    req.end()
  })
}

const TOKEN = 'test-token-0123456789abcdef'

/** The keys of a JSON document, recursively (array items by their first element): its shape. */
function shape(value: unknown): unknown {
  if (Array.isArray(value)) return value.length === 0 ? [] : [shape(value[0])]
  if (value !== null && typeof value === 'object')
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((k) => [k, shape((value as Record<string, unknown>)[k])]),
    )
  return value === null ? 'null' : typeof value
}

/** A minimal check of a document against the OpenAPI schemas (types, required fields, nullable, $ref). */
function validate(schema: Record<string, unknown>, value: unknown, where: string): string[] {
  if (schema.$ref) return validate(SCHEMAS[String(schema.$ref).split('/').pop() as string] ?? {}, value, where)
  if (value === null) return schema.nullable ? [] : [`${where}: null but not nullable`]
  const type = schema.type
  const problems: string[] = []
  if (type === 'object') {
    if (typeof value !== 'object' || Array.isArray(value)) return [`${where}: expected an object`]
    for (const key of (schema.required as string[] | undefined) ?? [])
      if (!(key in (value as object))) problems.push(`${where}.${key}: missing`)
    for (const [key, sub] of Object.entries((schema.properties as Record<string, Record<string, unknown>>) ?? {}))
      if (key in (value as object))
        problems.push(...validate(sub, (value as Record<string, unknown>)[key], `${where}.${key}`))
  } else if (type === 'array') {
    if (!Array.isArray(value)) return [`${where}: expected an array`]
    value.forEach((item, i) =>
      problems.push(...validate(schema.items as Record<string, unknown>, item, `${where}[${i}]`)),
    )
  } else if (type === 'integer' || type === 'number') {
    if (typeof value !== 'number') problems.push(`${where}: expected a number, got ${typeof value}`)
  } else if (type === 'string') {
    if (typeof value !== 'string') problems.push(`${where}: expected a string, got ${typeof value}`)
    else if (schema.format === 'date-time' && Number.isNaN(Date.parse(value)))
      problems.push(`${where}: not a date-time`)
  } else if (type === 'boolean' && typeof value !== 'boolean') problems.push(`${where}: expected a boolean`)
  return problems
}

describe('console admin API over HTTP (backfill ui)', function () {
  this.timeout(60_000)
  let t: TestSchema
  let c: RunningConsole | undefined
  let api: ApiClient

  beforeEach(async () => {
    t = await TestSchema.create({migrated: true, prefix: 'ui'})
  })
  afterEach(async () => {
    await c?.stop()
    c = undefined
    await t.drop()
  })

  const start = async (options: Parameters<typeof startConsole>[1] = {}): Promise<void> => {
    c = await startConsole(t, options)
    api = new ApiClient(c.origin)
  }

  describe('reads: the CLI --json documents', () => {
    it('every GET route answers the same document shape as the CLI command under --json', async () => {
      const crafted = await craftStates(t)
      await fillDlq(t, 12, {tasks: 2, keyed: true})
      await start()
      const [entry] = await t.query<{id: string}>(`select id::text from ${t.quoted}.backfill_dlq order by id limit 1`)
      const cli = async (args: string[]): Promise<unknown> => {
        const result = await runInProcess([...args, '--schema', t.schema, '--json'], {env: {DATABASE_URL: testUrl()}})
        return JSON.parse(result.stdout)
      }
      const pairs: [string, string[]][] = [
        ['/api/v1/status', ['status']],
        ['/api/v1/jobs', ['jobs', 'list']],
        [
          '/api/v1/jobs?state=retrying&q=--task+resize_image',
          ['jobs', 'list', '--state', 'retrying', '--task', 'resize_image'],
        ],
        [`/api/v1/jobs/${crafted.ready}`, ['jobs', 'show', crafted.ready]],
        ['/api/v1/job-keys/mail%3A1', ['jobs', 'show', '--job-key', 'mail:1']],
        ['/api/v1/dlq', ['dlq', 'list']],
        ['/api/v1/dlq/groups', ['dlq', 'stats']],
        [`/api/v1/dlq/${entry!.id}`, ['dlq', 'show', entry!.id]],
        ['/api/v1/dlq/history', ['dlq', 'history']],
        ['/api/v1/locks', ['locks', 'list']],
        ['/api/v1/schema', ['schema', 'status']],
      ]
      for (const [path, args] of pairs) {
        const answer = await api.get(path)
        expect(answer.status, `${path}: ${JSON.stringify(answer.body)}`).to.equal(200)
        expect(shape(answer.body), path).to.deep.equal(shape(await cli(args)))
      }
      // Previews: the documents of the dry runs (the API adds only confirm).
      const previews: [string, Record<string, unknown>, string[]][] = [
        ['/api/v1/dlq/retry', {task: 'task_1'}, ['dlq', 'retry', '--task', 'task_1']],
        ['/api/v1/dlq/purge', {task: 'task_1'}, ['dlq', 'purge', '--task', 'task_1']],
        ['/api/v1/jobs/actions/remove', {task: 'send_email'}, ['jobs', 'remove', '--task', 'send_email']],
        ['/api/v1/locks/clean', {}, ['locks', 'clean']],
      ]
      for (const [path, body, args] of previews) {
        const answer = await api.post<Record<string, unknown>>(path, {...body, dryRun: true})
        expect(answer.status, `${path}: ${JSON.stringify(answer.body)}`).to.equal(200)
        const {confirm, ...document} = answer.body
        expect(confirm).to.have.property('token')
        expect(shape(document), path).to.deep.equal(shape(await cli([...args, '--dry-run'])))
      }
      // Same data, not only the same keys: the jobs list is the CLI's, job for job.
      const listed = (await api.get<{jobs: {id: string}[]}>('/api/v1/jobs')).body.jobs.map((j) => j.id)
      const viaCli = ((await cli(['jobs', 'list'])) as {jobs: {id: string}[]}).jobs.map((j) => j.id)
      expect(listed).to.deep.equal(viaCli)
      // Payloads exactly as stored, as the CLI writes them (a double would round this number).
      const [big] = await t.query<{id: string}>(
        `select id::text from ${t.quoted}.add_job('big', '{"n": 9007199254740993}'::json)`,
      )
      const text = await (await fetch(`${c!.origin}/api/v1/jobs/${big!.id}`)).text()
      expect(text).to.include('"payload":{"n": 9007199254740993}')
    })

    it('pages jobs by keyset cursor and filters with the CLI grammar in q', async () => {
      for (let i = 0; i < 7; i++) await t.query(`select ${t.quoted}.add_job('page_task', json_build_object('i', ${i}))`)
      await start()
      const first = await api.get<{jobs: {id: string}[]; nextCursor: string}>('/api/v1/jobs?limit=3&task=page_task')
      expect(first.body.jobs).to.have.length(3)
      const second = await api.get<{jobs: {id: string}[]; nextCursor: string | null}>(
        `/api/v1/jobs?limit=3&task=page_task&cursor=${encodeURIComponent(first.body.nextCursor)}`,
      )
      expect(second.body.jobs.map((j) => j.id)).to.not.include.members(first.body.jobs.map((j) => j.id))
      const q = await api.get<{jobs: unknown[]}>(`/api/v1/jobs?q=${encodeURIComponent("--task 'page_task' --limit=2")}`)
      expect(q.body.jobs).to.have.length(2)
    })

    it('twenty concurrent overview requests cost one database round of queries (shared cache)', async () => {
      await start({cacheTtlMs: 600_000})
      const before = c!.handler.cache.loads
      const answers = await Promise.all(Array.from({length: 20}, () => api.get('/api/v1/overview')))
      expect(answers.map((a) => a.status)).to.deep.equal(Array(20).fill(200))
      expect(c!.handler.cache.loads - before).to.equal(1)
    })

    it('runs every query under the statement timeout', async () => {
      await start()
      const [row] = (await c!.db.pool.query<{statement_timeout: string}>('show statement_timeout')).rows
      expect(row!.statement_timeout).to.equal('30s')
    })
  })

  describe('throughput estimate', () => {
    it('two samples around a real graphile-worker completing jobs estimate what it completed', async () => {
      for (let i = 0; i < 3; i++) await addJob(t, 'old')
      const ring = new ThroughputRing(60, 0)
      const first = await overview(t.db, {throughput: ring})
      expect(first.throughput?.perMinute).to.equal(null)
      // 7 new jobs; a real worker completes all 10 (graphile deletes them); 2 more stay queued.
      for (let i = 0; i < 7; i++) await addJob(t, 'work')
      let ran = 0
      await runOnce({
        pgPool: t.db.pool,
        schema: t.schema,
        concurrency: 1,
        noHandleSignals: true,
        logger: new Logger(() => () => undefined),
        crontab: '',
        taskList: {old: async () => void (ran += 1), work: async () => void (ran += 1)},
      })
      expect(ran).to.equal(10)
      await addJob(t, 'later', {runAt: '1 hour'})
      await addJob(t, 'later', {runAt: '1 hour'})
      await new Promise((r) => setTimeout(r, 20))
      const second = await overview(t.db, {throughput: ring})
      const tp = second.throughput!
      expect(tp.estimate).to.equal(true)
      expect(tp.samples).to.equal(2)
      expect(tp.points.map((p) => p.completed)).to.deep.equal([10])
      expect(tp.completed).to.equal(10)
      expect(tp.perMinute).to.be.greaterThan(0)
      // Over HTTP the console samples on each overview load (first sample: no rate yet).
      await start()
      const answer = await api.get<{throughput: {samples: number; perMinute: number | null}}>('/api/v1/overview')
      expect(answer.body.throughput.samples).to.equal(1)
      expect(answer.body.throughput.perMinute).to.equal(null)
    })
  })

  describe('errors: the CLI error envelope', () => {
    it('answers bad input, unknown things and wrong methods with the envelope and a fitting status', async () => {
      await start()
      const cases: [Promise<{status: number; body: Record<string, unknown>}>, number, string][] = [
        [api.get('/api/v1/nope'), 404, 'E_NOT_FOUND'],
        [api.get('/api/v1/jobs?state=sleeping'), 400, 'E_BAD_STATE'],
        [api.get('/api/v1/jobs?since=yesterday'), 400, 'E_BAD_TIME'],
        [api.get('/api/v1/jobs?limit=0'), 400, 'E_USAGE'],
        [api.get('/api/v1/jobs?q=--nope+1'), 400, 'E_USAGE'],
        [api.get('/api/v1/jobs/999999'), 404, 'E_NOT_FOUND'],
        [api.get('/api/v1/jobs/abc'), 400, 'E_BAD_ID'],
        [api.get('/api/v1/dlq/999999'), 404, 'E_NOT_FOUND'],
        [api.get('/api/v1/dlq/groups?group=zz'), 400, 'E_BAD_GROUP'],
        [api.post('/api/v1/locks'), 405, 'E_METHOD'],
        [api.post('/api/v1/dlq/purge', {yes: true}), 400, 'E_EMPTY_SELECTION'],
        [api.post('/api/v1/dlq/retry', {task: 'x'}), 400, 'E_CONFIRMATION_REQUIRED'],
        [api.post('/api/v1/dlq/retry', {task: 'x', confirm: 'made-up'}), 409, 'E_PREVIEW_EXPIRED'],
        [api.post('/api/v1/jobs/actions/explode', {yes: true, task: 'x'}), 404, 'E_NOT_FOUND'],
      ]
      for (const [promise, status, code] of cases) {
        const answer = await promise
        expect(answer.status, JSON.stringify(answer.body)).to.equal(status)
        const error = (answer.body as {error: Record<string, unknown>}).error
        expect(error.code).to.equal(code)
        expect(error.message).to.be.a('string').and.not.equal('')
        expect(error.exitCode).to.be.a('number')
        expect(error.suggestions).to.be.an('array')
      }
      const raw = await fetch(`${c!.origin}/api/v1/dlq/retry`, {
        method: 'POST',
        headers: {'content-type': 'application/json', 'x-csrf-token': await api.token()},
        body: '{"task": ',
      })
      expect(raw.status).to.equal(400)
      expect(((await raw.json()) as {error: {code: string}}).error.code).to.equal('E_BAD_JSON')
      const xml = await fetch(`${c!.origin}/api/v1/dlq/retry`, {
        method: 'POST',
        headers: {'content-type': 'text/xml', 'x-csrf-token': await api.token()},
        body: '<x/>',
      })
      expect(xml.status).to.equal(415)
      const del = await fetch(`${c!.origin}/api/v1/dlq/1`, {method: 'DELETE'})
      expect(del.status).to.equal(405)
    })

    it('never shows the database password in an error', async () => {
      await start()
      await t.query(`drop table ${t.quoted}.backfill_dlq cascade`)
      const answer = await api.get<{error: {code: string; message: string}}>('/api/v1/dlq')
      expect(answer.status).to.equal(409)
      expect(answer.body.error.code).to.equal('E_NOT_MIGRATED')
    })
  })

  describe('security', () => {
    it('refuses a non-loopback bind without credentials, and allows it with a token', async () => {
      expect(() => checkBind('0.0.0.0', {})).to.throw(
        ConfigError,
        /refusing to listen on 0.0.0.0 without authentication/,
      )
      expect(() => checkBind('::', {})).to.throw(ConfigError)
      expect(() => checkBind('127.0.0.1', {})).to.not.throw()
      expect(() => checkBind('::1', {})).to.not.throw()
      expect(() => checkBind('0.0.0.0', {token: TOKEN})).to.not.throw()
      const error = await startConsoleServer({database: t.db, host: '0.0.0.0', port: 0}).catch((e: unknown) => e)
      expect(error).to.be.instanceOf(ConfigError)
      expect((error as ConfigError).code).to.equal('E_UNSAFE_BIND')
    })

    it('with a token: no credentials is 401, a wrong token is 401, bearer and the login cookie work', async () => {
      await start({auth: {token: TOKEN, users: new Map([['alice', 'wonderland-pass']])}})
      const anonymous = await api.get('/api/v1/session')
      expect(anonymous.status).to.equal(401)
      expect((anonymous.body as {error: {code: string}}).error.code).to.equal('E_UNAUTHORIZED')
      expect(
        (await new ApiClient(c!.origin, {authorization: 'Bearer wrong-token-000000000'}).get('/api/v1/session')).status,
      ).to.equal(401)
      const bearer = new ApiClient(c!.origin, {authorization: `Bearer ${TOKEN}`})
      const session = await bearer.get<{identity: {name: string; method: string}}>('/api/v1/session')
      expect(session.status).to.equal(200)
      expect(session.body.identity).to.deep.equal({name: 'token', method: 'token'})
      const basic = new ApiClient(c!.origin, {
        authorization: `Basic ${Buffer.from('alice:wonderland-pass').toString('base64')}`,
      })
      expect((await basic.get<{identity: {name: string}}>('/api/v1/session')).body.identity.name).to.equal('alice')
      const wrongUser = new ApiClient(c!.origin, {
        authorization: `Basic ${Buffer.from('alice:nope').toString('base64')}`,
      })
      expect((await wrongUser.get('/api/v1/session')).status).to.equal(401)
      // Sign in with the form: an HttpOnly SameSite=Strict cookie.
      const login = await fetch(`${c!.origin}/login`, {
        method: 'POST',
        headers: {'content-type': 'application/x-www-form-urlencoded'},
        body: `token=${TOKEN}`,
        redirect: 'manual',
      })
      expect(login.status).to.equal(303)
      const cookie = login.headers.get('set-cookie') ?? ''
      expect(cookie)
        .to.match(/HttpOnly/)
        .and.match(/SameSite=Strict/)
      const browser = new ApiClient(c!.origin, {cookie: cookie.split(';')[0] as string})
      expect((await browser.get('/api/v1/session')).status).to.equal(200)
      // A cookie is ambient: a POST needs the CSRF token too.
      const noToken = await browser.post('/api/v1/dlq/purge', {all: true, dryRun: true}, {}, {csrf: false})
      expect(noToken.status).to.equal(403)
      expect((noToken.body as {error: {code: string}}).error.code).to.equal('E_CSRF')
      expect((await browser.post('/api/v1/dlq/purge', {all: true, dryRun: true})).status).to.equal(200)
      // A bearer token is not ambient: no CSRF token needed.
      expect((await bearer.post('/api/v1/dlq/purge', {all: true, dryRun: true}, {}, {csrf: false})).status).to.equal(
        200,
      )
      // A tampered cookie is no session.
      const forged = new ApiClient(c!.origin, {cookie: `${cookie.split(';')[0]}x`})
      expect((await forged.get('/api/v1/session')).status).to.equal(401)
      const wrong = await fetch(`${c!.origin}/login`, {
        method: 'POST',
        headers: {'content-type': 'application/x-www-form-urlencoded'},
        body: 'token=not-the-token',
        redirect: 'manual',
      })
      expect(wrong.status).to.equal(401)
      expect(wrong.headers.get('set-cookie')).to.equal(null)
    })

    it('refuses cross-site POSTs, POSTs without the CSRF token, and foreign Host headers (DNS rebinding)', async () => {
      await fillDlq(t, 3)
      await start()
      const before = await whereIsEverything(t)
      const evil = await api.post('/api/v1/dlq/purge', {all: true, yes: true}, {origin: 'https://evil.example'})
      expect(evil.status).to.equal(403)
      expect((evil.body as {error: {code: string}}).error.code).to.equal('E_CROSS_SITE')
      const fetchSite = await api.post('/api/v1/dlq/purge', {all: true, yes: true}, {'sec-fetch-site': 'cross-site'})
      expect(fetchSite.status).to.equal(403)
      const form = await fetch(`${c!.origin}/api/v1/dlq/purge`, {
        method: 'POST',
        headers: {'content-type': 'application/x-www-form-urlencoded'},
        body: 'all=true&yes=true',
      })
      expect(form.status).to.equal(403)
      expect(((await form.json()) as {error: {code: string}}).error.code).to.equal('E_CSRF')
      const rebound = await rawGet(c!.origin, '/api/v1/session', {host: 'attacker.example:4000'})
      expect(rebound.status).to.equal(403)
      expect(JSON.parse(rebound.body).error.code).to.equal('E_FORBIDDEN_HOST')
      expect(await whereIsEverything(t)).to.deep.equal(before)
      // Same origin with the token goes through.
      const same = await api.post('/api/v1/dlq/purge', {all: true, yes: true}, {origin: c!.origin})
      expect(same.status).to.equal(200)
      expect((same.body as {purged: number}).purged).to.equal(3)
    })

    it('--read-only: no state-changing route exists, and the OpenAPI document lists none', async () => {
      await fillDlq(t, 2)
      await start({readOnly: true})
      for (const route of ROUTES.filter((r) => r.write)) {
        const path = route.path.replace('{action}', 'remove')
        const answer = await api.post(path, {all: true, yes: true})
        expect(answer.status, path).to.equal(404)
        expect((answer.body as {error: {message: string}}).error.message).to.match(/read-only/)
      }
      const session = await api.get<{readOnly: boolean; capabilities: {actionsEnabled: boolean; reason: string}}>(
        '/api/v1/session',
      )
      expect(session.body.readOnly).to.equal(true)
      expect(session.body.capabilities.actionsEnabled).to.equal(false)
      const doc = (await api.get<{paths: Record<string, Record<string, unknown>>}>('/api/v1/openapi.json')).body
      expect(Object.values(doc.paths).flatMap((p) => Object.keys(p))).to.not.include('post')
      expect((await whereIsEverything(t)).dlq).to.have.length(2)
    })

    it('reports a read-only database role: actions disabled with the reason', async () => {
      await start()
      const role = `ro_${t.schema}`
      await t.query(
        `create role ${role} login; grant usage on schema ${t.quoted} to ${role}; grant select on all tables in schema ${t.quoted} to ${role}`,
      )
      try {
        const url = testUrl().replace(/^(postgres(?:ql)?:\/\/)([^@/]*@)?/, `$1${role}@`)
        const ro = await startConsole({...t, url} as TestSchema)
        try {
          const session = await new ApiClient(ro.origin).get<{capabilities: {actionsEnabled: boolean; reason: string}}>(
            '/api/v1/session',
          )
          expect(session.body.capabilities.actionsEnabled).to.equal(false)
          expect(session.body.capabilities.reason).to.match(/may not update or delete/)
        } finally {
          await ro.stop()
        }
      } finally {
        await t.query(`drop owned by ${role}; drop role ${role}`)
      }
    })

    it('mounts under a prefix in an application server; other paths are left to the application', async () => {
      const handler = createConsoleHandler({database: t.db, prefix: '/admin/backfill'})
      const server = http.createServer((req, res) =>
        handler(req, res, () => {
          res.writeHead(200, {'content-type': 'text/plain'})
          res.end('app')
        }),
      )
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
      try {
        const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
        expect((await new ApiClient(origin).get('/admin/backfill/api/v1/status')).status).to.equal(200)
        expect((await new ApiClient(origin).get('/elsewhere')).body).to.equal('app')
        const doc = await new ApiClient(origin).get<{servers: {url: string}[]}>('/admin/backfill/api/v1/openapi.json')
        expect(doc.body.servers[0]!.url).to.equal('/admin/backfill')
      } finally {
        await new Promise((resolve) => server.close(resolve))
      }
    })

    it('an embedding application can bring its own authentication hook', async () => {
      await start({
        authenticate: (req) => (req.headers['x-app-user'] === 'carol' ? {name: 'carol', method: 'custom'} : undefined),
      })
      expect((await api.get('/api/v1/session')).status).to.equal(401)
      const carol = new ApiClient(c!.origin, {'x-app-user': 'carol'})
      expect((await carol.get<{identity: {name: string}}>('/api/v1/session')).body.identity.name).to.equal('carol')
    })
  })

  describe('actions: preview, confirm once, audit', () => {
    it('DLQ retry: a dry run changes nothing; confirming moves each entry exactly once, a double submit replays', async () => {
      await fillDlq(t, 10, {tasks: 2})
      await start()
      const preview = await api.post<{
        dryRun: boolean
        stats: {total: number}
        sample: unknown[]
        confirm: {token: string}
      }>('/api/v1/dlq/retry', {task: 'task_1', dryRun: true})
      expect(preview.status).to.equal(200)
      expect(preview.body.dryRun).to.equal(true)
      expect(preview.body.stats.total).to.equal(5)
      expect((await whereIsEverything(t)).jobs).to.deep.equal([])
      // An entry failing after the preview is not part of what was confirmed.
      await t.query(
        `insert into ${t.quoted}.backfill_dlq (task_identifier, payload, queue_name, priority, failure_reason, last_error, failed_at)
         values ('task_1', '{"i": 99}', '', 0, 'late', '"late"', now() + interval '1 second')`,
      )
      const [first, second] = await Promise.all([
        api.post<{dryRun: boolean; retried: number; run: string}>('/api/v1/dlq/retry', {
          confirm: preview.body.confirm.token,
        }),
        api.post<{dryRun: boolean; retried: number; run: string}>('/api/v1/dlq/retry', {
          confirm: preview.body.confirm.token,
        }),
      ])
      expect(first.status).to.equal(200)
      expect(first.body.retried).to.equal(5)
      expect(second.body).to.deep.equal(first.body)
      expect([first.headers.get('idempotent-replayed'), second.headers.get('idempotent-replayed')]).to.include('true')
      const where = await whereIsEverything(t)
      expect(where.jobs).to.deep.equal([1, 3, 5, 7, 9])
      expect(where.dlq).to.deep.equal([2, 4, 6, 8, 10, 99])
      const [audit] = await t.query<{os_user: string; hostname: string; count: number}>(
        `select os_user, hostname, count from ${t.quoted}.backfill_dlq_audit where action = 'retry'`,
      )
      expect(audit).to.deep.include({os_user: 'console:local', hostname: '127.0.0.1', count: 5})
      const history = await api.get<{runs: {run: string; osUser: string}[]}>('/api/v1/dlq/history')
      expect(history.body.runs[0]).to.deep.include({run: first.body.run, osUser: 'console:local'})
    })

    it('DLQ retry canary (limit) and purge with yes + Idempotency-Key act once', async () => {
      await fillDlq(t, 6, {tasks: 1})
      await start()
      const canary = await api.post<{retried: number}>('/api/v1/dlq/retry', {all: true, limit: 2, yes: true})
      expect(canary.body.retried).to.equal(2)
      const key = {'idempotency-key': 'purge-1'}
      const [a, b] = await Promise.all([
        api.post<{purged: number; run: string}>('/api/v1/dlq/purge', {all: true, limit: 3, yes: true}, key),
        api.post<{purged: number; run: string}>('/api/v1/dlq/purge', {all: true, limit: 3, yes: true}, key),
      ])
      expect(a.body).to.deep.equal(b.body)
      expect(a.body.purged).to.equal(3)
      expect((await whereIsEverything(t)).dlq).to.have.length(1)
    })

    it('jobs actions: remove to the DLQ after a preview, run-now, reschedule and fail, never a running job', async () => {
      const crafted = await craftStates(t)
      await start()
      const preview = await api.post<{
        selection: {count: number; excluded: Record<string, number>}
        confirm: {token: string}
      }>('/api/v1/jobs/actions/remove', {task: 'send_email', 'to-dlq': true, dryRun: true, reason: 'loop'})
      expect(preview.status, JSON.stringify(preview.body)).to.equal(200)
      expect(preview.body.selection.count).to.equal(2)
      expect(preview.body.selection.excluded.running).to.equal(1)
      const done = await api.post<{done: number; movedToDlq: number}>('/api/v1/jobs/actions/remove', {
        confirm: preview.body.confirm.token,
      })
      expect(done.body).to.deep.include({done: 2, movedToDlq: 2})
      expect(await jobExists(t, crafted.ready)).to.equal(false)
      expect(await jobExists(t, crafted.running)).to.equal(true)
      const [audit] = await t.query<{os_user: string; reason: string}>(
        `select os_user, reason from ${t.quoted}.backfill_dlq_audit where action = 'jobs.move-to-dlq'`,
      )
      expect(audit).to.deep.equal({os_user: 'console:local', reason: 'loop'})
      const runNow = await api.post<{done: number}>('/api/v1/jobs/actions/run-now', {id: crafted.retrying, yes: true})
      expect(runNow.body.done).to.equal(1)
      const resched = await api.post<{done: number}>('/api/v1/jobs/actions/reschedule', {
        id: crafted.retrying,
        delay: '1h',
        yes: true,
      })
      expect(resched.body.done).to.equal(1)
      const fail = await api.post<{done: number}>('/api/v1/jobs/actions/fail', {
        id: crafted.blocked,
        message: 'no',
        yes: true,
      })
      expect(fail.body.done).to.equal(1)
      const refused = await api.post('/api/v1/jobs/actions/remove', {yes: true})
      expect((refused.body as {error: {code: string}}).error.code).to.equal('E_EMPTY_SELECTION')
    })

    it("enqueues a job (the crate router's POST /jobs), validated like the CLI", async () => {
      await start()
      const created = await api.post<{status: string; action: string; job: {id: string}}>('/api/v1/jobs', {
        task: 'send_email',
        payload: {to: 'x@example.com'},
        queue: 'mail',
        priority: 'fast',
      })
      expect(created.status).to.equal(201)
      expect(created.body).to.deep.include({status: 'enqueued', action: 'created'})
      const jobs = await t.jobs()
      expect(jobs.map((j) => [j.task, j.queue])).to.deep.equal([['send_email', 'mail']])
      const bad = await api.post<{error: {code: string}}>('/api/v1/jobs', {task: ''})
      expect(bad.status).to.equal(400)
      // Audited with the console's identity and address; the refused one left no row.
      const audit = await t.query<{count: number; os_user: string; hostname: string; job_ids: string[]}>(
        `select count, os_user, hostname, job_ids::text[] from ${t.quoted}.backfill_dlq_audit where action = 'jobs.enqueue'`,
      )
      expect(audit).to.have.length(1)
      expect(audit[0]).to.deep.include({count: 1, job_ids: [created.body.job.id]})
      expect(audit[0]?.os_user).to.match(/^console:/)
      expect(audit[0]?.hostname).to.match(/127\.0\.0\.1/)
    })

    it('locks clean: the preview shows the stale lock; confirming releases exactly it', async () => {
      // Not craftStates: its dead owner's lock is released too once the server is older than the
      // restart grace (late in a full run), so this test would depend on its place in the run.
      const fresh = await lockedJob(t, {owner: 'recent-lock', lockedAgo: '1 minute'})
      const stale = await lockedJob(t, {owner: 'hand-made-lock', lockedAgo: '2 hours'})
      await start()
      const preview = await api.post<{dryRun: boolean; jobLocks: number; confirm: {token: string}}>(
        '/api/v1/locks/clean',
        {
          dryRun: true,
        },
      )
      expect(preview.body.dryRun).to.equal(true)
      expect(preview.body.jobLocks).to.equal(1)
      const locked = async (id: string): Promise<boolean> =>
        (
          await t.query<{l: boolean}>(
            `select locked_at is not null as l from ${t.quoted}._private_jobs where id = $1`,
            [id],
          )
        )[0]!.l
      expect(await locked(stale)).to.equal(true)
      const done = await api.post<{dryRun: boolean; jobLocks: number}>('/api/v1/locks/clean', {
        confirm: preview.body.confirm.token,
      })
      expect(done.body.dryRun).to.equal(false)
      expect(done.body.jobLocks).to.equal(1)
      expect(await locked(stale)).to.equal(false)
      expect(await locked(fresh)).to.equal(true)
      const [released] = await t.query<{last_error: string}>(
        `select last_error from ${t.quoted}._private_jobs where id = $1`,
        [stale],
      )
      expect(released!.last_error).to.match(/^Lock released by the console \(\w+ from [^)]*127\.0\.0\.1\): /)
      // The release is in the audit trail with the console's identity and the client's address.
      const audit = await t.query<{
        action: string
        count: number
        os_user: string
        hostname: string
        job_ids: string[]
      }>(
        `select action, count, os_user, hostname, job_ids::text[] from ${t.quoted}.backfill_dlq_audit where action = 'locks.clean'`,
      )
      expect(audit).to.have.length(1)
      expect(audit[0]).to.deep.include({action: 'locks.clean', count: 1, job_ids: [stale]})
      expect(audit[0]?.os_user).to.match(/^console:/)
      expect(audit[0]?.hostname).to.match(/127\.0\.0\.1/)
    })
  })

  describe('OpenAPI document', () => {
    it('lists exactly the routes served, and every GET answer matches its documented schema', async () => {
      const crafted = await craftStates(t)
      await fillDlq(t, 3)
      await start()
      const doc = (
        await api.get<{
          openapi: string
          paths: Record<
            string,
            Record<string, {responses: Record<string, {content: Record<string, {schema: Record<string, unknown>}>}>}>
          >
        }>('/api/v1/openapi.json')
      ).body
      expect(doc.openapi).to.equal('3.0.3')
      const documented = Object.entries(doc.paths).flatMap(([path, ops]) =>
        Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`),
      )
      expect(documented.sort()).to.deep.equal(ROUTES.map((r) => `${r.method} ${r.path}`).sort())
      expect(openApiDocument({readOnly: true}).paths).to.not.have.property('/api/v1/dlq/retry')
      const [entry] = await t.query<{id: string}>(`select id::text from ${t.quoted}.backfill_dlq limit 1`)
      const values: Record<string, string> = {id: crafted.ready, key: 'mail:1'}
      for (const [path, ops] of Object.entries(doc.paths)) {
        if (!ops.get) continue
        const concrete = path
          .replace('/dlq/{id}', `/dlq/${entry!.id}`)
          .replace(/\{(\w+)\}/g, (_m, name: string) => encodeURIComponent(values[name] ?? ''))
        const answer = await api.get(concrete)
        expect(answer.status, `${concrete}: ${JSON.stringify(answer.body)}`).to.equal(200)
        const schema = ops.get.responses['200']!.content['application/json']!.schema
        expect(validate(schema, answer.body, concrete)).to.deep.equal([])
      }
      // Unknown routes, wrong methods: answered with the documented error envelope.
      const missing = await api.get('/api/v1/missing')
      expect(validate({$ref: '#/components/schemas/Error'}, missing.body, 'error')).to.deep.equal([])
    })
  })
})
