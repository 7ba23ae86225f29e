import {expect} from 'chai'
import type pg from 'pg'

import {NotMigratedError, UsageError} from '../../src/lib/errors.js'
import {runChecks, type CheckThresholds} from '../../src/lib/health/check.js'
import {queueStatus} from '../../src/lib/health/status.js'
import {schemaStatus} from '../../src/lib/health/doctor.js'
import {jobTotals} from '../../src/lib/sql/status.js'
import {rustDlqTableSql, rustMigration19Sql, rustMigration20Sql} from '../fixtures/rust.js'
import {TestSchema} from '../support/db.js'
import {lockedJob, poolId, presenceSession, registerWorker} from '../support/locks.js'

const L = {restartGrace: false} as const

/**
 * A crafted queue: task email (parallel) and report (serial queues), every state, DLQ
 * entries (one of a task and queue that no longer have jobs), a live and a dead worker.
 */
async function craft(t: TestSchema, sessions: pg.Client[]): Promise<{live: string; dead: string}> {
  const q = t.quoted
  const add = async (
    task: string,
    queue: string | null,
    runAt: string,
    attempts = 0,
    maxAttempts = 8,
  ): Promise<void> => {
    const [row] = await t.query<{id: string}>(
      `select id::text from ${q}.add_job($1, '{}'::json, queue_name => $2, run_at => now() + $3::interval, max_attempts => $4)`,
      [task, queue, runAt, maxAttempts],
    )
    await t.query(`update ${q}._private_jobs set attempts = $2 where id = $1`, [row?.id, attempts])
  }
  await add('email', null, '-10 minutes') // oldest ready
  await add('email', null, '-1 minute')
  await add('email', null, '-1 second')
  await add('email', null, '-5 seconds', 1) // retrying, ready
  await add('email', null, '1 hour')
  await add('email', null, '2 hours')
  await add('email', null, '30 seconds', 2) // retrying, scheduled
  await add('email', null, '-1 hour', 8) // exhausted
  await add('email', null, '-1 hour', 3, 3) // exhausted
  await add('report', 'user:2', '-2 minutes')
  await add('report', 'user:2', '-1 hour', 5, 5) // exhausted
  const live = poolId()
  const dead = poolId()
  await registerWorker(t, live)
  sessions.push(await presenceSession(t.url, live))
  await registerWorker(t, dead, {heartbeatAgo: '10 minutes'})
  await lockedJob(t, {task: 'email', queue: 'user:1', owner: live, lockedAgo: '3 minutes'})
  await lockedJob(t, {task: 'report', owner: dead, lockedAgo: '20 minutes'})
  await t.query(`insert into ${q}.backfill_dlq (task_identifier, payload, queue_name, failure_reason) values
    ('email', '{}', '', 'x'), ('email', '{}', '', 'x'), ('gone_task', '{}', 'user:9', 'x')`)
  return {live, dead}
}

describe('health: status, check, schema status', function () {
  const schemas: TestSchema[] = []
  const sessions: pg.Client[] = []
  const fresh = async (migrated = true): Promise<TestSchema> => {
    const t = await TestSchema.create({migrated, prefix: 'health'})
    schemas.push(t)
    return t
  }
  after(async () => {
    for (const s of sessions) await s.end().catch(() => undefined)
    for (const t of schemas) await t.drop()
  })

  describe('queueStatus', () => {
    let t: TestSchema
    let owners: {live: string; dead: string}
    before(async () => {
      t = await fresh()
      owners = await craft(t, sessions)
    })

    it('counts every state in total, per task and per queue, with the DLQ', async () => {
      const s = await queueStatus(t.db, L)
      expect(s.totals).to.include({ready: 5, scheduled: 3, running: 2, retrying: 2, exhausted: 3, jobs: 13, dlq: 3})
      expect(s.totals.oldestReadyAgeMs).to.be.within(595_000, 660_000)
      const task = (name: string) => s.tasks.find((x) => x.task === name)
      expect(task('email')).to.include({ready: 4, scheduled: 3, running: 1, retrying: 2, exhausted: 2, dlq: 2})
      expect(task('report')).to.include({ready: 1, scheduled: 0, running: 1, retrying: 0, exhausted: 1, dlq: 0})
      expect(task('gone_task')).to.include({ready: 0, dlq: 1})
      const queue = (name: string | null) => s.queues.find((x) => x.queue === name)
      expect(s.queues[0]?.queue, 'parallel jobs first').to.equal(null)
      expect(queue(null)).to.include({ready: 4, scheduled: 3, running: 1, retrying: 2, exhausted: 2, dlq: 2})
      expect(queue('user:1')).to.include({running: 1, lockedBy: owners.live, lockLiveness: 'live'})
      expect(queue('user:2')).to.include({ready: 1, exhausted: 1, lockedBy: null})
      expect(queue('user:9')).to.include({ready: 0, dlq: 1})
      expect(s.serialQueues).to.equal(2)
      expect(s.otherQueues).to.equal(null)
      expect(s.locks).to.deep.equal({
        live: {jobs: 1, queues: 1},
        dead: {jobs: 1, queues: 0},
        unknown: {jobs: 0, queues: 0},
        stale: {jobs: 0, queues: 0},
      })
      expect(Object.fromEntries(s.workers.map((w) => [w.id, w.state]))).to.deep.equal({
        [owners.live]: 'live',
        [owners.dead]: 'dead',
      })
    })

    it('lists the busiest queues and folds the rest', async () => {
      const s = await queueStatus(t.db, {...L, queueLimit: 1})
      expect(s.queues.map((q) => q.queue)).to.deep.equal([null, 'user:2', 'user:9'])
      expect(s.otherQueues).to.include({queues: 1, running: 1})
    })

    it('derives every state as its definition says, for every combination of lock, attempts and run_at', async () => {
      // The scan counts per row only what it must and derives the rest (src/lib/sql/status.ts):
      // checked here against each state's definition, written out, over a grid of every case.
      const t2 = await fresh()
      const q = t2.quoted
      await t2.query(`insert into ${q}._private_tasks (identifier) values ('a'), ('b')`)
      await t2.query(`insert into ${q}._private_job_queues (queue_name) values ('user:1'), ('user:2')`)
      await t2.query(
        `insert into ${q}._private_jobs (task_id, job_queue_id, payload, run_at, attempts, max_attempts, locked_at, locked_by)
         select task, queue, '{}', now() + run_in * interval '1 minute', attempts, 3,
                case when locked then now() - interval '1 minute' end, case when locked then 'pool-grid' end
         from unnest(array[1, 2]) task, unnest(array[null, 1, 2]::int[]) queue, unnest(array[-30, -5, 10]) run_in,
              unnest(array[0, 1, 3, 4]) attempts, unnest(array[false, true]) locked
         where not (task = 2 and run_in < 0 and not locked and attempts < 3)`, // task b: nothing ready
      )
      const [expected] = await t2.query<Record<string, number | null>>(
        `select count(*) filter (where locked_at is null and attempts < max_attempts and run_at <= now())::int as ready,
                count(*) filter (where locked_at is null and attempts < max_attempts and run_at > now())::int as scheduled,
                count(*) filter (where locked_at is not null)::int as running,
                count(*) filter (where locked_at is null and attempts < max_attempts and attempts > 0)::int as retrying,
                count(*) filter (where locked_at is null and attempts >= max_attempts)::int as exhausted,
                (extract(epoch from now() - min(run_at) filter (where locked_at is null and attempts < max_attempts and run_at <= now())) * 1000)::float8 as age
         from ${q}._private_jobs`,
      )
      const byTask = await t2.query<{
        task: string
        ready: number
        scheduled: number
        exhausted: number
        age: number | null
      }>(
        `select t.identifier as task,
                count(*) filter (where locked_at is null and attempts < max_attempts and run_at <= now())::int as ready,
                count(*) filter (where locked_at is null and attempts < max_attempts and run_at > now())::int as scheduled,
                count(*) filter (where locked_at is null and attempts >= max_attempts)::int as exhausted,
                (extract(epoch from now() - min(run_at) filter (where locked_at is null and attempts < max_attempts and run_at <= now())) * 1000)::float8 as age
         from ${q}._private_jobs j join ${q}._private_tasks t on t.id = j.task_id group by 1 order by 1`,
      )
      const s = await queueStatus(t2.db, L)
      const totals = await t2.db.one(jobTotals, []) // check's statement
      const {age, ...counts} = expected as Record<string, number>
      expect(s.totals).to.include(counts)
      expect(s.totals.oldestReadyAgeMs).to.be.closeTo(age as number, 2_000)
      expect(totals).to.include(counts)
      expect(totals.oldest_ready_age_ms).to.be.closeTo(age as number, 2_000)
      for (const row of byTask) {
        const got = s.tasks.find((x) => x.task === row.task)
        expect(got, row.task).to.include({ready: row.ready, scheduled: row.scheduled, exhausted: row.exhausted})
        if (row.age === null) expect(got?.oldestReadyAgeMs, `${row.task}: none ready`).to.equal(null)
        else expect(got?.oldestReadyAgeMs).to.be.closeTo(row.age, 2_000)
      }
      expect(byTask.find((r) => r.task === 'b')?.ready, 'the grid has a task with nothing ready').to.equal(0)
    })

    it('works without a DLQ table (counts say so)', async () => {
      const t2 = await fresh()
      await t2.query(`drop table ${t2.quoted}.backfill_dlq`)
      await lockedJob(t2, {owner: poolId(), lockedAgo: '1 hour'})
      const s = await queueStatus(t2.db, L)
      expect(s.totals).to.include({running: 1, dlq: null})
      expect(s.dlq.exists).to.equal(false)
      expect(s.locks.stale).to.deep.equal({jobs: 1, queues: 0})
    })
  })

  describe('runChecks', () => {
    let t: TestSchema
    before(async () => {
      t = await fresh()
      await craft(t, sessions)
      await lockedJob(t, {owner: 'hand-made', lockedAgo: '2 hours'}) // stale, unknown owner
    })
    const check = async (thresholds: CheckThresholds) => runChecks(t.db, {...L, ...thresholds})

    it('passes and fails each threshold on what it measures', async () => {
      const cases: [CheckThresholds, CheckThresholds, number | string][] = [
        [{maxReadyAgeMs: 15 * 60_000}, {maxReadyAgeMs: 5 * 60_000}, 'ready-age'],
        [{maxReady: 5}, {maxReady: 4}, 5],
        [{maxDlq: 3}, {maxDlq: 2}, 3],
        [{maxExhausted: 3}, {maxExhausted: 2}, 3],
        [{maxDeadLocks: 1}, {maxDeadLocks: 0}, 1],
        [{maxStaleLocks: 1}, {maxStaleLocks: 0}, 1],
        [{minWorkers: 1}, {minWorkers: 2}, 1],
      ]
      for (const [pass, fail, actual] of cases) {
        const ok = await check(pass)
        expect(ok.ok, JSON.stringify(ok.checks)).to.equal(true)
        const bad = await check(fail)
        expect(bad.ok, JSON.stringify(bad.checks)).to.equal(false)
        expect(bad.failed).to.equal(1)
        if (typeof actual === 'number') expect(bad.checks[0]?.actual).to.equal(actual)
      }
      const dead = await check({maxDeadLocks: 0})
      expect(dead.checks[0]?.message).to.match(
        /dead-locks: 1 locks held by dead workers \(max 0\): pool-.*; run backfill locks clean/,
      )
    })

    it('reports every requested check together', async () => {
      const result = await check({maxDlq: 0, maxExhausted: 0, requireMigrated: true, maxReady: 100})
      expect(result.checks.map((c) => `${c.name}:${c.status}`)).to.deep.equal([
        'migrated:pass',
        'ready:pass',
        'exhausted:fail',
        'dlq:fail',
      ])
      expect(result.failed).to.equal(2)
    })

    it('refuses to check nothing', async () => {
      let error: unknown
      try {
        await runChecks(t.db, {})
      } catch (e) {
        error = e
      }
      expect(error).to.be.instanceOf(UsageError)
    })

    it('an un-migrated schema: NotMigratedError, or a failed migrated check with --require-migrated', async () => {
      const empty = await fresh(false)
      let error: unknown
      try {
        await runChecks(empty.db, {maxDlq: 0})
      } catch (e) {
        error = e
      }
      expect(error).to.be.instanceOf(NotMigratedError)
      const result = await runChecks(empty.db, {maxDlq: 0, requireMigrated: true})
      expect(result.checks.map((c) => `${c.name}:${c.status}`)).to.deep.equal(['migrated:fail', 'dlq:skip'])
      expect(result.ok).to.equal(false)
    })

    it('a missing DLQ table fails --max-dlq; missing backfill objects fail --require-migrated', async () => {
      const t2 = await fresh()
      await t2.query(`drop table ${t2.quoted}.backfill_dlq`)
      const result = await runChecks(t2.db, {maxDlq: 10, requireMigrated: true})
      expect(result.checks.map((c) => `${c.name}:${c.status}`)).to.deep.equal(['migrated:fail', 'dlq:fail'])
      expect(result.checks[1]?.message).to.match(/does not exist/)
    })
  })

  describe('schemaStatus', () => {
    const codes = (s: Awaited<ReturnType<typeof schemaStatus>>) => s.findings.map((f) => `${f.severity}:${f.code}`)

    it('a schema backfill migrated (Node): nothing to do, migration 19 by Node', async () => {
      const t = await fresh()
      const s = await schemaStatus(t.db)
      expect(s.actionNeeded, JSON.stringify(s.findings)).to.equal(false)
      expect(s.graphile).to.include({installed: true, revision: 19, highestKnown: 19, breakingColumn: true})
      expect(s.graphile.pending).to.deep.equal([])
      expect(s.graphile.runs).to.have.length(1)
      expect(s.migration19.by).to.equal('node')
      expect(s.rust).to.deep.equal({migration20: false, workersTable: false, workers: 0, liveWorkers: 0})
      expect(s.backfill).to.include({dlq: true, dlqUniqueIndex: true})
      expect(codes(s)).to.deep.equal(['info:migration-19-node'])
    })

    it('a schema the Rust graphile_worker migrated (19 and 20): reported, no action needed; the sweeper hazard when Node pools hold locks', async () => {
      const t = await fresh()
      await t.db.execScript(rustMigration19Sql(t.quoted, t.schema))
      await t.db.execScript(rustMigration20Sql(t.quoted))
      let s = await schemaStatus(t.db)
      expect(s.actionNeeded, JSON.stringify(s.findings)).to.equal(false)
      expect(s.migration19.by).to.equal('rust')
      expect(s.rust).to.include({migration20: true, workersTable: true})
      expect(s.graphile.unknown).to.deep.equal([20])
      expect(codes(s)).to.deep.equal([
        'info:unknown-migrations',
        'info:migration-19-rust',
        'info:rust-recovery-installed',
      ])

      await t.query(`select ${t.quoted}.worker_heartbeat('graphile_worker_abc', null)`)
      await lockedJob(t, {owner: poolId(), lockedAgo: '6 minutes'})
      s = await schemaStatus(t.db)
      const hazard = s.findings.find((f) => f.code === 'rust-sweeper-vs-node')
      expect(hazard?.severity).to.equal('warning')
      expect(hazard?.message).to.match(/1 live\) while Node pools hold 1 locks.*\(1 Node locks are past that now\)/)
      expect(s.rust.liveWorkers).to.equal(1)
      expect(s.actionNeeded).to.equal(false)
    })

    it('an empty database: the schema is missing, action needed', async () => {
      const t = await fresh(false)
      const s = await schemaStatus(t.db)
      expect(s).to.include({schemaExists: false, actionNeeded: true})
      expect(codes(s)).to.deep.equal(['error:schema-missing'])
      expect(await t.query(`select 1 from pg_namespace where nspname = $1`, [t.schema]), 'read-only').to.have.length(0)
    })

    it("graphile-worker without the DLQ, or a DLQ from the crate's SQL file without its unique index", async () => {
      const t = await fresh()
      await t.query(`drop table ${t.quoted}.backfill_dlq`)
      expect(codes(await schemaStatus(t.db))).to.include('error:dlq-missing')
      await t.db.execScript(rustDlqTableSql(t.quoted, {uniqueIndex: false}))
      const s = await schemaStatus(t.db)
      expect(codes(s)).to.include.members(['error:dlq-unique-index-missing', 'warning:dlq-varchar'])
      expect(s.actionNeeded).to.equal(true)
    })

    it('pending breaking migration with recently locked jobs; a ledger without the breaking column; a mixed migration 19', async () => {
      const t = await fresh()
      await t.query(`delete from ${t.quoted}.migrations where id = 19`)
      await lockedJob(t, {owner: poolId(), lockedAgo: '1 hour'})
      let s = await schemaStatus(t.db)
      expect(s.graphile.pending).to.deep.equal([19])
      expect(codes(s)).to.include.members(['error:pending-migrations', 'error:locked-jobs-block-migration'])

      const t2 = await fresh()
      await t2.query(`alter table ${t2.quoted}.migrations drop column breaking`)
      s = await schemaStatus(t2.db)
      expect(codes(s)).to.include('error:no-breaking-column')

      const t3 = await fresh()
      await t3.db.execScript(rustMigration19Sql(t3.quoted, t3.schema))
      await t3.query(`update ${t3.quoted}.migrations set breaking = true where id = 19`)
      s = await schemaStatus(t3.db)
      expect(s.migration19.by).to.equal('unclear')
      expect(codes(s)).to.include('warning:migration-19-mixed')
    })

    it("dead workers' locks are reported with what to do", async () => {
      const t = await fresh()
      const dead = poolId()
      await registerWorker(t, dead, {stopped: true})
      await lockedJob(t, {owner: dead, lockedAgo: '1 minute'})
      const s = await schemaStatus(t.db)
      expect(s.findings.find((f) => f.code === 'dead-locks')).to.include({
        severity: 'warning',
        action: 'backfill locks clean' + (t.schema === 'graphile_worker' ? '' : ` --schema ${t.schema}`),
      })
    })
  })
})
