import {spawnSync} from 'node:child_process'
import {mkdtempSync, rmSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import {expect} from 'chai'

import {cleanEnv, ROOT, runCli} from '../support/cli.js'
import {sql} from '../support/db.js'

describe('README quick start: `npm run demo` on the embedded database', function () {
  this.timeout(240_000)
  let devDir: string

  before(() => {
    devDir = path.join(mkdtempSync(path.join(os.tmpdir(), 'bf-demo-')), 'pg')
  })
  after(async () => {
    await runCli(['dev', 'reset', '--yes'], {databaseUrl: null, env: {BACKFILL_DEV_DIR: devDir}})
    rmSync(path.dirname(devDir), {recursive: true, force: true})
  })

  it('starts PostgreSQL, runs the worker while example jobs are enqueued, and some jobs reach the DLQ', () => {
    // Exactly what the README says, with the data kept in a temp folder instead of .backfill/.
    const result = spawnSync('npm', ['run', 'demo', '--silent'], {
      cwd: ROOT,
      env: cleanEnv({BACKFILL_DEV_DIR: devDir}),
      encoding: 'utf8',
      timeout: 200_000,
    })
    expect(result.status, `${result.stdout}\n${result.stderr}`).to.equal(0)
    const output = result.stdout + result.stderr
    expect(output).to.match(/send_email#\d+ completed/)
    expect(output).to.match(/flaky#\d+ completed .*attempt 2\/3/)
    expect(output).to.match(/moved \d+ exhausted job\(s\) to the DLQ/)
    expect(output).to.contain('Failure groups')
  })

  it('left every example job processed: none waiting, the failing ones in the DLQ', async () => {
    const url = (await runCli(['dev', 'url'], {databaseUrl: null, env: {BACKFILL_DEV_DIR: devDir}})).stdout.trim()
    const [jobs] = await sql<{n: number}>(`select count(*)::int as n from graphile_worker._private_jobs`, [], url)
    expect(jobs?.n).to.equal(0)
    const dlq = await sql<{task_identifier: string; n: number}>(
      `select task_identifier, count(*)::int as n from graphile_worker.backfill_dlq group by 1 order by 1`,
      [],
      url,
    )
    expect(dlq).to.deep.equal([
      {task_identifier: 'failing', n: 6},
      {task_identifier: 'send_email', n: 1},
    ])
  })
})
