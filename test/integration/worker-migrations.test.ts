import {expect} from 'chai'
import {Logger, run} from 'graphile-worker'

import type {WorkerEvent} from '../../src/lib/worker/events.js'
import {WorkerRunner} from '../../src/lib/worker/runner.js'
import {TestSchema} from '../support/db.js'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/**
 * graphile-worker 0.17.3 announces a breaking migration on the database-wide channel
 * `worker:migrate` without naming the schema, and every pool that hears it shuts down
 * (issue 12 item 0). A backfill worker checks its own schema instead.
 */
describe('worker vs migrations announced in the same database', function () {
  this.timeout(60_000)
  let t: TestSchema
  const others: TestSchema[] = []
  beforeEach(async () => {
    t = await TestSchema.create({migrated: true, prefix: 'wmig'})
  })
  afterEach(async () => {
    for (const other of others.splice(0)) await other.drop()
    await t.drop()
  })

  /** Sessions of this database whose last statement was graphile's LISTEN (channels name no schema). */
  const listeners = async (schema: TestSchema): Promise<number[]> =>
    (
      await schema.query<{pid: number}>(
        `select pid from pg_stat_activity where datname = current_database() and query like 'LISTEN "jobs:insert"%'`,
      )
    ).map((r) => r.pid)

  /**
   * Until a session that did not listen before (`earlier`) listens to graphile's channels (pools
   * LISTEN in the background): one left by another test's pool must not count as this one's.
   */
  const listening = async (schema: TestSchema, earlier: readonly number[]): Promise<void> => {
    for (let i = 0; i < 400; i++) {
      if ((await listeners(schema)).some((pid) => !earlier.includes(pid))) return
      await sleep(50)
    }
    throw new Error('no pool listens')
  }

  /** Whether the promise settles within ms (answers as soon as it does). */
  const settledWithin = async (promise: Promise<unknown>, ms: number): Promise<boolean> => {
    let timer: NodeJS.Timeout | undefined
    const settled = await Promise.race([
      promise.then(
        () => true,
        () => true,
      ),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms))),
    ])
    clearTimeout(timer)
    return settled
  }

  it('keeps running (and working) when another schema of the database is migrated: migration 1 counts as breaking', async () => {
    const seen: number[] = []
    const events: WorkerEvent[] = []
    const runner = new WorkerRunner({
      db: t.db,
      tasks: {hello: async (payload) => void seen.push((payload as {n: number}).n)},
      config: {concurrency: 2, pollIntervalMs: 100},
      onEvent: (e) => events.push(e),
    })
    const earlier = await listeners(t)
    const handle = await runner.start()
    await listening(t, earlier)
    others.push(await TestSchema.create({migrated: true, prefix: 'wmig_other'}))
    expect(await settledWithin(handle.done, 1500), 'the worker stopped after another schema was migrated').to.equal(
      false,
    )
    await t.query(`select ${t.quoted}.add_job('hello', '{"n": 1}')`)
    for (let i = 0; i < 100 && seen.length === 0; i++) await sleep(50)
    expect(seen).to.deep.equal([1])
    const summary = await handle.stop()
    expect(summary.failure).to.equal(undefined)
    expect(process.exitCode ?? 0, "graphile's exit code 57 was not set").to.equal(0)
    const notes = events.filter((e) => e.type === 'log' && /breaking migration/.test(e.message))
    expect(notes.map((e) => (e as {message: string}).message).join('\n')).to.match(
      new RegExp(`schema ${t.schema} is unchanged`),
    )
  })

  it('stops when its own schema receives a breaking migration it does not know (as graphile-worker would)', async () => {
    const runner = new WorkerRunner({db: t.db, tasks: {hello: async () => undefined}, config: {pollIntervalMs: 100}})
    const handle = await runner.start()
    await t.query(`insert into ${t.quoted}.migrations (id, breaking) values (1000, true)`)
    // The pool's LISTEN connects in the background: announce until it is heard.
    let stopped = false
    for (let i = 0; i < 40 && !stopped; i++) {
      await t.query(`select pg_notify('worker:migrate', '{"migrationNumber":1000,"breaking":true}')`)
      stopped = await settledWithin(handle.done, 500)
    }
    expect(stopped, 'the worker kept running on a schema it does not know').to.equal(true)
    const summary = await handle.done
    expect(summary.failure).to.match(new RegExp(`schema ${t.schema} .*breaking migration 1000`))
    process.exitCode = undefined
  })

  it('plain graphile-worker pools still stop on any schema’s breaking migration (upstream behaviour the README documents)', async () => {
    const earlier = await listeners(t)
    const runner = await run({
      pgPool: t.db.pool,
      schema: t.schema,
      concurrency: 1,
      noHandleSignals: true,
      logger: new Logger(() => () => undefined),
      taskList: {hello: async () => undefined},
      parsedCronItems: [],
    })
    try {
      await listening(t, earlier)
      others.push(await TestSchema.create({migrated: true, prefix: 'wmig_other'}))
      // A positive check: wait as long as a loaded machine needs (a fixed 3 s window could end first).
      expect(await settledWithin(runner.promise, 20_000)).to.equal(true)
      expect(process.exitCode).to.equal(57)
    } finally {
      process.exitCode = undefined
      await runner.stop().catch(() => undefined)
    }
  })
})
