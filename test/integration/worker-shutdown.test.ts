import {expect} from 'chai'

import type {Database} from '../../src/lib/db.js'
import {sleep} from '../../src/lib/sleep.js'
import type {WorkerEvent} from '../../src/lib/worker/events.js'
import {WorkerRunner} from '../../src/lib/worker/runner.js'
import type {TestSchema} from '../support/db.js'
import {countLockedBy, ownRoleWorkerDatabase} from '../support/worker.js'

describe('worker shutdown reports what is really left locked', function () {
  this.timeout(90_000)
  // The worker's role owns its schema (graphile's tables use row-level security).
  const w = ownRoleWorkerDatabase('wshut', 4)
  let t: TestSchema
  let db: Database
  beforeEach(() => ({t, db} = w))

  it('after its connections are cut and refused, it says the locks are unknown, never "0 still locked"', async () => {
    const events: WorkerEvent[] = []
    let running = 0
    const runner = new WorkerRunner({
      db,
      tasks: {
        slow: async (_payload, helpers) => {
          running += 1
          await new Promise<void>((resolve) => helpers.abortSignal?.addEventListener('abort', () => resolve()))
          await sleep(60_000)
        },
      },
      config: {concurrency: 4, shutdownTimeoutMs: 1000, heartbeatIntervalMs: 60_000},
      onEvent: (e) => events.push(e),
    })
    const handle = await runner.start()
    await t.query(`select ${t.quoted}.add_job('slow', '{}') from generate_series(1, 4)`)
    for (let i = 0; i < 200 && running < 4; i++) await sleep(50)
    expect(running).to.equal(4)
    // The database refuses the worker from now on, and cuts what it has.
    await w.cut()
    const summary = await handle.stop({force: true, reason: 'test'})
    const stop = events.find((e) => e.type === 'worker:stop') as Extract<WorkerEvent, {type: 'worker:stop'}>
    await w.restore()
    expect(await countLockedBy(t, summary.poolIds), 'the jobs are still locked by the worker').to.equal(4)
    expect(stop.lockedAfter, 'the worker claimed to know what it still holds').to.equal(null)
    expect(stop.lockCheckError).to.be.a('string').and.not.equal('')
    expect(summary.lockedAfter).to.equal(null)
  })

  it('with the database back, it releases everything and reports 0 from a real check', async () => {
    const events: WorkerEvent[] = []
    let running = 0
    const runner = new WorkerRunner({
      db,
      tasks: {
        slow: async () => {
          running += 1
          await sleep(60_000)
        },
      },
      config: {concurrency: 2, shutdownTimeoutMs: 500},
      onEvent: (e) => events.push(e),
    })
    const handle = await runner.start()
    await t.query(`select ${t.quoted}.add_job('slow', '{}') from generate_series(1, 2)`)
    for (let i = 0; i < 200 && running < 2; i++) await sleep(50)
    // Cut every connection once: the pool reconnects for the way out.
    await w.terminate()
    const summary = await handle.stop({force: true})
    const stop = events.find((e) => e.type === 'worker:stop') as Extract<WorkerEvent, {type: 'worker:stop'}>
    expect(stop.lockedAfter).to.equal(0)
    expect(summary.lockedAfter).to.equal(0)
    expect(await t.query(`select 1 from ${t.quoted}._private_jobs where locked_at is not null`)).to.have.length(0)
  })
})
