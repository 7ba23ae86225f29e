import {expect} from 'chai'
import {parse as parseConnectionString} from 'pg-connection-string'

import {parseJson, type CliResult} from '../support/cli.js'
import {TestSchema, testUrl} from '../support/db.js'
import {runInProcess} from '../support/in-process.js'

/** Connection strings of every shape, as the CLI sees them (in process: no build, no child). */
describe('connection strings through the CLI (in process)', function () {
  this.timeout(60_000)
  let t: TestSchema
  const server = (): {host: string; port: string} => {
    const {host, port} = parseConnectionString(testUrl())
    return {host: host!, port: port || '5432'}
  }
  const status = (databaseUrl: string, json = true, env: Record<string, string | undefined> = {}): Promise<CliResult> =>
    runInProcess(['status', '--schema', t.schema, ...(json ? ['--json'] : [])], {
      env: {DATABASE_URL: databaseUrl, ...env},
    })

  before(async () => {
    t = await TestSchema.create({migrated: true, prefix: 'conn'})
  })
  after(async () => {
    await t.drop()
  })

  it("accepts libpq's key=value form (quoted values, escapes) and never prints its password", async () => {
    const conninfo = `host='${server().host}' port = ${server().port} user=postgres password='hun\\'ter 2' dbname=backfill_test application_name=kv`
    const ok = await status(conninfo)
    expect(ok.code, ok.stderr).to.equal(0)
    expect(parseJson<{schema: string}>(ok).schema).to.equal(t.schema)
    for (const json of [true, false]) {
      const refused = await status('host=127.0.0.1 port=1 user=app password=hunter2 dbname=x connect_timeout=2', json)
      expect(refused.code, refused.stderr).to.equal(3)
      expect(refused.stdout + refused.stderr)
        .to.contain('127.0.0.1')
        .and.not.contain('hunter2')
      expect(refused.stdout + refused.stderr).to.contain('pg_isready -h 127.0.0.1 -p 1')
    }
  })

  it('refuses malformed strings of any shape without echoing any part of them', async () => {
    for (const url of [
      'app:hunter2@db/x', // a URL without its scheme
      'app:hunter2@127.0.0.1:5432/x?sslmode=disable', // the same with "=" (libpq would read key=value)
      'host=db password=hun ter2 dbname=x', // an unquoted space: "ter2" is not a keyword
      "host=db password='hunter2 dbname=x", // unterminated quote
      'postgres://app:hunter@2b/cd@127.0.0.1:1/x', // "@" and "/" unencoded: URL parsers split it
      'mysql://app:hunter2@db/x',
    ]) {
      for (const json of [true, false]) {
        const result = await status(url, json)
        expect(result.code, `${url}: ${result.stderr}`).to.equal(3)
        const out = result.stdout + result.stderr
        for (const part of ['hunter', 'ter2', '2b/cd', '2b']) expect(out, url).not.to.contain(part)
        if (json) expect(parseJson<{error: {code: string}}>(result).error.code).to.equal('E_BAD_DATABASE_URL')
      }
    }
  })

  it('sslmode=require against a server without SSL, and a setting the server refuses: exit 3 saying so', async () => {
    const cases: [string, string, RegExp][] = [
      [`${testUrl()}&sslmode=require`, 'E_SSL', /SSL connection to .* failed: The server does not support SSL/],
      [
        `${testUrl()}&options=${encodeURIComponent('-c statement_timeout=abc')}`,
        'E_CONNECTION_SETTINGS',
        /refused the connection's settings: invalid value for parameter "statement_timeout": "abc"/,
      ],
      [
        `host='${server().host}' port=${server().port} dbname=backfill_test user=postgres options='-c no_such_setting=1'`,
        'E_CONNECTION_SETTINGS',
        /unrecognized configuration parameter "no_such_setting"/,
      ],
    ]
    for (const [url, code, message] of cases) {
      const text = await status(url, false)
      expect(text.code, text.stderr).to.equal(3)
      expect(text.stderr).to.match(message)
      const json = await status(url)
      expect(json.code).to.equal(3)
      expect(parseJson<{error: {code: string}}>(json).error.code).to.equal(code)
    }
  })
})
