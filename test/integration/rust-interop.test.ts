import {expect} from 'chai'

import {runChecks} from '../../src/lib/health/check.js'
import {schemaStatus} from '../../src/lib/health/doctor.js'
import {queueStatus} from '../../src/lib/health/status.js'
import {listLocks} from '../../src/lib/locks/list.js'
import {WorkerRunner} from '../../src/lib/worker/runner.js'
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
})
