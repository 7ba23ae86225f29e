import {expect} from 'chai'

import type {WorkerEvent} from '../../src/lib/worker/events.js'
import {WorkerRunner} from '../../src/lib/worker/runner.js'
import {TestSchema} from '../support/db.js'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/**
 * Issue 12 item 19: a clean stop with jobs in graphile's local queue logged "Deactivation
 * failed: AggregateError" and "Error occurred during graceful shutdown" (a graphile-worker
 * 0.17.3 LocalQueue bug, see holdLocalQueueRelease), whether the jobs were in serial queues or not.
 */
describe('a clean stop with jobs prefetched into the local queue', function () {
  this.timeout(60_000)
  let t: TestSchema
  beforeEach(async () => {
    t = await TestSchema.create({migrated: true, prefix: 'wgr'})
  })
  afterEach(async () => {
    await t.drop()
  })

  for (const queues of ['one serial queue', 'a serial queue per job', 'mixed', 'no queue']) {
    it(`${queues}: no error is logged, nothing stays locked, nothing is charged an attempt`, async () => {
      const events: WorkerEvent[] = []
      let started = 0
      const runner = new WorkerRunner({
        db: t.db,
        tasks: {
          slow: async () => {
            started += 1
            await sleep(300)
          },
        },
        config: {concurrency: 2, localQueueSize: 8},
        onEvent: (e) => events.push(e),
      })
      const queueOf = (i: number): string | null =>
        queues === 'one serial queue'
          ? 'q'
          : queues === 'a serial queue per job'
            ? `q${i}`
            : queues === 'mixed' && i % 2
              ? 'q'
              : null
      for (let i = 0; i < 20; i++)
        await t.query(`select ${t.quoted}.add_job('slow', '{}', queue_name => $1::text)`, [queueOf(i)])
      const handle = await runner.start()
      // Asserted, and bounded for a loaded machine: stopped before the first fetch, the local
      // queue would be empty and the test would pass without exercising the release it is about.
      for (let i = 0; i < 1000 && started < 1; i++) await sleep(20)
      expect(started, 'a job started (the local queue holds the others)').to.be.greaterThan(0)
      await sleep(50)
      const summary = await handle.stop({reason: 'SIGTERM'})
      expect(summary.forced).to.equal(false)
      const charged = await t.query<{n: number}>(
        `select count(*)::int as n from ${t.quoted}._private_jobs where attempts > 0`,
      )
      expect(charged[0]!.n, 'prefetched jobs went back without using an attempt, running ones finished').to.equal(0)
      const errors = events
        .filter((e) => e.type === 'error' || (e.type === 'log' && (e.level === 'error' || e.level === 'warning')))
        .map((e) => JSON.stringify(e))
      expect(errors, errors.join('\n')).to.deep.equal([])
      expect(await t.query(`select 1 from ${t.quoted}._private_jobs where locked_at is not null`)).to.have.length(0)
      expect(await t.query(`select 1 from ${t.quoted}._private_job_queues where locked_at is not null`)).to.have.length(
        0,
      )
    })
  }
})
