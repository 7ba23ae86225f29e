import {spawnSync} from 'node:child_process'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import {expect} from 'chai'

import {BIN, cleanEnv, ROOT, runCli} from '../support/cli.js'
import {sql} from '../support/db.js'

describe('examples/README.md walkthrough, run as written (npx backfill … --embedded)', function () {
  this.timeout(240_000)
  let devDir: string

  before(() => {
    devDir = path.join(mkdtempSync(path.join(os.tmpdir(), 'bf-walk-')), 'pg')
  })
  after(async () => {
    await runCli(['dev', 'reset', '--yes'], {databaseUrl: null, env: {BACKFILL_DEV_DIR: devDir}})
    rmSync(path.dirname(devDir), {recursive: true, force: true})
  })

  it('ends with a worked DLQ retry', async () => {
    const text = readFileSync(path.join(ROOT, 'examples', 'README.md'), 'utf8')
    const blocks = [...text.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1] as string)
    expect(blocks.length).to.be.greaterThan(4)
    const script = path.join(path.dirname(devDir), 'walkthrough.sh')
    // `npx backfill` resolves to this checkout's bin, as it does after `npm ci` in a clone.
    writeFileSync(
      script,
      [`npx() { if [ "$1" = backfill ]; then shift; fi; "${process.execPath}" "${BIN}" "$@"; }`, ...blocks].join('\n'),
    )
    const result = spawnSync('bash', ['-euo', 'pipefail', script], {
      cwd: ROOT,
      env: cleanEnv({BACKFILL_DEV_DIR: devDir, NO_COLOR: '1'}),
      encoding: 'utf8',
      timeout: 200_000,
    })
    expect(result.status, `${result.stdout}\n${result.stderr}`).to.equal(0)
    expect(result.stdout).to.contain('Failure groups')
    const url = (await runCli(['dev', 'url'], {databaseUrl: null, env: {BACKFILL_DEV_DIR: devDir}})).stdout.trim()
    // The canary's two entries left the DLQ for the jobs table; the audit trail has the retry.
    const [dlq] = await sql<{n: number}>(
      `select count(*)::int as n from graphile_worker.backfill_dlq where task_identifier = 'failing'`,
      [],
      url,
    )
    expect(dlq?.n).to.equal(4)
    const [jobs] = await sql<{n: number}>(
      `select count(*)::int as n from graphile_worker._private_jobs where payload::jsonb ? 'order'`,
      [],
      url,
    )
    expect(jobs?.n).to.equal(2)
    const audit = await sql<{action: string; count: number; reason: string}>(
      `select action, count, reason from graphile_worker.backfill_dlq_audit where action = 'retry'`,
      [],
      url,
    )
    expect(audit).to.deep.equal([{action: 'retry', count: 2, reason: 'walkthrough canary'}])
  })
})
