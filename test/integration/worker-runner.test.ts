import {expect} from 'chai'
import type {JobHelpers} from 'graphile-worker'

import {PermanentError} from '../../src/lib/worker/permanent-error.js'
import {isAmbiguousOutcome} from '../../src/lib/pg-errors.js'
import {requiredPoolSize, WorkerRunner} from '../../src/lib/worker/runner.js'
import type {WorkerEvent} from '../../src/lib/worker/events.js'
import {TestSchema} from '../support/db.js'
import {rustMigration20Sql} from '../fixtures/rust.js'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Polls until check() holds; false after timeoutMs (callers assert it, so a slow machine only waits longer). */
async function eventually(check: () => Promise<boolean> | boolean, timeoutMs = 20_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await check()) return true
    if (Date.now() > deadline) return false
    await sleep(50)
  }
}

describe('WorkerRunner (library, in process)', function () {
  this.timeout(60_000)
  let t: TestSchema
  beforeEach(async () => {
    t = await TestSchema.create({migrated: true, prefix: 'wr'})
  })
  afterEach(async () => {
    await t.drop()
  })

  it('run(signal) processes jobs until the signal fires, then drains and resolves', async () => {
    const seen: string[] = []
    const events: WorkerEvent[] = []
    const runner = new WorkerRunner({
      db: t.db,
      tasks: {hello: async (payload) => void seen.push((payload as {n: number}).n.toString())},
      config: {concurrency: 2, pollIntervalMs: 50},
      onEvent: (e) => events.push(e),
    })
    const controller = new AbortController()
    const done = runner.run(controller.signal)
    await t.query(`select ${t.quoted}.add_job('hello', json_build_object('n', i)) from generate_series(1, 5) i`)
    // The abort drains what runs, it does not wait for queued jobs: all five must have run first.
    expect(await eventually(() => seen.length === 5), `all five ran (saw ${seen.length})`).to.equal(true)
    controller.abort()
    const summary = await done
    expect(seen.sort()).to.deep.equal(['1', '2', '3', '4', '5'])
    expect(summary.jobs.succeeded).to.equal(5)
    expect(summary.forced).to.equal(false)
    expect(events.map((e) => e.type)).to.include.members([
      'worker:start',
      'job:start',
      'job:success',
      'worker:stopping',
      'worker:stop',
    ])
    const registry = await t.query(
      `select pool_id, stopped_at is not null as stopped from ${t.quoted}.backfill_workers`,
    )
    expect(registry).to.deep.equal([{pool_id: summary.poolIds[0], stopped: true}])
  })

  it('start() returns a handle; while running, the pool id has a presence session and a fresh heartbeat', async () => {
    const runner = new WorkerRunner({
      db: t.db,
      tasks: {noop: async () => undefined},
      config: {heartbeatIntervalMs: 200},
    })
    const handle = await runner.start()
    try {
      const [poolId] = handle.poolIds
      expect(poolId).to.match(/^pool-[0-9a-f]{18}$/)
      const sessions = await t.query(`select 1 from pg_stat_activity where application_name = $1`, [
        `backfill-worker:${poolId}`,
      ])
      expect(sessions).to.have.length(1)
      const [first] = await t.query<{at: Date}>(
        `select last_heartbeat_at as at from ${t.quoted}.backfill_workers where pool_id = $1`,
        [poolId],
      )
      // Every 200 ms, but a loaded machine may delay a beat past any fixed sleep: wait for one.
      const beat = async (): Promise<boolean> => {
        const [now] = await t.query<{at: Date}>(
          `select last_heartbeat_at as at from ${t.quoted}.backfill_workers where pool_id = $1`,
          [poolId],
        )
        return now!.at.getTime() > first!.at.getTime()
      }
      expect(await eventually(beat, 10_000), 'a heartbeat after registration').to.equal(true)
    } finally {
      await handle.stop()
    }
    const gone = await t.query(
      `select 1 from pg_stat_activity where application_name like 'backfill-worker:%' and datname = current_database() and application_name = $1`,
      [`backfill-worker:${handle.poolIds[0]}`],
    )
    expect(gone).to.have.length(0)
  })

  it("heartbeats into the Rust port's _private_workers too (when it exists), so its recovery sweeper sees the worker alive", async () => {
    await t.db.execScript(rustMigration20Sql(t.quoted))
    const runner = new WorkerRunner({
      db: t.db,
      tasks: {noop: async () => undefined},
      config: {heartbeatIntervalMs: 200},
    })
    const handle = await runner.start()
    const [poolId] = handle.poolIds
    try {
      const [first] = await t.query<{at: Date}>(
        `select last_heartbeat_at as at from ${t.quoted}._private_workers where id = $1`,
        [poolId],
      )
      expect(first, 'registered at start').to.not.equal(undefined)
      const beat = async (): Promise<boolean> => {
        const [now] = await t.query<{at: Date}>(
          `select last_heartbeat_at as at from ${t.quoted}._private_workers where id = $1`,
          [poolId],
        )
        return now!.at.getTime() > first!.at.getTime()
      }
      expect(await eventually(beat, 10_000), 'a mirrored heartbeat after registration').to.equal(true)
    } finally {
      await handle.stop()
    }
    expect(
      await t.query(`select 1 from ${t.quoted}._private_workers where id = $1`, [poolId]),
      'deregistered on stop',
    ).to.have.length(0)
  })

  it('starts mirroring into _private_workers when a Rust service adds it (migration 20) while the worker runs', async () => {
    // A Rust service deployed after the worker started migrates the shared schema to 20 and
    // sweeps: a lock holder without a _private_workers row is an orphan to it once its lock
    // is 5 min old, and recover_dead_worker_jobs then unlocks every job of that pool.
    const runner = new WorkerRunner({
      db: t.db,
      tasks: {noop: async () => undefined},
      config: {heartbeatIntervalMs: 200},
    })
    const handle = await runner.start()
    const [poolId] = handle.poolIds
    try {
      await t.db.execScript(rustMigration20Sql(t.quoted))
      const mirrored = async (): Promise<boolean> =>
        (await t.query(`select 1 from ${t.quoted}._private_workers where id = $1`, [poolId])).length === 1
      expect(await eventually(mirrored, 10_000), 'registered in the Rust registry once it exists').to.equal(true)
      const [row] = await t.query<{metadata: {runtime?: string}}>(
        `select metadata from ${t.quoted}._private_workers where id = $1`,
        [poolId],
      )
      expect(row!.metadata.runtime).to.equal('backfill')
      // The Rust sweeper's own test for orphans finds none among our locks.
      await t.query(`select ${t.quoted}.add_job('noop', '{}')`)
      const orphans = await t.query(
        `select worker_id from ${t.quoted}.list_orphan_locked_workers(interval '0 seconds') where worker_id = $1`,
        [poolId],
      )
      expect(orphans).to.have.length(0)
    } finally {
      await handle.stop()
    }
    expect(
      await t.query(`select 1 from ${t.quoted}._private_workers where id = $1`, [poolId]),
      'deregistered on stop',
    ).to.have.length(0)
  })

  it("with migrate: false, refuses a schema with pending graphile migrations (graphile's run() would apply them itself)", async () => {
    // A schema at revision 18 (Node's 19 is a marker only): with --no-migrate the worker started
    // and graphile's run() recorded the breaking 19, bypassing migrate's checks.
    await t.query(`delete from ${t.quoted}.migrations where id = 19`)
    const runner = new WorkerRunner({db: t.db, tasks: {noop: async () => undefined}, config: {migrate: false}})
    const error = await runner.start().then(
      async (handle) => {
        await handle.stop()
        return undefined
      },
      (e: unknown) => e,
    )
    expect((error as {code?: string} | undefined)?.code, String(error)).to.equal('E_NOT_MIGRATED')
    expect((error as Error).message).to.contain('migrations 19 are pending')
    expect(await t.query(`select 1 from ${t.quoted}.migrations where id = 19`)).to.have.length(0)
  })

  it('fences itself: when its heartbeat cannot be recorded, it aborts its jobs and stops with a failure', async () => {
    const runner = new WorkerRunner({
      db: t.db,
      tasks: {
        slow: async () => {
          await sleep(30_000)
        },
      },
      config: {heartbeatIntervalMs: 100},
      fenceAfterMs: 1500,
    })
    const handle = await runner.start()
    await t.query(`select ${t.quoted}.add_job('slow', '{}')`)
    // The job must be running when the heartbeats hang (what is checked below is that it was
    // aborted and failed); a fixed sleep could end before a loaded machine fetched it.
    const fetched = async (): Promise<boolean> =>
      (await t.query(`select 1 from ${t.quoted}._private_jobs where locked_at is not null`)).length === 1
    expect(await eventually(fetched), 'the job is running').to.equal(true)
    // Another session holds the registry row: heartbeats hang as on a half-open connection.
    const blocker = await t.db.pool.connect()
    try {
      await blocker.query('begin')
      await blocker.query(`select 1 from ${t.quoted}.backfill_workers for update`)
      const summary = await handle.done
      expect(summary.failure).to.match(/lost contact with the database: no heartbeat recorded/)
      expect(summary.forced).to.equal(true)
    } finally {
      await blocker.query('rollback')
      blocker.release()
    }
    // The aborted job was failed by graphile (an attempt used, backoff), not left locked.
    const [job] = await t.query<{locked_at: Date | null; attempts: number}>(
      `select locked_at, attempts from ${t.quoted}._private_jobs`,
    )
    expect(job).to.deep.equal({locked_at: null, attempts: 1})
  })

  it('stops and releases its locks when a fetch loses its connection (the fetch may have locked jobs it never received)', async () => {
    const events: WorkerEvent[] = []
    const runner = new WorkerRunner({
      db: t.db,
      tasks: {noop: async () => undefined},
      config: {concurrency: 2, pollIntervalMs: 100},
      onEvent: (e) => events.push(e),
    })
    const handle = await runner.start()
    const [poolId] = handle.poolIds
    // What a fetch that committed but never answered leaves: a job locked by this live pool.
    await t.query(`select ${t.quoted}.add_job('noop', '{}', run_at := now() + interval '1 hour')`)
    await t.query(`update ${t.quoted}._private_jobs set locked_by = $1, locked_at = now(), run_at = now()`, [poolId])
    const blocker = await t.db.pool.connect()
    let terminated = 0
    try {
      await blocker.query('begin')
      await blocker.query(`lock table ${t.quoted}._private_jobs in access exclusive mode`)
      for (let i = 0; i < 100 && terminated === 0; i++) {
        await sleep(50)
        const rows = await t.query<{ok: boolean}>(
          `select pg_terminate_backend(pid) as ok from pg_stat_activity
            where datname = current_database() and pid <> pg_backend_pid() and wait_event_type = 'Lock' and query like '%_private_jobs%'`,
        )
        terminated = rows.filter((r) => r.ok).length
      }
    } finally {
      await blocker.query('rollback')
      blocker.release()
    }
    expect(terminated, 'a fetch was waiting on the table lock').to.be.greaterThan(0)
    const summary = await handle.done
    expect(summary.failure).to.match(/lost the database connection while fetching jobs/)
    expect(events.some((e) => e.type === 'error' && e.where === 'pool' && /fetching jobs/.test(e.error))).to.equal(true)
    const [job] = await t.query<{locked_by: string | null}>(`select locked_by from ${t.quoted}._private_jobs`)
    expect(job, 'the job is still queued, and no longer locked').to.deep.equal({locked_by: null})
  })

  it('tells a broken fetch connection (ambiguous) from an error the server rolled back', () => {
    expect(isAmbiguousOutcome(Object.assign(new Error('Connection terminated unexpectedly'), {}))).to.equal(true)
    expect(isAmbiguousOutcome(Object.assign(new Error('write EPIPE'), {code: 'EPIPE'}))).to.equal(true)
    expect(
      isAmbiguousOutcome(
        Object.assign(new Error('terminating connection due to administrator command'), {code: '57P01'}),
      ),
    ).to.equal(true)
    expect(isAmbiguousOutcome(Object.assign(new Error('connection failure'), {code: '08006'}))).to.equal(true)
    expect(isAmbiguousOutcome(Object.assign(new Error('deadlock detected'), {code: '40P01'}))).to.equal(false)
    expect(
      isAmbiguousOutcome(Object.assign(new Error('canceling statement due to statement timeout'), {code: '57014'})),
    ).to.equal(false)
  })

  it('runOnce() captures, runs what is runnable, captures the new failures, and reports', async () => {
    await t.query(`select ${t.quoted}.add_job('ok', '{}')`)
    await t.query(`select ${t.quoted}.add_job('bad', '{}', max_attempts => 3)`)
    const runner = new WorkerRunner({
      db: t.db,
      tasks: {
        ok: async () => undefined,
        bad: async () => {
          throw new PermanentError('card declined')
        },
      },
    })
    const summary = await runner.runOnce()
    expect(summary.jobs).to.deep.equal({started: 2, succeeded: 1, failed: 1, permanent: 1})
    expect(summary.dlqCaptured).to.equal(1)
    const rows = await t.query(`select task_identifier, last_error from ${t.quoted}.backfill_dlq`)
    expect(rows).to.deep.equal([
      {task_identifier: 'bad', last_error: 'Permanent failure (non-retryable error): card declined'},
    ])
    expect(await t.query(`select 1 from ${t.quoted}._private_jobs`)).to.have.length(0)
  })

  it('starts and works although an exhausted job cannot be stored in the DLQ (it is reported, not fatal)', async () => {
    await t.query(`select ${t.quoted}.add_job('poison', '{"text":"a\\u0000b"}'::json, max_attempts => 1)`)
    await t.query(`update ${t.quoted}._private_jobs set attempts = 1, last_error = 'x'`)
    await t.query(`select ${t.quoted}.add_job('ok', '{}')`)
    const events: WorkerEvent[] = []
    const runner = new WorkerRunner({db: t.db, tasks: {ok: async () => undefined}, onEvent: (e) => events.push(e)})
    const summary = await runner.runOnce()
    expect(summary.jobs.succeeded).to.equal(1)
    const errors = events.filter((e) => e.type === 'error').map((e) => (e as {error: string}).error)
    expect(errors.filter((e) => /cannot be moved to the DLQ/.test(e))).to.have.length(1)
  })

  it('exposes a Prometheus registry an application can serve itself', async () => {
    await t.query(`select ${t.quoted}.add_job('ok', '{}')`)
    const runner = new WorkerRunner({db: t.db, tasks: {ok: async (_p: unknown, _h: JobHelpers) => undefined}})
    await runner.runOnce()
    const text = await runner.metrics.registry.metrics()
    expect(text).to.contain('backfill_jobs_completed_total{task="ok"} 1')
  })

  it('sizes the pool for jobs plus its own connections', () => {
    expect(requiredPoolSize({concurrency: 10})).to.equal(16)
    expect(requiredPoolSize({fastConcurrency: 2, bulkConcurrency: 3})).to.equal(13)
  })
})
