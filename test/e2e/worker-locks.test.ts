import {expect} from 'chai'

import {parseJson, runCli} from '../support/cli.js'
import {TestSchema} from '../support/db.js'
import {addJobs, createLedger, TASKS_DIR, WorkerProcess} from '../support/worker.js'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

interface LockListing {
  owners: {owner: string; liveness: string; jobLocks: number}[]
}

describe('a worker killed with SIGKILL mid-job (real binaries)', function () {
  this.timeout(120_000)
  let t: TestSchema
  let ledger: string
  const workers: WorkerProcess[] = []
  beforeEach(async () => {
    t = await TestSchema.create({migrated: true, prefix: 'kill'})
    ledger = await createLedger(t)
  })
  afterEach(async () => {
    for (const w of workers.splice(0)) await w.stop()
    await t.drop()
  })

  it('locks list shows it dead, locks clean frees its jobs at once, and a new worker completes them', async () => {
    await addJobs(t, 3, {payload: {ms: 60_000}})
    const doomed = new WorkerProcess(
      [
        '--schema',
        t.schema,
        '--tasks',
        TASKS_DIR,
        '--concurrency',
        '3',
        '--heartbeat-interval',
        '1',
        '--lock-cleanup-interval',
        '0',
      ],
      {LEDGER_TABLE: ledger},
    )
    workers.push(doomed)
    // Bounded generously (a worker starting on a loaded machine), and asserted: the kill below is only
    // meaningful once all three jobs run, and the lock counts after it depend on that.
    for (let i = 0; i < 600 && (await t.query(`select 1 from ${ledger}`)).length < 3; i++) await sleep(50)
    expect(await t.query(`select 1 from ${ledger}`), 'all three jobs started').to.have.length(3)
    const [{owner}] = (await t.query<{owner: string}>(
      `select distinct locked_by as owner from ${t.quoted}._private_jobs where locked_at is not null`,
    )) as [{owner: string}]
    expect(owner).to.match(/^pool-/)
    doomed.signal('SIGKILL')
    await doomed.exited

    // The presence session is gone at once; the heartbeat goes stale after 3 × 1 s (at least 30 s by default, so we lower the bound).
    let listing: LockListing | undefined
    for (let i = 0; i < 100; i++) {
      listing = parseJson<LockListing>(
        await runCli(['locks', 'list', '--schema', t.schema, '--heartbeat-timeout', '3s', '--json']),
      )
      if (listing.owners.find((o) => o.owner === owner)?.liveness === 'dead') break
      await sleep(200)
    }
    expect(listing!.owners.find((o) => o.owner === owner)).to.include({liveness: 'dead', jobLocks: 3})

    const clean = await runCli(['locks', 'clean', '--schema', t.schema, '--heartbeat-timeout', '3s', '--yes', '--json'])
    expect(clean.code, clean.stderr).to.equal(0)
    expect(parseJson<{jobLocks: number}>(clean).jobLocks).to.equal(3)
    expect(await t.query(`select 1 from ${t.quoted}._private_jobs where locked_at is not null`)).to.have.length(0)
    expect(await t.query(`select 1 from ${t.quoted}._private_jobs`)).to.have.length(3)

    // A new worker completes them (the jobs are shortened so the test does not wait a minute).
    await t.query(`update ${t.quoted}._private_jobs set payload = '{"ms": 10}'`)
    const rescuer = new WorkerProcess(['--schema', t.schema, '--tasks', TASKS_DIR], {LEDGER_TABLE: ledger})
    workers.push(rescuer)
    for (let i = 0; i < 200 && (await t.query(`select 1 from ${t.quoted}._private_jobs`)).length > 0; i++)
      await sleep(100)
    expect(await t.query(`select 1 from ${t.quoted}._private_jobs`)).to.have.length(0)
    expect(await t.query(`select 1 from ${ledger} where done_at is not null`)).to.have.length(3)
  })

  it('--once: a task that kills its own process leaves a lock judged dead, and the poison job reaches the DLQ', async () => {
    await addJobs(t, 1, {payload: {kill: true}, maxAttempts: 2})
    const once = () =>
      runCli(['worker', '--schema', t.schema, '--tasks', TASKS_DIR, '--once', '--heartbeat-interval', '1'], {
        env: {LEDGER_TABLE: ledger},
      })
    for (let attempt = 1; attempt <= 2; attempt++) {
      const killed = await once()
      expect(killed.signal, killed.stdout + killed.stderr).to.equal('SIGKILL')
      const [{owner}] = (await t.query<{owner: string}>(
        `select locked_by as owner from ${t.quoted}._private_jobs where locked_at is not null`,
      )) as [{owner: string}]
      expect(owner).to.match(/^otpool-/)
      // Its presence proves it gone: dead once the (lowered) heartbeat bound has passed, never "unknown".
      let listing: LockListing | undefined
      for (let i = 0; i < 100; i++) {
        listing = parseJson<LockListing>(
          await runCli(['locks', 'list', '--schema', t.schema, '--heartbeat-timeout', '3s', '--json']),
        )
        if (listing.owners.find((o) => o.owner === owner)?.liveness !== 'live') break
        await sleep(200)
      }
      expect(listing!.owners.find((o) => o.owner === owner)).to.include({liveness: 'dead', jobLocks: 1})
      const clean = await runCli([
        'locks',
        'clean',
        '--schema',
        t.schema,
        '--heartbeat-timeout',
        '3s',
        '--yes',
        '--json',
      ])
      expect(parseJson<{jobLocks: number}>(clean).jobLocks, clean.stderr).to.equal(1)
    }
    // Both attempts used: the next run moves it into the DLQ at startup instead of running it.
    const last = await once()
    expect(last.code, last.stderr).to.equal(0)
    expect(await t.query(`select task_identifier from ${t.quoted}.backfill_dlq`)).to.deep.equal([
      {task_identifier: 'work'},
    ])
    expect(await t.query(`select 1 from ${t.quoted}._private_jobs`)).to.have.length(0)
  })

  it("a live worker's locks survive locks clean, however old and whatever the timeouts", async () => {
    await addJobs(t, 2, {payload: {ms: 60_000}})
    const alive = new WorkerProcess(
      ['--schema', t.schema, '--tasks', TASKS_DIR, '--concurrency', '2', '--shutdown-timeout', '1'],
      {LEDGER_TABLE: ledger},
    )
    workers.push(alive)
    for (let i = 0; i < 600 && (await t.query(`select 1 from ${ledger}`)).length < 2; i++) await sleep(50)
    expect(await t.query(`select 1 from ${ledger}`), 'both jobs started').to.have.length(2)
    // Old, but under graphile's own 4-hour reset: each pool runs resetLockedAt at a random moment in
    // its first minute and unlocks anything older than that, live owner or not (not ours to test).
    await t.query(
      `update ${t.quoted}._private_jobs set locked_at = now() - interval '3 hours 50 minutes' where locked_at is not null`,
    )
    const clean = await runCli([
      'locks',
      'clean',
      '--schema',
      t.schema,
      '--stale-job-lock-timeout',
      '1s',
      '--stale-queue-lock-timeout',
      '1s',
      '--yes',
      '--json',
    ])
    expect(clean.code, clean.stderr).to.equal(0)
    expect(parseJson<{jobLocks: number}>(clean).jobLocks).to.equal(0)
    expect(await t.query(`select 1 from ${t.quoted}._private_jobs where locked_at is not null`)).to.have.length(2)
  })
})
