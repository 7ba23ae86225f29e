import {expect} from 'chai'
import type pg from 'pg'

import {captureExhausted} from '../../src/lib/dlq/capture.js'
import {NotMigratedError} from '../../src/lib/errors.js'
import {cleanLocks} from '../../src/lib/locks/clean.js'
import {listLocks} from '../../src/lib/locks/list.js'
import {rustMigration20Sql} from '../fixtures/rust.js'
import {resolveWorkerConfig} from '../../src/lib/worker/config.js'
import {defaultCleanLocks} from '../../src/lib/worker/lock-cleanup.js'
import {TestSchema} from '../support/db.js'
import {jobRow, lockedJob, lockedQueue, poolId, presenceSession, queueLock, registerWorker} from '../support/locks.js'

/** The test server has just started: judge heartbeats by their own age (see restartGrace). */
const L = {restartGrace: false} as const

describe('locks: owner liveness and release', function () {
  const schemas: TestSchema[] = []
  const sessions: pg.Client[] = []
  const fresh = async (): Promise<TestSchema> => {
    const t = await TestSchema.create({migrated: true, prefix: 'locks'})
    schemas.push(t)
    return t
  }
  const session = async (t: TestSchema, pool: string): Promise<pg.Client> => {
    const client = await presenceSession(t.url, pool)
    sessions.push(client)
    return client
  }
  after(async () => {
    for (const s of sessions) await s.end().catch(() => undefined)
    for (const t of schemas) await t.drop()
  })

  describe('listLocks', () => {
    it('tells live, dead and unknown owners apart, with the runtime family from the prefix', async () => {
      const t = await fresh()
      const liveSession = poolId()
      const liveHeartbeat = poolId()
      const dead = poolId()
      const stopped = poolId()
      const nodePool = poolId()
      const nodeLegacy = poolId('worker')
      const rust = `graphile_worker_${poolId('x').slice(2)}`
      await registerWorker(t, liveSession, {heartbeatAgo: '10 minutes'}) // stale heartbeat, but connected
      await session(t, liveSession)
      await registerWorker(t, liveHeartbeat, {heartbeatAgo: '5 seconds'})
      await registerWorker(t, dead, {heartbeatAgo: '2 minutes'})
      await registerWorker(t, stopped, {heartbeatAgo: '1 second', stopped: true})
      for (const owner of [liveSession, liveHeartbeat, dead, stopped, nodePool, nodeLegacy, rust, 'my-own-lock']) {
        await lockedJob(t, {owner, lockedAgo: '1 minute'})
      }
      const listing = await listLocks(t.db, L)
      const of = (owner: string) => listing.owners.find((o) => o.owner === owner)
      expect(of(liveSession)).to.include({liveness: 'live', evidence: 'presence-session', family: 'node'})
      expect(of(liveHeartbeat)).to.include({liveness: 'live', evidence: 'backfill-heartbeat'})
      expect(of(dead)).to.include({liveness: 'dead', evidence: 'backfill-heartbeat'})
      expect(of(dead)?.reason).to.match(/no presence session, last heartbeat 2m/)
      expect(of(stopped)).to.include({liveness: 'dead'})
      expect(of(stopped)?.reason).to.match(/stopped/)
      expect(of(nodePool)).to.include({liveness: 'unknown', family: 'node'})
      expect(of(nodeLegacy)).to.include({liveness: 'unknown', family: 'node'})
      expect(of(rust)).to.include({liveness: 'unknown', family: 'rust'})
      expect(of('my-own-lock')).to.include({liveness: 'unknown', family: 'other'})
      expect(listing.owners[0]?.liveness, 'dead owners come first').to.equal('dead')
      expect(listing.locks).to.have.length(8)
      expect(listing.locks.every((l) => /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/.test(l.lockedAt))).to.equal(true)
      const workers = new Map(listing.workers.map((w) => [w.id, w.state]))
      expect(Object.fromEntries(workers)).to.deep.equal({
        [liveSession]: 'live',
        [liveHeartbeat]: 'live',
        [dead]: 'dead',
        [stopped]: 'dead',
      })
    })

    it('uses the heartbeat interval each worker recorded (3 ×, at least 30 s)', async () => {
      const t = await fresh()
      const slow = poolId()
      const fast = poolId()
      await registerWorker(t, slow, {heartbeatAgo: '50 seconds', heartbeatIntervalMs: 20_000}) // bound 60 s
      await registerWorker(t, fast, {heartbeatAgo: '50 seconds', heartbeatIntervalMs: 1_000}) // bound 30 s
      await lockedJob(t, {owner: slow, lockedAgo: '1 minute'})
      await lockedJob(t, {owner: fast, lockedAgo: '1 minute'})
      const listing = await listLocks(t.db, L)
      expect(listing.owners.find((o) => o.owner === slow)?.liveness).to.equal('live')
      expect(listing.owners.find((o) => o.owner === fast)?.liveness).to.equal('dead')
    })

    it('reads Rust heartbeats from _private_workers: fresh is live, stale is dead, resilient jobs get 3 × the bound', async () => {
      const t = await fresh()
      await t.db.execScript(rustMigration20Sql(t.quoted))
      const [fresh1, stale, resilient] = ['a', 'b', 'c'].map((x) => `graphile_worker_${x}${poolId('y').slice(2)}`) as [
        string,
        string,
        string,
      ]
      await t.query(
        `insert into ${t.quoted}._private_workers (id, last_heartbeat_at) values ($1, now() - interval '20 seconds'), ($2, now() - interval '6 minutes'), ($3, now() - interval '6 minutes')`,
        [fresh1, stale, resilient],
      )
      await lockedJob(t, {owner: fresh1, lockedAgo: '1 hour'})
      await lockedJob(t, {owner: stale, lockedAgo: '1 second'})
      await lockedJob(t, {owner: resilient, lockedAgo: '1 second', flags: ['infrastructure_resilient']})
      const listing = await listLocks(t.db, L)
      const of = (owner: string) => listing.owners.find((o) => o.owner === owner)
      expect(of(fresh1)).to.include({liveness: 'live', evidence: 'rust-heartbeat', family: 'rust'})
      expect(of(stale)).to.include({liveness: 'dead', evidence: 'rust-heartbeat'})
      expect(of(resilient)).to.include({liveness: 'live', holdsResilientJob: true})
      expect(listing.workers.filter((w) => w.runtime === 'rust')).to.have.length(3)
      // A Rust fleet configured with a longer heartbeat (--rust-heartbeat-timeout): the 6-minute-old one is live.
      const patient = await listLocks(t.db, {...L, rustHeartbeatTimeoutMs: 10 * 60_000})
      expect(patient.owners.find((o) => o.owner === stale)).to.include({liveness: 'live', evidence: 'rust-heartbeat'})
      // The worker's own cleanup takes the bound too (worker --rust-heartbeat-timeout): 10 min keeps
      // every Rust owner; a bound a quarter of the youngest heartbeat age makes all three dead.
      // Ages count from the server's start when that is later (restart grace): hence the uptime.
      const [{uptime}] = (await t.query<{uptime: number}>(
        `select (extract(epoch from now() - pg_postmaster_start_time()) * 1000)::float8 as uptime`,
      )) as [{uptime: number}]
      const worker = (ms: number) => defaultCleanLocks(t.db, resolveWorkerConfig({rustHeartbeatTimeoutMs: ms}))
      expect((await worker(10 * 60_000)).jobLocks).to.equal(0)
      expect((await worker(Math.min(uptime, 20_000) / 4)).jobLocks).to.equal(3)
    })

    it('after a server restart no registered owner is dead before one bound has passed (restartGrace)', async () => {
      const t = await fresh()
      const pool = poolId()
      await registerWorker(t, pool, {heartbeatAgo: '10 days'})
      await lockedJob(t, {owner: pool, lockedAgo: '1 minute'})
      const [{uptime}] = (await t.query<{uptime: number}>(
        `select (extract(epoch from now() - pg_postmaster_start_time()) * 1000)::float8 as uptime`,
      )) as [{uptime: number}]
      const bound = uptime + 60_000 // the server started less than one bound ago
      expect((await listLocks(t.db, {heartbeatTimeoutMs: bound})).owners[0]?.liveness).to.equal('live')
      expect((await listLocks(t.db, {heartbeatTimeoutMs: bound, restartGrace: false})).owners[0]?.liveness).to.equal(
        'dead',
      )
    })

    it('works on a schema graphile-worker migrated without backfill objects (every Node owner unknown)', async () => {
      const t = await fresh()
      await t.query(`drop table ${t.quoted}.backfill_workers`)
      const pool = poolId()
      await lockedJob(t, {owner: pool, lockedAgo: '1 minute'})
      const listing = await listLocks(t.db, L)
      expect(listing.evidence.registry).to.equal(false)
      expect(listing.owners[0]).to.include({owner: pool, liveness: 'unknown'})
    })

    it('refuses an un-migrated schema without creating anything', async () => {
      const t = await TestSchema.create({prefix: 'locks'})
      schemas.push(t)
      let error: unknown
      try {
        await listLocks(t.db, L)
      } catch (e) {
        error = e
      }
      expect(error).to.be.instanceOf(NotMigratedError)
      expect(await t.query(`select 1 from pg_namespace where nspname = $1`, [t.schema])).to.have.length(0)
    })
  })

  describe('cleanLocks', () => {
    it("never releases a live owner's locks, whatever their age (session or heartbeat)", async () => {
      const t = await fresh()
      const bySession = poolId()
      const byHeartbeat = poolId()
      await registerWorker(t, bySession, {heartbeatAgo: '3 days'})
      await session(t, bySession)
      await registerWorker(t, byHeartbeat, {heartbeatAgo: '2 seconds'})
      const a = await lockedJob(t, {owner: bySession, lockedAgo: '2 days', queue: 'serial-a'})
      const b = await lockedJob(t, {owner: byHeartbeat, lockedAgo: '9 hours'})
      const result = await cleanLocks(t.db, {...L, staleJobLockTimeoutMs: 0, staleQueueLockTimeoutMs: 0})
      expect(result.jobLocks).to.equal(0)
      expect(result.queueLocks).to.equal(0)
      expect(result.kept['live-owner']).to.deep.equal({jobs: 2, queues: 1})
      expect((await jobRow(t, a))?.locked_by).to.equal(bySession)
      expect((await jobRow(t, b))?.locked_by).to.equal(byHeartbeat)
      expect((await queueLock(t, 'serial-a'))?.locked_by).to.equal(bySession)
    })

    it("releases a dead owner's job and queue locks at once, keeping attempts and recording why", async () => {
      const t = await fresh()
      const dead = poolId()
      await registerWorker(t, dead, {heartbeatAgo: '90 seconds', hostname: 'host-gone'})
      const parallel = await lockedJob(t, {owner: dead, lockedAgo: '2 seconds'})
      const serial = await lockedJob(t, {owner: dead, lockedAgo: '2 seconds', queue: 'user:1'})
      const before = await jobRow(t, parallel)
      const result = await cleanLocks(t.db, L)
      expect(result.released['dead-owner']).to.deep.equal({jobs: 2, queues: 1})
      expect(result).to.include({jobLocks: 2, queueLocks: 1})
      for (const id of [parallel, serial]) {
        const row = await jobRow(t, id)
        expect(row).to.include({locked_by: null, locked_at: null, attempts: before?.attempts})
        expect(row?.last_error).to.match(
          new RegExp(`^Lock released by backfill locks clean: owner ${dead} is dead: backfill worker on host-gone`),
        )
        expect(row?.run_at.getTime()).to.be.at.least(Date.now() - 60_000)
      }
      expect(await queueLock(t, 'user:1')).to.deep.equal({locked_by: null, locked_at: null})
      const [{count}] = (await t.query<{count: number}>(
        `select count(*)::int as count from ${t.quoted}._private_jobs`,
      )) as [{count: number}]
      expect(count, 'no job is deleted').to.equal(2)
      // Without audit options (the worker's own cleanup) no audit row is written.
      expect(await t.query(`select 1 from ${t.quoted}.backfill_dlq_audit`)).to.have.length(0)
    })

    it('an operator release writes one locks.clean audit row in its transaction; the worker cleanup none', async () => {
      const t = await fresh()
      const dead = poolId()
      await registerWorker(t, dead, {heartbeatAgo: '90 seconds', hostname: 'host-gone'})
      const a = await lockedJob(t, {owner: dead, lockedAgo: '2 seconds'})
      const b = await lockedJob(t, {owner: dead, lockedAgo: '2 seconds', queue: 'user:1'})
      const result = await cleanLocks(t.db, {
        ...L,
        audit: {reason: 'INC-1', actor: {osUser: 'oncall', hostname: 'laptop'}},
      })
      expect(result).to.include({jobLocks: 2, queueLocks: 1})
      const rows = await t.query<{action: string; count: number; os_user: string; reason: string; job_ids: string[]}>(
        `select action, count, os_user, reason, job_ids::text[] from ${t.quoted}.backfill_dlq_audit`,
      )
      expect(rows).to.have.length(1)
      expect(rows[0]).to.deep.include({action: 'locks.clean', count: 3, os_user: 'oncall', reason: 'INC-1'})
      expect([...(rows[0]?.job_ids ?? [])].sort()).to.deep.equal([a, b].sort())
      // Nothing released: nothing audited.
      await cleanLocks(t.db, {...L, audit: {}})
      expect(await t.query(`select 1 from ${t.quoted}.backfill_dlq_audit`)).to.have.length(1)
    })

    it("releases unknown owners' locks only past the stale timeouts", async () => {
      const t = await fresh()
      const node = poolId()
      const young = await lockedJob(t, {owner: node, lockedAgo: '29 minutes'})
      const old = await lockedJob(t, {owner: node, lockedAgo: '31 minutes'})
      const result = await cleanLocks(t.db, L)
      expect(result.released['stale-unknown'].jobs).to.equal(1)
      expect(result.kept['unknown-not-stale'].jobs).to.equal(1)
      expect((await jobRow(t, young))?.locked_by).to.equal(node)
      expect((await jobRow(t, old))?.locked_by).to.equal(null)
      expect((await jobRow(t, old))?.last_error).to.match(/publishes no liveness \(stale job lock timeout 30m\)/)

      const custom = await cleanLocks(t.db, {...L, staleJobLockTimeoutMs: 20 * 60_000})
      expect(custom.jobLocks).to.equal(1)
      expect((await jobRow(t, young))?.locked_by).to.equal(null)
      expect(custom.warnings).to.deep.equal([])
    })

    it('a hand-made lock without an owner id is unknown and released past the timeout too', async () => {
      const t = await fresh()
      const id = await lockedJob(t, {owner: null, lockedAgo: '31 minutes'})
      const listing = await listLocks(t.db, L)
      expect(listing.owners[0]).to.include({owner: null, family: 'other', liveness: 'unknown'})
      expect((await cleanLocks(t.db, L)).jobLocks).to.equal(1)
      expect(await jobRow(t, id)).to.include({locked_at: null, locked_by: null})
    })

    it("frees a serial queue's queue lock the same way, but not while its owner's job in it is kept", async () => {
      const t = await fresh()
      const node = poolId()
      // Job running 10 min: kept (30 min), so its queue lock stays although older than 5 min.
      await lockedJob(t, {owner: node, lockedAgo: '10 minutes', queue: 'running'})
      // Job and queue 40 min: both go.
      await lockedJob(t, {owner: node, lockedAgo: '40 minutes', queue: 'stuck'})
      // Queue locks without a job lock: 6 min goes, 4 min stays.
      await lockedQueue(t, 'orphan-old', node, '6 minutes')
      await lockedQueue(t, 'orphan-young', node, '4 minutes')
      const result = await cleanLocks(t.db, L)
      expect((await queueLock(t, 'running'))?.locked_by).to.equal(node)
      expect((await queueLock(t, 'stuck'))?.locked_by).to.equal(null)
      expect((await queueLock(t, 'orphan-old'))?.locked_by).to.equal(null)
      expect((await queueLock(t, 'orphan-young'))?.locked_by).to.equal(node)
      expect(result.released['stale-unknown']).to.deep.equal({jobs: 1, queues: 2})
      expect(result.kept['queue-in-use'].queues).to.equal(1)
      expect(result.kept['unknown-not-stale']).to.deep.equal({jobs: 1, queues: 1})
    })

    it('--force releases live owners too; owners narrows it down; dry run changes nothing', async () => {
      const t = await fresh()
      const live = poolId()
      const other = poolId()
      await registerWorker(t, live)
      await session(t, live)
      const a = await lockedJob(t, {owner: live, lockedAgo: '1 second'})
      const b = await lockedJob(t, {owner: other, lockedAgo: '1 second'})
      const dry = await cleanLocks(t.db, {...L, force: true, owners: [live], dryRun: true})
      expect(dry).to.include({dryRun: true, jobLocks: 1})
      expect(dry.locks.map((l) => l.owner)).to.deep.equal([live])
      expect((await jobRow(t, a))?.locked_by).to.equal(live)
      const forced = await cleanLocks(t.db, {...L, force: true, owners: [live]})
      expect(forced.released.forced.jobs).to.equal(1)
      expect((await jobRow(t, a))?.locked_by).to.equal(null)
      expect((await jobRow(t, a))?.last_error).to.match(/forced \(owner .* is live: presence session connected\)/)
      expect((await jobRow(t, b))?.locked_by).to.equal(other)
    })

    it('leaves a lock that was taken again, or whose owner came back, after it was judged', async () => {
      const t = await fresh()
      const dead = poolId()
      const taker = poolId()
      await registerWorker(t, dead, {heartbeatAgo: '5 minutes'})
      const retaken = await lockedJob(t, {owner: dead, lockedAgo: '1 minute'})
      const revived = await lockedJob(t, {owner: dead, lockedAgo: '2 minutes'})
      const plan = await cleanLocks(t.db, {...L, dryRun: true})
      expect(plan.jobLocks).to.equal(2)
      // Meanwhile another cleaner released one job and a worker took it at once...
      await t.query(`update ${t.quoted}._private_jobs set locked_by = $2, locked_at = now() where id = $1`, [
        retaken,
        taker,
      ])
      // ...and the dead worker's presence session is back.
      await session(t, dead)
      const result = await cleanLocks(t.db, {...L, only: plan.locks.map((l) => l.key), owners: [dead, taker]})
      expect((await jobRow(t, retaken))?.locked_by).to.equal(taker)
      expect((await jobRow(t, revived))?.locked_by).to.equal(dead)
      expect(result.jobLocks).to.equal(0)
      // The listing now sees the owner as live; the re-taken lock is new and was never confirmed.
      expect(result.kept['live-owner'].jobs).to.equal(1)
      expect(result.kept['not-confirmed'].jobs + result.kept['unknown-not-stale'].jobs).to.equal(1)
    })

    it('the write re-checks the presence session even with a stale plan', async () => {
      const t = await fresh()
      const dead = poolId()
      await registerWorker(t, dead, {heartbeatAgo: '5 minutes'})
      const id = await lockedJob(t, {owner: dead, lockedAgo: '1 minute'})
      const listing = await listLocks(t.db, L)
      const lock = listing.locks[0]
      await session(t, dead)
      // Straight to the statement with the judged lock, as a cleaner whose plan predates the session.
      const {releaseJobLocks} = await import('../../src/lib/sql/locks.js')
      const rows = await t.db.rows(releaseJobLocks, [[id], [dead], [lock?.lockedAt ?? ''], ['x'], false])
      expect(rows).to.deep.equal([])
      expect((await jobRow(t, id))?.locked_by).to.equal(dead)
    })

    it("a dead worker's job on its last attempt becomes exhausted and is captured into the DLQ (no crash loop)", async () => {
      const t = await fresh()
      const dead = poolId()
      await registerWorker(t, dead, {heartbeatAgo: '10 minutes'})
      const id = await lockedJob(t, {owner: dead, lockedAgo: '1 minute', maxAttempts: 3, attempts: 3})
      await cleanLocks(t.db, L)
      expect(await jobRow(t, id)).to.include({attempts: 3, locked_by: null})
      const captured = await captureExhausted(t.db)
      expect(captured.captured).to.equal(1)
      const [entry] = await t.query<{failure_reason: string; last_error: unknown}>(
        `select failure_reason, last_error from ${t.quoted}.backfill_dlq`,
      )
      expect(entry?.failure_reason).to.match(/exceeded maximum retry attempts \(3\/3\)/)
      expect(String(entry?.last_error)).to.match(/is dead/)
    })

    it('warns about dangerously short timeouts as the crate does', async () => {
      const t = await fresh()
      const result = await cleanLocks(t.db, {
        ...L,
        staleQueueLockTimeoutMs: 30_000,
        staleJobLockTimeoutMs: 60_000,
        dryRun: true,
      })
      expect(result.warnings.map((w) => w.level)).to.deep.equal(['warning', 'error'])
      expect(result.warnings[1]?.message).to.match(/DUPLICATE EXECUTION/)
    })

    it('two cleaners at once release each lock exactly once, without errors or deadlocks', async () => {
      const t = await fresh()
      const owners = [poolId(), poolId(), poolId()]
      for (const owner of owners) await registerWorker(t, owner, {heartbeatAgo: '10 minutes'})
      await t.query(`insert into ${t.quoted}._private_tasks (identifier) values ('bulk') on conflict do nothing`)
      await t.query(
        `insert into ${t.quoted}._private_job_queues (queue_name, locked_by, locked_at)
        select 'q' || i, ($1::text[])[1 + i % 3], now() - interval '1 minute' from generate_series(1, 60) i`,
        [owners],
      )
      await t.query(
        `insert into ${t.quoted}._private_jobs (task_id, job_queue_id, attempts, locked_by, locked_at)
        select (select id from ${t.quoted}._private_tasks where identifier = 'bulk'),
               case when i <= 60 then (select id from ${t.quoted}._private_job_queues where queue_name = 'q' || i) end,
               1, ($1::text[])[1 + i % 3], now() - interval '1 minute'
        from generate_series(1, 600) i`,
        [owners],
      )
      const results = await Promise.all([cleanLocks(t.db, L), cleanLocks(t.db, L), cleanLocks(t.db, L)])
      expect(results.reduce((n, r) => n + r.jobLocks, 0)).to.equal(600)
      expect(results.reduce((n, r) => n + r.queueLocks, 0)).to.equal(60)
      const [left] = await t.query<{jobs: number; queues: number; total: number}>(`select
        (select count(*)::int from ${t.quoted}._private_jobs where locked_at is not null) as jobs,
        (select count(*)::int from ${t.quoted}._private_job_queues where locked_at is not null) as queues,
        (select count(*)::int from ${t.quoted}._private_jobs) as total`)
      expect(left).to.deep.equal({jobs: 0, queues: 0, total: 600})
    })
  })
})
