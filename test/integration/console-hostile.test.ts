import http from 'node:http'
import type {AddressInfo} from 'node:net'

import {expect} from 'chai'

import {createConsoleHandler} from '../../src/lib/console/handler.js'
import {ApiClient, startConsole, type RunningConsole} from '../support/console.js'
import {TestSchema} from '../support/db.js'
import {fillDlq, whereIsEverything} from '../support/dlq.js'
import {addJob, jobExists} from '../support/jobs.js'

const TOKEN = 'hostile-token-0123456789abcdef'

/** A request with a request-target fetch() would normalise away (e.g. "//host/path"). */
function rawRequest(
  origin: string,
  path: string,
  headers: Record<string, string> = {},
  body?: {method: string; text: string},
): Promise<{status: number; headers: http.IncomingHttpHeaders; body: string}> {
  const {hostname, port} = new URL(origin)
  return new Promise((resolve, reject) => {
    const req = http.request({hostname, port, path, headers, method: body?.method ?? 'GET'}, (res) => {
      let body = ''
      res.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')))
      res.on('end', () => resolve({status: res.statusCode ?? 0, headers: res.headers, body}))
    })
    req.on('error', reject)
    req.end(body?.text)
  })
}

/** Where a browser goes after a 303 to this Location (WHATWG URL parsing, as Chromium does it). */
function followed(origin: string, location: string | null): string {
  return new URL(location ?? '', `${origin}/login`).origin
}

describe('console under attack (hostile callers and payloads)', function () {
  this.timeout(60_000)
  let t: TestSchema
  let c: RunningConsole | undefined

  beforeEach(async () => {
    t = await TestSchema.create({migrated: true, prefix: 'uih'})
  })
  afterEach(async () => {
    await c?.stop()
    c = undefined
    await t.drop()
  })

  describe('confirm tokens and idempotency keys', () => {
    it('a retry preview cannot be confirmed as a purge (a token confirms only the action it previewed)', async () => {
      await fillDlq(t, 4, {tasks: 1})
      c = await startConsole(t)
      const api = new ApiClient(c.origin)
      const preview = await api.post<{confirm: {token: string}}>('/api/v1/dlq/retry', {all: true, dryRun: true})
      expect(preview.status).to.equal(200)
      const before = await whereIsEverything(t)
      const purge = await api.post<{error: {code: string}}>('/api/v1/dlq/purge', {confirm: preview.body.confirm.token})
      expect(purge.status).to.equal(409)
      expect(purge.body.error.code).to.equal('E_PREVIEW_EXPIRED')
      expect(await whereIsEverything(t)).to.deep.equal(before)
      // Nor a jobs "run-now" preview as a "remove": the route confirmed is the route previewed.
      const job = await addJob(t, 'hostile_task', {runAt: '1 hour'})
      const runNow = await api.post<{confirm: {token: string}}>('/api/v1/jobs/actions/run-now', {
        id: job,
        dryRun: true,
      })
      expect(runNow.status).to.equal(200)
      const remove = await api.post('/api/v1/jobs/actions/remove', {confirm: runNow.body.confirm.token})
      expect(remove.status).to.equal(409)
      expect(await jobExists(t, job)).to.equal(true)
      // The preview still confirms where it was made.
      const retried = await api.post<{retried: number}>('/api/v1/dlq/retry', {confirm: preview.body.confirm.token})
      expect(retried.status).to.equal(200)
      expect(retried.body.retried).to.equal(4)
    })

    it('an Idempotency-Key reused for a different request is refused, not answered with the first reply', async () => {
      await fillDlq(t, 3, {tasks: 1})
      c = await startConsole(t)
      const api = new ApiClient(c.origin)
      const key = {'idempotency-key': 'k-1'}
      const first = await api.post<{jobId: string}>('/api/v1/jobs', {task: 'first_task', payload: '{"a":1}'}, key)
      expect(first.status).to.equal(201)
      // The same request again: replayed, one job.
      const again = await api.post('/api/v1/jobs', {task: 'first_task', payload: '{"a":1}'}, key)
      expect(again.status).to.equal(201)
      expect(again.headers.get('idempotent-replayed')).to.equal('true')
      // Another payload under the same key: refused (the caller's bug), nothing enqueued.
      const other = await api.post<{error: {code: string}}>(
        '/api/v1/jobs',
        {task: 'first_task', payload: '{"a":2}'},
        key,
      )
      expect(other.status).to.equal(422)
      expect(other.body.error.code).to.equal('E_IDEMPOTENCY_KEY_REUSED')
      // Another route under the same key: refused too, and the DLQ is left alone.
      const purge = await api.post<{error: {code: string}}>('/api/v1/dlq/purge', {all: true, yes: true}, key)
      expect(purge.status).to.equal(422)
      expect((await whereIsEverything(t)).dlq).to.have.length(3)
      const [{n}] = (await t.query<{n: number}>(
        `select count(*)::int as n from ${t.quoted}._private_jobs j join ${t.quoted}._private_tasks k on k.id = j.task_id
         where k.identifier = 'first_task'`,
      )) as [{n: number}]
      expect(n).to.equal(1)
    })
  })

  describe('sessions', () => {
    it('signing out ends the session: the cookie it had is refused afterwards', async () => {
      c = await startConsole(t, {auth: {token: TOKEN}})
      const login = await fetch(`${c.origin}/login`, {
        method: 'POST',
        headers: {'content-type': 'application/x-www-form-urlencoded'},
        body: new URLSearchParams({token: TOKEN}).toString(),
        redirect: 'manual',
      })
      const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0] as string
      const browser = new ApiClient(c.origin, {cookie})
      expect((await browser.get('/api/v1/session')).status).to.equal(200)
      const logout = await fetch(`${c.origin}/logout`, {method: 'POST', headers: {cookie}, redirect: 'manual'})
      expect(logout.status).to.equal(303)
      expect(logout.headers.get('set-cookie')).to.match(/Max-Age=0/)
      // A copy of the cookie (another tab's, a stolen one) is no session any more.
      expect((await browser.get('/api/v1/session')).status).to.equal(401)
      const page = await fetch(`${c.origin}/jobs`, {headers: {cookie}, redirect: 'manual'})
      expect(page.status).to.equal(303)
      expect(page.headers.get('location')).to.match(/^\/login/)
    })
  })

  describe('cookies', () => {
    it('the session cookie is Secure when the sign-in came over HTTPS (a TLS-terminating proxy says so)', async () => {
      c = await startConsole(t, {auth: {token: TOKEN}})
      const signIn = async (headers: Record<string, string>): Promise<string> =>
        (
          await fetch(`${c!.origin}/login`, {
            method: 'POST',
            headers: {'content-type': 'application/x-www-form-urlencoded', ...headers},
            body: new URLSearchParams({token: TOKEN}).toString(),
            redirect: 'manual',
          })
        ).headers.get('set-cookie') ?? ''
      expect(await signIn({'x-forwarded-proto': 'https'})).to.match(/; Secure/)
      // Plain HTTP (backfill ui on loopback): a Secure cookie would never come back.
      const plain = await signIn({})
      expect(plain, 'plain HTTP still gets its session cookie').to.match(/HttpOnly/)
      expect(plain).to.not.match(/Secure/)
    })
  })

  describe('limits', () => {
    it("a body over the limit is a 413 that closes the connection, so the client's next request works", async () => {
      c = await startConsole(t, {auth: {token: TOKEN}})
      const api = new ApiClient(c.origin, {authorization: `Bearer ${TOKEN}`})
      for (let round = 0; round < 3; round++) {
        const big = await fetch(`${c.origin}/api/v1/dlq/purge`, {
          method: 'POST',
          headers: {'content-type': 'application/json', authorization: `Bearer ${TOKEN}`},
          body: JSON.stringify({reason: 'x'.repeat(200_000)}),
        })
        expect(big.status).to.equal(413)
        expect(big.headers.get('connection')).to.equal('close')
        expect(((await big.json()) as {error: {code: string}}).error.code).to.equal('E_TOO_LARGE')
        // fetch keeps connections alive: this one must not be handed a connection the server dropped.
        expect((await api.get('/api/v1/session')).status).to.equal(200)
      }
    })
  })

  describe('errors', () => {
    it('a page scrubs the secrets from an error message as the API envelope does', async () => {
      // The schema name stands in for a password that reaches an error message.
      c = await startConsole(t, {secrets: [t.schema]})
      await t.query(`drop table ${t.quoted}.backfill_dlq cascade`)
      const api = await new ApiClient(c.origin).get<{error: {message: string}}>('/api/v1/dlq')
      expect(api.status).to.equal(409)
      expect(api.body.error.message).to.include('***')
      expect(api.body.error.message).to.not.include(t.schema)
      const page = await fetch(`${c.origin}/dlq/entries`)
      expect(page.status).to.equal(409)
      const text = await page.text()
      expect(text).to.include('***')
      expect(text).to.not.include(t.schema)
    })
  })

  describe('sign-in redirects', () => {
    it('next= never sends the browser to another origin after sign-in', async () => {
      c = await startConsole(t, {auth: {token: TOKEN}})
      const hostile = [
        '/\\evil.example/',
        '/\t/evil.example/',
        '/\\/evil.example',
        '/./\\evil.example',
        '/.//evil.example',
        '//evil.example',
        'https://evil.example',
      ]
      for (const next of hostile) {
        const res = await fetch(`${c.origin}/login`, {
          method: 'POST',
          headers: {'content-type': 'application/x-www-form-urlencoded'},
          body: new URLSearchParams({token: TOKEN, next}).toString(),
          redirect: 'manual',
        })
        expect(res.status, JSON.stringify(next)).to.equal(303)
        expect(followed(c.origin, res.headers.get('location')), JSON.stringify(next)).to.equal(c.origin)
      }
      // A path with characters a header cannot carry raw still signs in (encoded), not a 500.
      const res = await fetch(`${c.origin}/login`, {
        method: 'POST',
        headers: {'content-type': 'application/x-www-form-urlencoded'},
        body: new URLSearchParams({token: TOKEN, next: '/jobs?task=café✓'}).toString(),
        redirect: 'manual',
      })
      expect(res.status).to.equal(303)
      const location = new URL(res.headers.get('location') ?? '', c.origin)
      expect(location.pathname).to.equal('/jobs')
      expect(location.searchParams.get('task')).to.equal('café✓')
      // A legitimate next is kept.
      const ok = await fetch(`${c.origin}/login`, {
        method: 'POST',
        headers: {'content-type': 'application/x-www-form-urlencoded'},
        body: new URLSearchParams({token: TOKEN, next: '/dlq?task=a'}).toString(),
        redirect: 'manual',
      })
      expect(ok.headers.get('location')).to.equal('/dlq?task=a')
    })
  })

  describe('DNS rebinding', () => {
    it('an embedded handler without credentials answers loopback Host names only', async () => {
      await fillDlq(t, 3, {tasks: 1})
      // An application on this machine mounting the console with no credentials: loopback
      // clients are "local". A page of attacker.example whose name now resolves to 127.0.0.1 is
      // same-origin to the browser, so it could read the CSRF token and POST with it.
      const handler = createConsoleHandler({database: t.db})
      const server = http.createServer((req, res) => handler(req, res))
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
      try {
        const port = (server.address() as AddressInfo).port
        const origin = `http://127.0.0.1:${port}`
        const rebound = {host: `attacker.example:${port}`}
        const session = await rawRequest(origin, '/api/v1/session', rebound)
        // What the attacker's script would do next with the token it read (same origin to it).
        const csrf = (JSON.parse(session.body) as {csrfToken?: string}).csrfToken ?? ''
        const purge = await rawRequest(
          origin,
          '/api/v1/dlq/purge',
          {
            ...rebound,
            origin: `http://attacker.example:${port}`,
            'content-type': 'application/json',
            'x-csrf-token': csrf,
          },
          {method: 'POST', text: JSON.stringify({all: true, yes: true})},
        )
        expect((await whereIsEverything(t)).dlq).to.have.length(3)
        expect(purge.status).to.equal(403)
        expect(session.status).to.equal(403)
        expect(JSON.parse(session.body).error.code).to.equal('E_FORBIDDEN_HOST')
        // The machine's own names still work.
        expect((await new ApiClient(origin).get('/api/v1/session')).status).to.equal(200)
        expect((await rawRequest(origin, '/api/v1/session', {host: `localhost:${port}`})).status).to.equal(200)
      } finally {
        await new Promise((resolve) => server.close(resolve))
      }
    })
  })

  describe('proxied requests', () => {
    it('without credentials, a request a proxy on this machine forwarded from elsewhere is refused', async () => {
      await fillDlq(t, 2, {tasks: 1})
      c = await startConsole(t)
      // A reverse proxy on this machine connects from 127.0.0.1 on behalf of anyone it serves.
      const relayed: Record<string, string>[] = [
        {'x-forwarded-for': '203.0.113.9'},
        {forwarded: 'for=203.0.113.9;proto=https'},
        {'x-real-ip': '203.0.113.9'},
      ]
      for (const header of relayed) {
        const res = await new ApiClient(c.origin, header).get<{error: {code: string}}>('/api/v1/session')
        expect(res.status, JSON.stringify(header)).to.equal(403)
        expect(res.body.error.code).to.equal('E_FORBIDDEN')
        const purge = await new ApiClient(c.origin, header).post('/api/v1/dlq/purge', {all: true, yes: true})
        expect(purge.status).to.equal(403)
      }
      expect((await whereIsEverything(t)).dlq).to.have.length(2)
      // The machine itself (an SSH tunnel ends here too) still gets in.
      expect((await new ApiClient(c.origin).get('/api/v1/session')).status).to.equal(200)
    })
  })

  describe('request targets', () => {
    it('a "//host/prefix/…" request-target is not read as under the prefix', async () => {
      c = await startConsole(t, {prefix: '/ops'})
      // The real prefix answers.
      expect((await rawRequest(c.origin, '/ops/api/v1/session')).status).to.equal(200)
      // "//x/ops/…" is the path "//x/ops/…", not "/ops/…" on a host x: a proxy or an application
      // guarding "/ops" does not see it as the console's, so the console must not either.
      for (const path of [
        '//x/ops/api/v1/session',
        '/x/../ops/api/v1/session',
        '/x/%2e%2e/ops/api/v1/session',
        `${c.origin}/x/../ops/api/v1/session`, // absolute form: the same dots
      ]) {
        const smuggled = await rawRequest(c.origin, path)
        expect(smuggled.status, path).to.equal(404)
        expect(smuggled.body, path).to.not.include('csrfToken')
      }
    })

    it('a malformed percent-encoding in a path parameter is a 400, not an internal error', async () => {
      const lines: string[] = []
      c = await startConsole(t, {log: (line) => lines.push(line)})
      const res = await rawRequest(c.origin, '/api/v1/jobs/%E0%A4%A')
      expect(res.status).to.equal(400)
      expect(JSON.parse(res.body).error.code).to.not.equal('E_INTERNAL')
      expect(lines.filter((l) => l.startsWith('error '))).to.deep.equal([])
    })
  })
})
