import {spawn, type ChildProcess} from 'node:child_process'

import {expect} from 'chai'

import {BIN, cleanEnv, ROOT, runCli} from '../support/cli.js'
import {TestSchema, testUrl} from '../support/db.js'
import {fillDlq} from '../support/dlq.js'

/** Starts the built `backfill ui` and waits for the URL it prints on stdout. */
export async function startUi(
  args: string[],
  env: Record<string, string | undefined> = {},
): Promise<{child: ChildProcess; url: string; stderr: () => string; exited: Promise<number | null>}> {
  const child = spawn(process.execPath, [BIN, 'ui', '--port', '0', ...args], {
    env: cleanEnv({DATABASE_URL: testUrl(), ...env}),
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no URL printed in 30 s; stderr: ${stderr}`)), 30_000)
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      stdout += d
      const match = /^(http:\/\/\S+)$/m.exec(stdout)
      if (match) {
        clearTimeout(timer)
        resolve(match[1] as string)
      }
    })
    void exited.then((code) => reject(new Error(`exited ${code} before printing a URL; stderr: ${stderr}`)))
  })
  return {child, url, stderr: () => stderr, exited}
}

describe('backfill ui (built CLI)', function () {
  this.timeout(90_000)
  let t: TestSchema
  beforeEach(async () => {
    t = await TestSchema.create({migrated: true, prefix: 'uie2e'})
  })
  afterEach(async () => {
    await t.drop()
  })

  it('serves on loopback, prints the URL, answers the API, and stops cleanly on SIGTERM and SIGINT', async () => {
    await fillDlq(t, 4)
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      const ui = await startUi(['--schema', t.schema])
      expect(ui.url).to.match(/^http:\/\/127\.0\.0\.1:\d+\/$/)
      const status = await fetch(new URL('api/v1/status', ui.url))
      expect(status.status).to.equal(200)
      expect(((await status.json()) as {dlq: {entries: number}}).dlq.entries).to.equal(4)
      ui.child.kill(signal)
      expect(await ui.exited).to.equal(0)
      expect(ui.stderr()).to.match(/console stopped/)
      // The request log names method, path and status; never a credential.
      expect(ui.stderr()).to.match(/GET \/api\/v1\/status 200/)
    }
  })

  it('refuses a non-loopback --host without credentials (exit 3), and logs no token when given one', async () => {
    const refused = await runCli(['ui', '--host', '0.0.0.0', '--port', '0', '--schema', t.schema])
    expect(refused.code).to.equal(3)
    expect(refused.stderr).to.match(/refusing to listen on 0\.0\.0\.0 without authentication/)
    const weak = await runCli(['ui', '--port', '0', '--schema', t.schema], {env: {BACKFILL_UI_TOKEN: 'short'}})
    expect(weak.code).to.equal(3)
    expect(weak.stderr).to.match(/too short/)
    const token = 'e2e-secret-token-abcdef0123456789'
    const ui = await startUi(['--schema', t.schema, '--read-only'], {BACKFILL_UI_TOKEN: token})
    try {
      expect((await fetch(new URL('api/v1/session', ui.url))).status).to.equal(401)
      const ok = await fetch(new URL('api/v1/session', ui.url), {headers: {authorization: `Bearer ${token}`}})
      expect(((await ok.json()) as {readOnly: boolean}).readOnly).to.equal(true)
    } finally {
      ui.child.kill('SIGTERM')
      await ui.exited
    }
    expect(ui.stderr()).to.not.include(token)
  })
})
