import {expect} from 'chai'
import pg from 'pg'

import {BackfillClient} from '../../src/lib/client/client.js'
import {TestSchema} from '../support/db.js'

describe('enqueueMany: an abort while the last batch is written rolls back', function () {
  this.timeout(60_000)
  let t: TestSchema
  beforeEach(async () => {
    t = await TestSchema.create({migrated: true, prefix: 'abort'})
  })
  afterEach(async () => {
    await t.drop()
  })

  it('aborted while add_jobs waits on a lock: rejects and nothing is enqueued', async () => {
    const client = await BackfillClient.connect(t.url, {schema: t.schema, ensureSchema: false})
    const blocker = new pg.Client({connectionString: t.url})
    await blocker.connect()
    await blocker.query('begin')
    await blocker.query(`lock table ${t.quoted}._private_jobs in share row exclusive mode`)
    const controller = new AbortController()
    const jobs = Array.from({length: 20}, (_, i) => ({task: 't', payload: {i}}))
    const outcome = client.enqueueMany(jobs, {batchSize: 1000, signal: controller.signal}).then(
      () => 'committed',
      (error: Error) => error.name,
    )
    try {
      for (let i = 0; i < 200; i += 1) {
        const rows = await t.query(
          `select 1 from pg_stat_activity where wait_event_type = 'Lock' and query like '%add_jobs%'`,
        )
        if (rows.length > 0) break
        await new Promise((resolve) => setTimeout(resolve, 25))
      }
      controller.abort()
    } finally {
      await blocker.query('rollback')
      await blocker.end()
    }
    expect(await outcome).to.equal('AbortError')
    expect(await t.query(`select id from ${t.quoted}._private_jobs`)).to.have.length(0)
    await client.end()
  })
})
