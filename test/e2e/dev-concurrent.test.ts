import {chmodSync, mkdtempSync, rmSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import {expect} from 'chai'

import {parseJson, runCli} from '../support/cli.js'

/**
 * Two processes bringing the same project's development server up at once (two `dev start`,
 * or `dev start` beside a command with --embedded) must both succeed on the one server;
 * the loser used to exit 1 with `lock file "postmaster.pid" already exists`.
 */
describe('dev start racing another start of the same server (two real processes)', function () {
  this.timeout(180_000)
  let project: string
  const inProject = (args: string[]) => runCli(args, {cwd: project, databaseUrl: null, timeoutMs: 150_000})

  beforeEach(() => {
    project = mkdtempSync(path.join(os.tmpdir(), 'bf-devrace-'))
    chmodSync(project, 0o755) // mkdtemp makes it 0700, which the server user could not enter
  })
  afterEach(async () => {
    await inProject(['dev', 'reset', '--yes'])
    rmSync(project, {recursive: true, force: true})
  })

  it('two dev start at once on a new project: both exit 0 with the same server; exactly one started it', async () => {
    const [a, b] = await Promise.all([inProject(['dev', 'start', '--json']), inProject(['dev', 'start', '--json'])])
    expect(a.code, a.stderr).to.equal(0)
    expect(b.code, b.stderr).to.equal(0)
    const ra = parseJson<{started: boolean; url: string}>(a)
    const rb = parseJson<{started: boolean; url: string}>(b)
    expect(ra.url).to.equal(rb.url)
    expect([ra.started, rb.started].sort()).to.deep.equal([false, true])
  })

  it('dev start beside status --embedded on a stopped server: both succeed', async () => {
    const init = await inProject(['dev', 'start'])
    expect(init.code, init.stderr).to.equal(0)
    expect((await inProject(['migrate', '--embedded'])).code).to.equal(0)
    expect((await inProject(['dev', 'stop'])).code).to.equal(0)
    const [start, status] = await Promise.all([
      inProject(['dev', 'start', '--json']),
      inProject(['status', '--embedded', '--json']),
    ])
    expect(start.code, start.stderr).to.equal(0)
    expect(status.code, status.stderr + status.stdout).to.equal(0)
    expect(parseJson<{started: boolean}>(start)).to.have.property('started')
  })
})
