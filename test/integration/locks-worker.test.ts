import {EventEmitter} from 'node:events'

import {expect} from 'chai'
import {Logger, run, type Runner} from 'graphile-worker'
import type pg from 'pg'

import {cleanLocks} from '../../src/lib/locks/clean.js'
import {listLocks} from '../../src/lib/locks/list.js'
import {TestSchema} from '../support/db.js'
import {jobRow, presenceSession, registerWorker} from '../support/locks.js'

/**
 * A real graphile-worker pool running a job: its pool id is the lock owner. Registered with a
 * presence session (as `backfill worker` does) it is live and keeps its lock through any
 * cleanup; as a plain pool it is unknown and only the stale timeout can free its lock.
 */
describe('locks with a real graphile-worker pool', function () {
  let t: TestSchema
  let runner: Runner | undefined
  let session: pg.Client | undefined
  let release: () => void = () => undefined

  beforeEach(async () => {
    t = await TestSchema.create({migrated: true, prefix: 'lockw'})
  })
  afterEach(async () => {
    release()
    await runner?.stop().catch(() => undefined)
    runner = undefined
    await session?.end().catch(() => undefined)
    session = undefined
    await t.drop()
  })

  async function startPool(): Promise<{poolId: string; jobId: string}> {
    const events = new EventEmitter()
    let pool = ''
    events.on('pool:create', ({workerPool}: {workerPool: {id: string}}) => (pool = workerPool.id))
    const gate = new Promise<void>((resolve) => (release = resolve))
    let started: (id: string) => void = () => undefined
    const running = new Promise<string>((resolve) => (started = resolve))
    runner = await run({
      pgPool: t.db.pool,
      schema: t.schema,
      concurrency: 1,
      noHandleSignals: true,
      pollInterval: 100,
      events,
      logger: new Logger(() => () => undefined),
      crontab: '',
      taskList: {
        slow: async (_payload, helpers) => {
          started(String(helpers.job.id))
          await gate
        },
      },
    })
    await t.query(`select ${t.quoted}.add_job('slow', '{}'::json)`)
    const jobId = await running
    expect(pool).to.match(/^pool-[0-9a-f]{18}$/)
    return {poolId: pool, jobId}
  }

  it('a registered pool with a presence session is live: its lock survives cleanup with zero timeouts', async () => {
    const {poolId, jobId} = await startPool()
    await registerWorker(t, poolId, {heartbeatAgo: '1 hour'})
    session = await presenceSession(t.url, poolId)
    const listing = await listLocks(t.db, {restartGrace: false})
    expect(listing.owners).to.have.length(1)
    expect(listing.owners[0]).to.include({
      owner: poolId,
      family: 'node',
      liveness: 'live',
      evidence: 'presence-session',
    })
    const result = await cleanLocks(t.db, {restartGrace: false, staleJobLockTimeoutMs: 0, staleQueueLockTimeoutMs: 0})
    expect(result.jobLocks).to.equal(0)
    expect((await jobRow(t, jobId))?.locked_by).to.equal(poolId)
    // The job then completes normally.
    release()
    await runner?.stop()
    runner = undefined
    // graphile's stop() can resolve just before the completion commits on a loaded machine.
    const deadline = Date.now() + 10_000
    while ((await jobRow(t, jobId)) !== undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
    expect(await jobRow(t, jobId)).to.equal(undefined)
  })

  it('a plain graphile-worker pool is unknown: kept under the timeout, released past it', async () => {
    const {poolId, jobId} = await startPool()
    const listing = await listLocks(t.db)
    expect(listing.owners[0]).to.include({owner: poolId, liveness: 'unknown', family: 'node'})
    expect((await cleanLocks(t.db)).jobLocks).to.equal(0)
    await t.query(`update ${t.quoted}._private_jobs set locked_at = now() - interval '31 minutes' where id = $1`, [
      jobId,
    ])
    const result = await cleanLocks(t.db)
    expect(result.released['stale-unknown'].jobs).to.equal(1)
    const row = await jobRow(t, jobId)
    expect(row).to.include({locked_by: null, attempts: 1})
  })
})
