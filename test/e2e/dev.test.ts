import {chmodSync, mkdtempSync, rmSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import {expect} from 'chai'

import {parseJson, runCli} from '../support/cli.js'
import {sql, testUrl} from '../support/db.js'
import {TASKS_DIR, WorkerProcess} from '../support/worker.js'

interface Status {
  running: boolean
  pid: number | null
  url: string
  dataDir: string
}

describe('backfill dev and --embedded (real PostgreSQL from the npm binaries)', function () {
  this.timeout(120_000)
  let project: string
  const dev = (args: string[], env: Record<string, string> = {}) =>
    runCli(['dev', ...args], {cwd: project, databaseUrl: null, env})
  const inProject = (args: string[], env: Record<string, string> = {}) =>
    runCli(args, {cwd: project, databaseUrl: null, env})

  before(() => {
    project = mkdtempSync(path.join(os.tmpdir(), 'bf-devproj-'))
    chmodSync(project, 0o755) // mkdtemp makes it 0700, which the server user could not enter
  })
  after(async () => {
    await dev(['reset', '--yes'])
    rmSync(project, {recursive: true, force: true})
  })

  it('dev start runs a server on a unix socket with data under .backfill/, and is reused', async () => {
    const first = await dev(['start', '--json'])
    expect(first.code, first.stderr).to.equal(0)
    const started = parseJson<{started: boolean; url: string; dataDir: string}>(first)
    expect(started.started).to.equal(true)
    expect(started.dataDir).to.equal(path.join(project, '.backfill', 'postgres', 'data'))
    expect(started.url).to.match(/^postgres:\/\/postgres@\/backfill\?host=/)
    const again = parseJson<{started: boolean; url: string}>(await dev(['start', '--json']))
    expect(again).to.deep.equal({...again, started: false, url: started.url})
    const [row] = await sql<{listen: string}>(`select current_setting('listen_addresses') as listen`, [], started.url)
    expect(row?.listen).to.equal('')
    const url = await dev(['url'])
    expect(url.stdout.trim()).to.equal(started.url)
  })

  it('--embedded (and BACKFILL_EMBEDDED=1) points every database command at it', async () => {
    const migrated = await inProject(['migrate', '--embedded', '--schema', 'demo', '--json'])
    expect(migrated.code, migrated.stderr).to.equal(0)
    const viaEnv = await inProject(['migrate', '--schema', 'demo', '--json'], {BACKFILL_EMBEDDED: '1'})
    expect(parseJson<{upToDate: boolean}>(viaEnv).upToDate).to.equal(true)
    const both = await inProject(['migrate', '--embedded', '--database-url', 'postgres://x@localhost/db'])
    expect(both.code).to.equal(2)
    // A flag beats the environment: --database-url wins over an exported BACKFILL_EMBEDDED=1.
    const flagWins = await inProject(
      ['migrate', '--schema', 'flag_wins_over_env', '--database-url', testUrl(), '--json'],
      {BACKFILL_EMBEDDED: '1'},
    )
    expect(flagWins.code, flagWins.stderr).to.equal(0)
    expect(await sql(`select 1 from pg_namespace where nspname = 'flag_wins_over_env'`)).to.have.length(1)
    await sql('drop schema flag_wins_over_env cascade')
  })

  it("survives a worker's Ctrl-C (the server has its own session)", async () => {
    const inProjectWorker = new WorkerProcess(
      ['--embedded', '--schema', 'demo', '--tasks', TASKS_DIR],
      {},
      {cwd: project, databaseUrl: null},
    )
    await inProjectWorker.waitFor(/worker started/)
    inProjectWorker.signal('SIGINT')
    const exit = await inProjectWorker.exited
    expect(exit.code).to.equal(0)
    const status = parseJson<Status>(await dev(['status', '--json']))
    expect(status.running).to.equal(true)
  })

  it('recovers from a crash (SIGKILL of the postmaster leaves a stale postmaster.pid)', async () => {
    const before = parseJson<Status>(await dev(['status', '--json']))
    expect(before.running).to.equal(true)
    process.kill(before.pid!, 'SIGKILL')
    for (let i = 0; i < 100 && isAlive(before.pid!); i++) await new Promise((r) => setTimeout(r, 50))
    const down = parseJson<Status>(await dev(['status', '--json']))
    expect(down.running).to.equal(false)
    const restarted = await dev(['start', '--json'])
    expect(restarted.code, restarted.stderr).to.equal(0)
    expect(parseJson<{started: boolean}>(restarted).started).to.equal(true)
    // The data survived the crash.
    const rows = await sql<{n: number}>(
      `select count(*)::int as n from demo.migrations`,
      [],
      parseJson<{url: string}>(restarted).url,
    )
    expect(rows[0]?.n).to.equal(19)
  })

  it('dev stop stops it; dev reset refuses without --yes when not interactive, deletes with it', async () => {
    const stop = await dev(['stop', '--json'])
    expect(parseJson<{stopped: boolean}>(stop).stopped).to.equal(true)
    expect(parseJson<Status>(await dev(['status', '--json'])).running).to.equal(false)
    const refused = await dev(['reset'])
    expect(refused.code).to.equal(2)
    expect(refused.stderr).to.contain('--yes')
    const reset = await dev(['reset', '--yes', '--json'])
    expect(reset.code).to.equal(0)
    expect(parseJson<{deleted: string}>(reset).deleted).to.equal(path.join(project, '.backfill', 'postgres'))
  })

  it('when root and the project is unreachable for the server user (0700), keeps the data in a per-project temp folder and says so', async function () {
    if (process.getuid?.() !== 0) this.skip()
    const closed = mkdtempSync(path.join(os.tmpdir(), 'bf-closed-'))
    try {
      const result = await runCli(['dev', 'start', '--json'], {cwd: closed, databaseUrl: null})
      expect(result.code, result.stderr).to.equal(0)
      const json = parseJson<{dataDir: string}>(result)
      expect(json.dataDir.startsWith(path.join(os.tmpdir(), 'backfill-dev-'))).to.equal(true)
      expect(result.stderr).to.contain('not reachable by the unprivileged user')
    } finally {
      await runCli(['dev', 'reset', '--yes'], {cwd: closed, databaseUrl: null})
      rmSync(closed, {recursive: true, force: true})
    }
  })

  it('names the missing binaries clearly when none can be found', async () => {
    const empty = mkdtempSync(path.join(os.tmpdir(), 'no-pg-bin-'))
    const result = await dev(['start'], {BACKFILL_PG_BIN: empty})
    expect(result.code).to.equal(3)
    expect(result.stderr).to.contain(`BACKFILL_PG_BIN=${empty} has no initdb`)
  })
})

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}
