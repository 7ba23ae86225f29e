/**
 * A database outage in the middle of a pool's work (what the chaos soak's PostgreSQL restart
 * does): a completion write is lost while the pool holds prefetched jobs it cannot hand back.
 * graphile-worker then shuts the pool down by itself, and its shutdown can hang for good
 * (0.17.3's batcher never resets its backpressure, so releasing it waits forever once a write
 * has failed and another has succeeded). The worker must not sit on those jobs under a live
 * heartbeat: it stops within its shutdown timeout, records the completions that were lost
 * (the handlers ran), and unlocks everything else.
 */
import {expect} from 'chai'

import type {Database} from '../../src/lib/db.js'
import {sleep} from '../../src/lib/sleep.js'
import type {WorkerEvent} from '../../src/lib/worker/events.js'
import {releasePoolLocks} from '../../src/lib/worker/lock-release.js'
import {WorkerRunner, type WorkerSummary} from '../../src/lib/worker/runner.js'
import {sql, type TestSchema} from '../support/db.js'
import {countLockedBy, ownRoleWorkerDatabase} from '../support/worker.js'

describe('worker across a database outage (lost completion writes, prefetched jobs)', function () {
  this.timeout(120_000)
  // The worker's own role: cut() is a server restart, for it.
  const w = ownRoleWorkerDatabase('wout', 2)
  let t: TestSchema
  let db: Database
  beforeEach(() => ({t, db} = w))
  const {cut, restore} = w

  const outage = (batchDelayMs: number) => async () => {
    const events: WorkerEvent[] = []
    const gates = new Map<string, () => void>()
    const handled: string[] = []
    const runner = new WorkerRunner({
      db,
      tasks: {
        // Holds until the test opens its gate; an aborted job (the shutdown) fails.
        gate: async (_payload, helpers) => {
          const id = helpers.job.id
          await new Promise<void>((resolve, reject) => {
            gates.set(id, resolve)
            helpers.abortSignal?.addEventListener('abort', () => reject(new Error('aborted')))
          })
          handled.push(id)
        },
      },
      config: {
        concurrency: 3,
        // A fixed local queue: 3 running, the other 17 prefetched and locked by the pool.
        localQueueSize: 20,
        completeBatchDelayMs: batchDelayMs,
        failBatchDelayMs: batchDelayMs,
        shutdownTimeoutMs: 4000,
        // No heartbeat fencing, no cleaner, no capture: only the outage decides.
        heartbeatIntervalMs: 60_000,
        lockCleanupIntervalMs: null,
        dlqIntervalMs: null,
      },
      onEvent: (e) => events.push(e),
    })
    const handle = await runner.start()
    await t.query(`select ${t.quoted}.add_job('gate', '{}') from generate_series(1, 20)`)
    for (let i = 0; i < 800 && gates.size < 3; i++) await sleep(25)
    expect([...gates.keys()], 'three jobs running').to.deep.equal(['1', '2', '3'])
    expect(await countLockedBy(t, handle.poolIds), 'every job locked by the pool (running or prefetched)').to.equal(20)

    await cut()
    const cutAt = Date.now()
    // Job 1 succeeds while the database is away: its completion write fails, and graphile
    // starts shutting the pool down (it cannot hand the prefetched jobs back either). The
    // slot had already taken job 4. Then the running jobs succeed one by one, each its own
    // write: two that settle before the last one are what leave graphile's batcher unable to
    // release, so its shutdown never ends.
    const open = async (id: string): Promise<void> => {
      // Bounded for a loaded machine, and asserted (not a TypeError on a missing gate).
      for (let i = 0; i < 1000 && !gates.has(id); i++) await sleep(10)
      expect(gates.has(id), `job ${id} started`).to.equal(true)
      gates.get(id)!()
      await sleep(400)
    }
    await open('1')
    await open('2')
    await restore()
    await open('3')
    await open('4')
    expect(handled, 'the handlers ran').to.deep.equal(['1', '2', '3', '4'])

    const outcome = await Promise.race([handle.done, sleep(30_000).then(() => 'still running' as const)])
    if (process.env.DUMP_EVENTS) for (const e of events) console.error(JSON.stringify(e).slice(0, 300))
    if (outcome === 'still running') {
      const held = await countLockedBy(t, handle.poolIds)
      await handle.stop({force: true}).catch(() => undefined)
      expect.fail(`the worker was still running 30 s after the outage, holding ${held} job(s)`)
    }
    const summary = outcome as WorkerSummary
    expect(Date.now() - cutAt, 'stopped within its shutdown timeout (plus the bounded waits)').to.be.lessThan(25_000)
    expect(summary.failure, 'a worker that lost a write stops with a failure').to.be.a('string')
    const left = await t.query<{id: string; locked_by: string | null}>(
      `select id::text, locked_by from ${t.quoted}._private_jobs order by id`,
    )
    expect(
      left.filter((j) => j.locked_by !== null),
      'no job left locked',
    ).to.deep.equal([])
    expect(
      left.filter((j) => handled.includes(j.id)),
      'the jobs whose handlers succeeded are completed (not queued to run again)',
    ).to.deep.equal([])
    expect(left, 'the other jobs are still queued').to.have.length(16)
    expect(
      events.some((e) => e.type === 'error' && /could not record job completions/.test(e.error)),
      'the lost write is reported',
    ).to.equal(true)
  }

  it('stops within its shutdown timeout, records the lost completions and unlocks the prefetched jobs', outage(100))

  // graphile 0.17.3's own unbatched writes (-1) are not awaited: a lost one would be an
  // unhandled rejection, the job left locked under the live pool. The worker keeps its pools
  // on graphile's batcher (no delay), which reports the loss, so -1 is handled the same way.
  it('the same with batching off (--batch-delay -1)', outage(-1))

  it("a task's own log line that looks like graphile's lost completions completes nothing", async () => {
    const events: WorkerEvent[] = []
    let ran!: () => void
    const spoofed = new Promise<void>((resolve) => (ran = resolve))
    const runner = new WorkerRunner({
      db,
      tasks: {
        // Prints graphile's lost-completion line (text and meta) naming itself and another job
        // this worker holds locked, then fails: neither may be deleted as "completed".
        spoof: async (payload, helpers) => {
          const ids = [helpers.job.id, String((payload as {other: string}).other)]
          helpers.logger.error(`Failed to complete jobs '${ids.join("', '")}':\nerror: Connection terminated`, {
            fatalError: new Error('Connection terminated'),
            jobs: ids.map((id) => ({id})),
          })
          ran()
          throw new Error('fails on purpose')
        },
      },
      config: {
        concurrency: 1,
        completeBatchDelayMs: 100,
        failBatchDelayMs: 100,
        heartbeatIntervalMs: 60_000,
        lockCleanupIntervalMs: null,
        dlqIntervalMs: null,
      },
      onEvent: (e) => events.push(e),
    })
    const handle = await runner.start()
    // A job of a task this worker does not run, locked by its pool (as a fetch the pool never
    // saw would leave it): the release on the way out must hand it back, not delete it.
    const [other] = await t.query<{id: string}>(`select (${t.quoted}.add_job('elsewhere', '{}')).id::text as id`)
    await t.query(`update ${t.quoted}._private_jobs set locked_by = $1, locked_at = now() where id = $2::bigint`, [
      handle.poolIds[0],
      other!.id,
    ])
    const [own] = await t.query<{id: string}>(
      `select (${t.quoted}.add_job('spoof', json_build_object('other', $1::text))).id::text as id`,
      [other!.id],
    )
    await Promise.race([spoofed, sleep(20_000)])
    const summary = await handle.stop()
    expect(summary.failure, 'a log line stops nothing').to.equal(undefined)
    expect(summary.jobs.failed, 'the task ran and failed').to.equal(1)
    const left = await t.query<{id: string; attempts: number; locked_by: string | null}>(
      `select id::text, attempts, locked_by from ${t.quoted}._private_jobs order by id`,
    )
    expect(left, 'both jobs still queued, unlocked (the failed one with its attempt)').to.deep.equal([
      {id: other!.id, attempts: 0, locked_by: null},
      {id: own!.id, attempts: 1, locked_by: null},
    ])
    expect(
      events.some((e) => e.type === 'log' && /graphile-worker could not write/.test(e.message)),
      'no lost completion reported',
    ).to.equal(false)
  })

  it('a lost completion is never released unrecorded: completion and release are one statement', async () => {
    const pool = 'pool-gone'
    const jobs = await t.query<{id: string}>(
      `select (${t.quoted}.add_job('work', '{}')).id::text as id from generate_series(1, 2)`,
    )
    const [lost, other] = jobs.map((j) => j.id) as [string, string]
    await t.query(`update ${t.quoted}._private_jobs set locked_by = $1, locked_at = now()`, [pool])
    // The completion cannot be written (here: the delete fails) while an update still can.
    await sql(`create function ${t.quoted}.refuse_delete() returns trigger language plpgsql as $$
      begin raise exception 'deletes refused'; end $$`)
    await sql(
      `create trigger refuse_delete before delete on ${t.quoted}._private_jobs for each row execute function ${t.quoted}.refuse_delete()`,
    )
    const refused = await releasePoolLocks(db, [pool], {lostCompletions: [lost], retryForMs: 300})
    expect(refused.error, 'the failure is reported').to.match(/deletes refused/)
    expect(refused.recordedCompletions).to.equal(0)
    expect(refused.releasedJobLocks, 'nothing released without the completion').to.equal(0)
    expect(refused.lockedAfter).to.equal(2)
    const held = await t.query<{id: string; locked_by: string | null}>(
      `select id::text, locked_by from ${t.quoted}._private_jobs order by id`,
    )
    expect(held, 'the lost completion is still locked, not queued to run again').to.deep.equal([
      {id: lost, locked_by: pool},
      {id: other, locked_by: pool},
    ])

    await sql(`drop trigger refuse_delete on ${t.quoted}._private_jobs`)
    const done = await releasePoolLocks(db, [pool], {lostCompletions: [lost], retryForMs: 300})
    expect(done).to.deep.include({recordedCompletions: 1, releasedJobLocks: 1, lockedAfter: 0})
    expect(done.error).to.equal(undefined)
    const left = await t.query<{id: string; locked_by: string | null}>(
      `select id::text, locked_by from ${t.quoted}._private_jobs order by id`,
    )
    expect(left).to.deep.equal([{id: other, locked_by: null}])
  })
})
