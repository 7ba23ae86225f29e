import {expect} from 'chai'
import pg from 'pg'

import {BackfillClient} from '../../src/lib/client/client.js'
import {
  enqueueBulk,
  enqueueBulkWithRetries,
  enqueueCritical,
  enqueueEmergency,
  enqueueFast,
  enqueueFastWithRetries,
  enqueueSerial,
  serialFor,
} from '../../src/lib/client/helpers.js'
import {NotMigratedError, UsageError} from '../../src/lib/errors.js'
import {BULK_FLAG} from '../../src/lib/jobs/priority.js'
import {type JobRow, sql, TestSchema, uniqueName} from '../support/db.js'

const jobs = (t: TestSchema): Promise<JobRow[]> => t.jobs()

async function lockJob(t: TestSchema, key: string): Promise<void> {
  await t.query(
    `update ${t.quoted}._private_jobs set locked_at = now(), locked_by = 'pool-test', attempts = attempts + 1 where key = $1`,
    [key],
  )
}

/** Resolves once some backend waits on a row lock while running add_job(s). */
async function waitForLockWait(t: TestSchema): Promise<void> {
  for (let i = 0; i < 500; i += 1) {
    const rows = await t.query(
      `select 1 from pg_stat_activity where wait_event_type = 'Lock' and datname = current_database() and query like '%add_job%'`,
    )
    if (rows.length > 0) return
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  throw new Error('add_job never waited on the row lock')
}

describe('BackfillClient (library, real PostgreSQL)', () => {
  let t: TestSchema
  let client: BackfillClient
  beforeEach(async () => {
    t = await TestSchema.create({migrated: true, prefix: 'cli'})
    client = await BackfillClient.fromDatabase(t.db, {ensureSchema: false})
  })
  afterEach(async () => {
    await t.drop()
  })

  describe('setup', () => {
    it('app-managed (default): connect() installs the schema on an empty database, and a second client finds it ready', async () => {
      const schema = uniqueName('app')
      const first = await BackfillClient.connect(t.url, {schema})
      const second = await BackfillClient.connect(t.url, {schema})
      try {
        const outcome = await first.enqueue('hello', {n: 1})
        expect(outcome.status).to.equal('enqueued')
        expect(
          (await sql<{id: number}>(`select max(id)::int as id from "${schema}".migrations`, [], t.url))[0]!.id,
        ).to.equal(19)
        expect(
          await sql(`select 1 from pg_tables where schemaname = $1 and tablename = 'backfill_dlq'`, [schema], t.url),
        ).to.have.length(1)
      } finally {
        await first.end()
        await second.end()
        await sql(`drop schema if exists "${schema}" cascade`, [], t.url)
      }
    })

    it('deployment-managed (ensureSchema: false): a missing schema is a NotMigratedError and nothing is created', async () => {
      const schema = uniqueName('dep')
      let error: unknown
      try {
        await BackfillClient.connect(t.url, {schema, ensureSchema: false})
      } catch (caught) {
        error = caught
      }
      expect(error).to.be.instanceOf(NotMigratedError)
      expect((error as NotMigratedError).exitCode).to.equal(4)
      expect((error as NotMigratedError).suggestions.join(' ')).to.contain('backfill migrate')
      expect(await sql('select 1 from pg_namespace where nspname = $1', [schema], t.url)).to.have.length(0)
    })

    it("uses a caller's pg.Pool and leaves it open on end()", async () => {
      const pool = new pg.Pool({connectionString: t.url, max: 2})
      pool.on('error', () => undefined)
      try {
        const own = await BackfillClient.connect(pool, {schema: t.schema, ensureSchema: false})
        expect(own.pool).to.equal(pool)
        await own.enqueue('pooled')
        await own.end()
        expect((await pool.query('select 1 as one')).rows[0].one).to.equal(1)
      } finally {
        await pool.end()
      }
      expect((await jobs(t)).map((j) => j.task)).to.deep.equal(['pooled'])
    })

    it('rejects an invalid schema name before connecting', async () => {
      let error: unknown
      try {
        await BackfillClient.connect(t.url, {schema: 'Bad-Name'})
      } catch (caught) {
        error = caught
      }
      expect(error).to.be.instanceOf(UsageError)
    })
  })

  describe('enqueue', () => {
    it("writes the crate's defaults: parallel, priority 0, 8 attempts, run_at now, and the bulk flag", async () => {
      const outcome = await client.enqueue('send_email', {to: 'ada@example.com'})
      expect(outcome.status).to.equal('enqueued')
      if (outcome.status !== 'enqueued') return
      expect(outcome.action).to.equal('created')
      expect(outcome.job).to.deep.include({
        taskIdentifier: 'send_email',
        queueName: null,
        priority: 0,
        maxAttempts: 8,
        attempts: 0,
        key: null,
        revision: 0,
      })
      expect(outcome.job.payload).to.deep.equal({to: 'ada@example.com'})
      expect(outcome.job.flags).to.deep.equal([BULK_FLAG])
      const [row] = await jobs(t)
      expect(row).to.deep.include({id: outcome.job.id, task: 'send_email', queue: null, priority: 0, max_attempts: 8})
      expect(row!.flags).to.deep.equal({[BULK_FLAG]: true})
      expect(Math.abs(row!.run_at.getTime() - Date.now())).to.be.lessThan(60_000)
    })

    it('fast priorities carry no bulk flag; caller flags are kept; serial queues and run_at are stored', async () => {
      const runAt = new Date('2031-05-01T12:00:00Z')
      await client.enqueue('urgent', {}, {priority: -5, flags: ['tenant:7']})
      const later1 = await client.enqueue(
        'later',
        {},
        {priority: 3, flags: ['tenant:7'], queue: serialFor('user', 42), runAt, maxAttempts: 2},
      )
      // Task and queue were created by this very add_job call; the names still come back.
      expect(later1.status === 'enqueued' && [later1.job.taskIdentifier, later1.job.queueName]).to.deep.equal([
        'later',
        'user:42',
      ])
      const [fast, later] = await jobs(t)
      expect(fast!.flags).to.deep.equal({'tenant:7': true})
      expect(later).to.deep.include({queue: 'user:42', priority: 3, max_attempts: 2})
      expect(later!.flags).to.deep.equal({'tenant:7': true, [BULK_FLAG]: true})
      expect(later!.run_at.toISOString()).to.equal(runAt.toISOString())
    })

    it("the helpers use the crate's exact priority, attempts and queue", async () => {
      await enqueueFast(client, 'fast', {})
      await enqueueBulk(client, 'bulk', {})
      await enqueueEmergency(client, 'emergency', {})
      await enqueueCritical(client, 'critical', {})
      await enqueueFastWithRetries(client, 'fast_retries', {})
      await enqueueBulkWithRetries(client, 'bulk_retries', {})
      await enqueueSerial(client, 'serial', {}, serialFor('account', 9), -7, 'serial:9')
      const rows = (await jobs(t)).map((j) => [j.task, j.priority, j.max_attempts, j.queue, j.key])
      expect(rows).to.deep.equal([
        ['fast', -5, 8, null, null],
        ['bulk', 0, 8, null, null],
        ['emergency', -20, 8, null, null],
        ['critical', -10, 12, null, null],
        ['fast_retries', -10, 3, null, null],
        ['bulk_retries', 0, 5, null, null],
        ['serial', -7, 8, 'account:9', 'serial:9'],
      ])
    })

    it('job keys: replace updates the unlocked job in place, preserve_run_at keeps its run time, unsafe_dedupe keeps the job', async () => {
      const first = await client.enqueue('sync', {v: 1}, {jobKey: 'sync:1', runAt: new Date('2031-01-01T00:00:00Z')})
      const replaced = await client.enqueue('sync', {v: 2}, {jobKey: 'sync:1', runAt: new Date('2032-01-01T00:00:00Z')})
      expect(replaced).to.deep.include({status: 'enqueued', action: 'updated'})
      const preserved = await client.enqueue(
        'sync',
        {v: 3},
        {jobKey: 'sync:1', jobKeyMode: 'preserve_run_at', runAt: new Date('2033-01-01T00:00:00Z')},
      )
      expect(preserved).to.deep.include({status: 'enqueued', action: 'updated'})
      const deduped = await client.enqueue('sync', {v: 4}, {jobKey: 'sync:1', jobKeyMode: 'unsafe_dedupe'})
      expect(deduped).to.deep.include({status: 'enqueued', action: 'deduplicated'})
      const rows = await jobs(t)
      expect(rows).to.have.length(1)
      expect(rows[0]!.id).to.equal(first.status === 'enqueued' ? first.job.id : '')
      expect(rows[0]!.payload).to.deep.equal({v: 3})
      expect(rows[0]!.run_at.toISOString()).to.equal('2032-01-01T00:00:00.000Z')
      expect(rows[0]!.revision).to.equal(3)
    })

    it('replace on a key whose job a worker is running: graphile clears the old key and a new job is created', async () => {
      await client.enqueue('sync', {v: 1}, {jobKey: 'sync:2'})
      await lockJob(t, 'sync:2')
      const outcome = await client.enqueue('sync', {v: 2}, {jobKey: 'sync:2'})
      expect(outcome).to.deep.include({status: 'enqueued', action: 'created'})
      const rows = await jobs(t)
      expect(rows.map((r) => [r.key, r.payload, r.attempts === r.max_attempts])).to.deep.equal([
        [null, {v: 1}, true],
        ['sync:2', {v: 2}, false],
      ])
    })

    it('reports already-in-progress when a worker locks the keyed job while add_job runs (add_job returns no row)', async () => {
      await client.enqueue('sync', {v: 1}, {jobKey: 'sync:3'})
      // A worker's fetch locks the row; add_job's update step still sees it available, then its
      // INSERT … ON CONFLICT waits on the row and finds it locked once the worker commits.
      const worker = new pg.Client({connectionString: t.url})
      await worker.connect()
      try {
        await worker.query('begin')
        await worker.query(
          `update ${t.quoted}._private_jobs set locked_at = now(), locked_by = 'pool-race', attempts = attempts + 1 where key = 'sync:3'`,
        )
        const pending = client.enqueue('sync', {v: 2}, {jobKey: 'sync:3'})
        await waitForLockWait(t)
        await worker.query('commit')
        expect(await pending).to.deep.equal({status: 'already-in-progress', jobKey: 'sync:3'})
      } finally {
        await worker.end()
      }
      const rows = await jobs(t)
      expect(rows).to.have.length(1)
      expect(rows[0]).to.deep.include({key: 'sync:3', attempts: 1})
      expect(rows[0]!.payload).to.deep.equal({v: 1})
    })

    it('bad input is a UsageError and nothing is written', async () => {
      const attempts: [string, () => Promise<unknown>][] = [
        ['empty task', () => client.enqueue('', {})],
        ['long task', () => client.enqueue('t'.repeat(129), {})],
        ['priority', () => client.enqueue('t', {}, {priority: 40_000})],
        ['max attempts', () => client.enqueue('t', {}, {maxAttempts: 0})],
        ['job key', () => client.enqueue('t', {}, {jobKey: 'k'.repeat(513)})],
        ['run at', () => client.enqueue('t', {}, {runAt: new Date('nope')})],
        ['mode', () => client.enqueue('t', {}, {jobKey: 'k', jobKeyMode: 'merge' as never})],
        ['queue', () => client.enqueue('t', {}, {queue: ''})],
        ['payload', () => client.enqueue('t', {big: 1n})],
      ]
      for (const [what, attempt] of attempts) {
        let error: unknown
        try {
          await attempt()
        } catch (caught) {
          error = caught
        }
        expect(error, what).to.be.instanceOf(UsageError)
      }
      expect(await jobs(t)).to.have.length(0)
    })
  })

  describe('enqueueMany', () => {
    it('writes every job through add_jobs in batches, in one transaction', async () => {
      const result = await client.enqueueMany(
        Array.from({length: 53}, (_, i) => ({
          task: i % 2 === 0 ? 'even' : 'odd',
          payload: {i},
          priority: i % 3 === 0 ? -5 : 0,
        })),
        {batchSize: 10},
      )
      expect(result).to.deep.include({count: 53, enqueued: 53, alreadyInProgress: 0})
      const rows = await jobs(t)
      expect(rows).to.have.length(53)
      // add_jobs joins the specs with the tasks table, so ids within a batch need not follow input order.
      expect(rows.map((r) => (r.payload as {i: number}).i).sort((a, b) => a - b)).to.deep.equal(
        Array.from({length: 53}, (_, i) => i),
      )
      expect(rows.filter((r) => r.task === 'even')).to.have.length(27)
      expect(rows.filter((r) => r.flags?.[BULK_FLAG]).length).to.equal(53 - 18)
      expect(rows.every((r) => r.max_attempts === 8)).to.equal(true)
    })

    it('one invalid job rolls back all, including batches already sent', async () => {
      let error: unknown
      try {
        await client.enqueueMany(
          (function* () {
            for (let i = 0; i < 30; i += 1) yield {task: 'ok', payload: {i}}
            yield {task: 'bad', maxAttempts: 0}
          })(),
          {batchSize: 5},
        )
      } catch (caught) {
        error = caught
      }
      expect(error).to.be.instanceOf(UsageError)
      expect((error as UsageError).message).to.equal(
        'job at index 30: max attempts 0 is outside 1..32767; nothing was enqueued',
      )
      expect(await jobs(t)).to.have.length(0)
    })

    it('behaves like successive add_job calls for repeated keys, mixed key modes and unsafe_dedupe', async () => {
      const result = await client.enqueueMany(
        [
          {task: 'k', payload: {v: 1}, jobKey: 'a', runAt: new Date('2031-01-01T00:00:00Z')},
          {task: 'k', payload: {v: 2}, jobKey: 'a'},
          {
            task: 'k',
            payload: {v: 3},
            jobKey: 'a',
            jobKeyMode: 'preserve_run_at',
            runAt: new Date('2035-01-01T00:00:00Z'),
          },
          {task: 'k', payload: {v: 1}, jobKey: 'b'},
          {task: 'k', payload: {v: 2}, jobKey: 'b', jobKeyMode: 'unsafe_dedupe'},
          {task: 'k', payload: {v: 1}, jobKey: 'c', jobKeyMode: 'unsafe_dedupe'},
          {task: 'plain', payload: {}},
        ],
        {returnJobs: true},
      )
      expect(result.enqueued).to.equal(7)
      expect(result.jobs).to.have.length(7)
      expect(new Set(result.jobs!.map((j) => j.taskIdentifier))).to.deep.equal(new Set(['k', 'plain']))
      const rows = await jobs(t)
      const byKey = Object.fromEntries(rows.map((r) => [r.key ?? r.task, r]))
      expect(rows).to.have.length(4)
      expect(byKey.a!.payload).to.deep.equal({v: 3})
      expect(byKey.a!.revision).to.equal(2)
      // preserve_run_at keeps the run time of a job that has not been attempted (v2's: now).
      expect(byKey.a!.run_at.getFullYear()).to.be.lessThan(2031)
      expect(byKey.b!.payload).to.deep.equal({v: 1})
      expect(byKey.c!.payload).to.deep.equal({v: 1})
    })

    it('counts keyed jobs a worker locked during the batch as already in progress', async () => {
      await client.enqueue('sync', {v: 1}, {jobKey: 'race'})
      const worker = new pg.Client({connectionString: t.url})
      await worker.connect()
      try {
        await worker.query('begin')
        await worker.query(
          `update ${t.quoted}._private_jobs set locked_at = now(), locked_by = 'pool-race' where key = 'race'`,
        )
        const pending = client.enqueueMany([
          {task: 'other', payload: {}},
          {task: 'sync', payload: {v: 2}, jobKey: 'race'},
        ])
        await waitForLockWait(t)
        await worker.query('commit')
        expect(await pending).to.deep.include({
          count: 2,
          enqueued: 1,
          alreadyInProgress: 1,
          alreadyInProgressKeys: ['race'],
        })
      } finally {
        await worker.end()
      }
    })
  })

  describe('removeJob and reading jobs', () => {
    it('removes an unlocked job, stops a running one from retrying, and reports a missing key', async () => {
      await client.enqueue('a', {}, {jobKey: 'rm:1'})
      await client.enqueue('b', {}, {jobKey: 'rm:2'})
      await lockJob(t, 'rm:2')
      expect((await client.removeJob('rm:1')).status).to.equal('removed')
      const locked = await client.removeJob('rm:2')
      expect(locked.status).to.equal('locked')
      expect(await client.removeJob('rm:none')).to.deep.equal({status: 'not-found', jobKey: 'rm:none'})
      const rows = await jobs(t)
      expect(rows.map((r) => [r.task, r.key, r.attempts === r.max_attempts])).to.deep.equal([['b', null, true]])
    })

    it('sees a job added with plain SQL add_job (as any runtime adds them)', async () => {
      const [added] = await t.query<{id: string}>(
        `select id from ${t.quoted}.add_job('from_sql', '{"n": 7}'::json, queue_name => 'q1', priority => -3, max_attempts => 4, job_key => 'sql:7')`,
      )
      const job = await client.getJob(added!.id)
      expect(job).to.deep.include({
        id: added!.id,
        taskIdentifier: 'from_sql',
        queueName: 'q1',
        priority: -3,
        maxAttempts: 4,
        key: 'sql:7',
        flags: [],
      })
      expect(job!.payload).to.deep.equal({n: 7})
      expect((await client.getJobByKey('sql:7'))!.id).to.equal(added!.id)
      // And our enqueue with the same key replaces it, as add_job does.
      const replaced = await client.enqueue('from_sql', {n: 8}, {jobKey: 'sql:7'})
      expect(replaced).to.deep.include({status: 'enqueued', action: 'updated'})
      expect(await client.getJob('999999999')).to.equal(undefined)
    })
  })
})
