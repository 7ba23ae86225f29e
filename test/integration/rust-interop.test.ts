import {expect} from 'chai'

import {runChecks} from '../../src/lib/health/check.js'
import {schemaStatus} from '../../src/lib/health/doctor.js'
import {queueStatus} from '../../src/lib/health/status.js'
import {listLocks} from '../../src/lib/locks/list.js'
import {WorkerRunner} from '../../src/lib/worker/runner.js'
import {isBackfillError} from '../../src/lib/errors.js'
import {migrate} from '../../src/lib/schema/migrate.js'
import {rustMigration19Sql, rustMigration20Sql} from '../fixtures/rust.js'
import {TestSchema} from '../support/db.js'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Schemas shared with the Rust port (graphile_worker_rs), with real backfill workers. */
describe('schemas shared with the Rust port', function () {
  this.timeout(60_000)
  let t: TestSchema
  beforeEach(async () => {
    t = await TestSchema.create({migrated: true, prefix: 'rsi'})
  })
  afterEach(async () => {
    await t.drop()
  })

  it("migration 20: a backfill pool's mirror heartbeat in _private_workers is the same worker, not a Rust one", async () => {
    await t.db.execScript(rustMigration20Sql(t.quoted))
    let release: () => void = () => undefined
    const held = new Promise<void>((resolve) => (release = resolve))
    const runner = new WorkerRunner({
      db: t.db,
      tasks: {hold: () => held},
      config: {concurrency: 1, pollIntervalMs: 50, heartbeatIntervalMs: 200},
    })
    const handle = await runner.start()
    try {
      await t.query(`select ${t.quoted}.add_job('hold', '{}')`)
      // Asserted: the sweeper hazard checked at the end needs a Node lock next to the Rust heartbeat.
      let locked = 0
      for (let i = 0; i < 400 && locked === 0; i++) {
        locked = (await t.query(`select 1 from ${t.quoted}._private_jobs where locked_at is not null`)).length
        if (locked === 0) await sleep(50)
      }
      expect(locked, 'the job is running (locked by the pool)').to.equal(1)
      // The worker mirrors its heartbeat into the Rust registry (so a Rust sweeper spares it).
      const mirrored = await t.query(`select id from ${t.quoted}._private_workers`)
      expect(mirrored.map((r) => r.id)).to.deep.equal(handle.poolIds)

      // One pool is one worker.
      const listing = await listLocks(t.db)
      expect(listing.workers.map((w) => `${w.runtime}:${w.id}`)).to.deep.equal(
        handle.poolIds.map((id) => `backfill:${id}`),
      )
      const status = await queueStatus(t.db)
      expect(status.workers).to.have.length(1)
      const two = await runChecks(t.db, {minWorkers: 2})
      expect(two.ok, JSON.stringify(two.checks)).to.equal(false)
      expect(two.checks[0]?.actual).to.equal(1)
      expect((await runChecks(t.db, {minWorkers: 1})).ok).to.equal(true)

      // No "Rust workers with recovery enabled" hazard when the only heartbeat is backfill's own.
      const doctor = await schemaStatus(t.db)
      expect(doctor.rust).to.include({workers: 0, liveWorkers: 0})
      expect(doctor.findings.map((f) => f.code)).not.to.include('rust-sweeper-vs-node')

      // A real Rust worker's heartbeat still counts, and raises the hazard next to Node locks.
      await t.query(`select ${t.quoted}.worker_heartbeat('graphile_worker_0123456789abcdef01', '{"pid":1}')`)
      expect((await runChecks(t.db, {minWorkers: 2})).ok).to.equal(true)
      const mixed = await schemaStatus(t.db)
      expect(mixed.rust).to.include({workers: 1, liveWorkers: 1})
      expect(mixed.findings.find((f) => f.code === 'rust-sweeper-vs-node')?.message).to.match(/\(1 live\)/)
    } finally {
      release()
      await handle.stop()
    }
  })

  it("migrated by backfill (Node's 19) and later by Rust (its 20): the Rust add_jobs fix never arrives; schema status and migrate --dry-run say so", async () => {
    const codes = async (): Promise<string[]> => (await schemaStatus(t.db)).findings.map((f) => f.code)
    // Node only: nothing to say.
    expect(await codes()).not.to.include('rust-add-jobs-missing')
    expect((await migrate(t.db, {dryRun: true})).notes.join('\n')).not.to.match(/add_jobs/)

    // The Rust migrator ran on it: only its 20 (19 counts as done).
    await t.db.execScript(rustMigration20Sql(t.quoted))
    const status = await schemaStatus(t.db)
    const finding = status.findings.find((f) => f.code === 'rust-add-jobs-missing')
    expect(finding?.severity).to.equal('warning')
    expect(finding?.message).to.match(/advisory locks in add_jobs/)
    expect(finding?.action).to.contain('m000019.sql')
    const plan = await migrate(t.db, {dryRun: true})
    expect(plan.notes.join('\n')).to.match(/add_jobs.*m000019\.sql/s)
    expect((await migrate(t.db)).notes.join('\n')).to.contain('m000019.sql')

    // After the remedy (the Rust bodies in place, ledger untouched) it is quiet again.
    await t.db.execScript(rustMigration19Sql(t.quoted, t.schema))
    await t.query(`update ${t.quoted}.migrations set breaking = true where id = 19`)
    expect(await codes()).not.to.include('rust-add-jobs-missing')
    expect((await migrate(t.db, {dryRun: true})).notes.join('\n')).not.to.contain('m000019.sql')
  })

  it("a schema at revision 18 that Rust workers hold locks in (graphile_worker <= 0.11.2): migrate refuses Node's breaking 19, which would keep them from starting", async () => {
    // As a Rust graphile_worker 0.4-0.11.2 (the backfill crate 1.1.x) leaves it: 18 migrations;
    // Node's 19 is a marker only (select 1), so dropping its ledger row gives that schema.
    await t.query(`delete from ${t.quoted}.migrations where id = 19`)
    await t.query(`select ${t.quoted}.add_job('rust_task', '{}', queue_name => 'user:1')`)
    await t.query(`select ${t.quoted}.add_job('node_task', '{}')`)
    const rustId = 'graphile_worker_0123456789abcdef01'
    await t.query(
      `update ${t.quoted}._private_jobs j set locked_at = now(), locked_by = $1, attempts = 1
       from ${t.quoted}._private_tasks k where k.id = j.task_id and k.identifier = 'rust_task'`,
      [rustId],
    )
    const ledger = async (): Promise<number[]> =>
      (await t.query<{id: number}>(`select id from ${t.quoted}.migrations order by id`)).map((r) => r.id)
    const refused = async (dryRun: boolean): Promise<void> => {
      const error = await migrate(t.db, {dryRun}).catch((e: unknown) => e)
      expect(isBackfillError(error), String(error)).to.equal(true)
      expect((error as {code: string}).code).to.equal('E_RUST_WORKERS_TOO_OLD')
      expect((error as Error).message)
        .to.contain(rustId)
        .and.contain('0.11.2')
    }
    await refused(true)
    await refused(false)
    expect(await ledger()).to.not.include(19)
    const doctor = await schemaStatus(t.db)
    const finding = doctor.findings.find((f) => f.code === 'rust-workers-block-19')
    expect(finding?.severity).to.equal('error')
    expect(finding?.message).to.contain(rustId)

    // A queue lock alone is evidence too.
    await t.query(`update ${t.quoted}._private_jobs set locked_at = null, locked_by = null`)
    await t.query(`update ${t.quoted}._private_job_queues set locked_at = now(), locked_by = $1`, [rustId])
    await refused(false)

    // Node pools holding locks are not Rust workers; with no Rust lock left, 19 is applied.
    await t.query(`update ${t.quoted}._private_job_queues set locked_at = null, locked_by = null`)
    await t.query(`update ${t.quoted}._private_jobs set locked_at = now(), locked_by = 'pool-0123456789abcdef01'`)
    expect((await schemaStatus(t.db)).findings.map((f) => f.code)).not.to.include('rust-workers-block-19')
    const result = await migrate(t.db)
    expect(result.applied).to.deep.equal([19])
    expect(await ledger()).to.include(19)
  })
})
