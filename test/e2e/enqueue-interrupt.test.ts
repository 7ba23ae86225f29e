import {spawn} from 'node:child_process'

import {expect} from 'chai'
import pg from 'pg'

import {BIN, cleanEnv} from '../support/cli.js'
import {TestSchema} from '../support/db.js'

/** SIGINT at the last moment before the commit (real binary, real signal). */
describe('backfill enqueue --ndjson: interrupted means nothing enqueued (real binary)', function () {
  this.timeout(120_000)
  let t: TestSchema
  beforeEach(async () => {
    t = await TestSchema.create({migrated: true, prefix: 'intr'})
  })
  afterEach(async () => {
    await t.drop()
  })

  it('SIGINT after the last line was read, while the final batch waits: exit 130, rolled back', async () => {
    // Another session holds the jobs table, so the one add_jobs call (every line fits in one
    // batch) waits after the whole input was read: the window the signal must not slip through.
    const blocker = new pg.Client({connectionString: t.url})
    await blocker.connect()
    await blocker.query('begin')
    await blocker.query(`lock table ${t.quoted}._private_jobs in share row exclusive mode`)
    const child = spawn(
      process.execPath,
      [BIN, 'enqueue', '--schema', t.schema, '--ndjson', '-', '--batch-size', '100000'],
      {env: cleanEnv({DATABASE_URL: t.url}), stdio: ['pipe', 'pipe', 'pipe']},
    )
    let stderr = ''
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
    child.stdin.end(Array.from({length: 50}, (_, i) => `{"task":"t","payload":{"i":${i}}}\n`).join(''))
    try {
      let waiting = false
      for (let i = 0; i < 400 && !waiting; i += 1) {
        const rows = await t.query(
          `select 1 from pg_stat_activity where application_name = 'backfill enqueue' and wait_event_type = 'Lock' and query like '%add_jobs%'`,
        )
        waiting = rows.length > 0
        if (!waiting) await new Promise((resolve) => setTimeout(resolve, 50))
      }
      expect(waiting, 'add_jobs never waited on the lock').to.equal(true)
      child.kill('SIGINT')
      // Let the handler run before the batch can go through: it says so on stderr as it aborts
      // (a fixed pause could end first on a loaded machine, and the batch would then commit).
      for (let i = 0; i < 400 && !/received SIGINT/.test(stderr); i += 1)
        await new Promise((resolve) => setTimeout(resolve, 50))
      expect(stderr, 'the signal was handled').to.match(/received SIGINT/)
    } finally {
      await blocker.query('rollback')
      await blocker.end()
    }
    expect(await exited, stderr).to.equal(130)
    expect(stderr).to.contain('interrupted after 50 lines; nothing was enqueued')
    expect(await t.query(`select id from ${t.quoted}._private_jobs`)).to.have.length(0)
  })
})
