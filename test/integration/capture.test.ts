import {expect} from 'chai'

import {captureExhausted, countUncaptured} from '../../src/lib/dlq/capture.js'
import {TestSchema} from '../support/db.js'

/** Adds a job with SQL add_job and fast-forwards it to "exhausted" (attempts = max_attempts). */
async function exhaustedJob(
  t: TestSchema,
  task: string,
  options: {queue?: string; key?: string; payload?: unknown; error?: string; locked?: boolean} = {},
): Promise<string> {
  const [job] = await t.query<{id: string}>(
    `select id from ${t.quoted}.add_job($1, $2::json, queue_name => $3, job_key => $4, max_attempts => 3, priority => -5)`,
    [task, JSON.stringify(options.payload ?? {task}), options.queue ?? null, options.key ?? null],
  )
  await t.query(
    `update ${t.quoted}._private_jobs set attempts = max_attempts, last_error = $2, locked_at = $3, locked_by = $4 where id = $1`,
    [job!.id, options.error ?? 'boom', options.locked ? new Date() : null, options.locked ? 'pool-alive' : null],
  )
  return job!.id
}

describe('DLQ capture (atomic move of exhausted jobs)', () => {
  let t: TestSchema
  beforeEach(async () => {
    t = await TestSchema.create({migrated: true, prefix: 'cap'})
  })
  afterEach(async () => {
    await t.drop()
  })

  it('moves exhausted jobs with payload, priority, queue and key intact, as the Rust crate writes rows', async () => {
    const parallel = await exhaustedJob(t, 'send_email', {
      payload: {to: 'ada@example.com'},
      error: 'SMTP 421 try later',
    })
    const serial = await exhaustedJob(t, 'charge', {queue: 'user:42', key: 'charge-42'})
    expect((await countUncaptured(t.db)).total).to.equal(2)
    const result = await captureExhausted(t.db)
    expect(result.captured).to.equal(2)
    expect(result.byTask).to.deep.equal({send_email: 1, charge: 1})
    const rows = await t.query(`select * from ${t.quoted}.backfill_dlq order by original_job_id`)
    expect(rows).to.have.length(2)
    expect(rows[0]).to.include({
      original_job_id: parallel,
      task_identifier: 'send_email',
      queue_name: '',
      priority: -5,
      max_attempts: 3,
      failure_count: 1,
      requeued_count: 0,
    })
    expect(rows[0]!.payload).to.deep.equal({to: 'ada@example.com'})
    expect(rows[0]!.last_error).to.equal('SMTP 421 try later')
    expect(rows[0]!.failure_reason).to.equal('Job exceeded maximum retry attempts (3/3)')
    expect(rows[1]).to.include({original_job_id: serial, queue_name: 'user:42', job_key: 'charge-42'})
    // jsonb string, exactly as the crate's to_jsonb(last_error)
    const [raw] = await t.query<{t: string}>(
      `select jsonb_typeof(last_error) as t from ${t.quoted}.backfill_dlq limit 1`,
    )
    expect(raw!.t).to.equal('string')
    expect(await t.query(`select 1 from ${t.quoted}._private_jobs`)).to.have.length(0)
    expect((await countUncaptured(t.db)).total).to.equal(0)
  })

  it('leaves a job alone while it is locked (its last attempt may still succeed)', async () => {
    await exhaustedJob(t, 'slow', {locked: true})
    expect((await captureExhausted(t.db)).captured).to.equal(0)
    expect(await t.query(`select 1 from ${t.quoted}._private_jobs`)).to.have.length(1)
  })

  it('upserts on job_key: a second failure of the same key bumps failure_count and keeps the newest payload', async () => {
    await exhaustedJob(t, 'sync', {key: 'k', payload: {v: 1}})
    await captureExhausted(t.db)
    await exhaustedJob(t, 'sync', {key: 'k', payload: {v: 2}, error: 'second'})
    await captureExhausted(t.db)
    const rows = await t.query(`select payload, failure_count, last_error from ${t.quoted}.backfill_dlq`)
    expect(rows).to.deep.equal([{payload: {v: 2}, failure_count: 2, last_error: 'second'}])
  })

  it('carries retry history over when a retried job lands again', async () => {
    const id = await exhaustedJob(t, 'flaky')
    await t.query(
      `insert into ${t.quoted}.backfill_dlq_retried_jobs (job_id, case_id, requeued_count, failure_count, notes) values ($1, 77, 2, 2, 'tried after deploy')`,
      [id],
    )
    const result = await captureExhausted(t.db)
    expect(result.sample[0]!.recaptured).to.equal(true)
    const [row] = await t.query(`select requeued_count, failure_count, notes from ${t.quoted}.backfill_dlq`)
    expect(row).to.deep.equal({requeued_count: 2, failure_count: 3, notes: 'tried after deploy'})
    const events = await t.query(`select case_id, event from ${t.quoted}.backfill_dlq_events`)
    expect(events).to.deep.equal([{case_id: '77', event: 'recaptured'}])
    expect(await t.query(`select 1 from ${t.quoted}.backfill_dlq_retried_jobs`)).to.have.length(0)
  })

  it('two capturers at once move every job exactly once', async () => {
    await t.query(
      `select ${t.quoted}.add_jobs(array(select row('bulk_task', json_build_object('i', i), null, null, 2, null, 0, null)::${t.quoted}.job_spec from generate_series(1, 5000) i))`,
    )
    await t.query(`update ${t.quoted}._private_jobs set attempts = max_attempts, last_error = 'x'`)
    const [a, b] = await Promise.all([
      captureExhausted(t.db, {batchSize: 500}),
      captureExhausted(t.db, {batchSize: 500}),
    ])
    expect(a.captured + b.captured).to.equal(5000)
    const [counts] = await t.query<{dlq: number; distinct_jobs: number; jobs: number}>(
      `select (select count(*)::int from ${t.quoted}.backfill_dlq) as dlq,
              (select count(distinct original_job_id)::int from ${t.quoted}.backfill_dlq) as distinct_jobs,
              (select count(*)::int from ${t.quoted}._private_jobs) as jobs`,
    )
    expect(counts).to.deep.equal({dlq: 5000, distinct_jobs: 5000, jobs: 0})
  })
})

describe('DLQ capture of a job the DLQ cannot store', () => {
  let t: TestSchema
  beforeEach(async () => {
    t = await TestSchema.create({migrated: true, prefix: 'poison'})
  })
  afterEach(async () => {
    await t.drop()
  })

  it('moves every other job, leaves that one in place, reports it once, and skips it afterwards', async () => {
    // graphile's payload is json, which accepts \u0000; the DLQ's jsonb does not (22P05).
    await exhaustedJob(t, 'before')
    await t.query(`select ${t.quoted}.add_job('poison', '{"text":"a\\u0000b"}'::json, max_attempts => 1)`)
    await t.query(
      `update ${t.quoted}._private_jobs set attempts = max_attempts, last_error = 'x' where attempts < max_attempts`,
    )
    await exhaustedJob(t, 'after')
    const exclude = new Set<string>()
    const first = await captureExhausted(t.db, {exclude})
    expect(first.captured).to.equal(2)
    expect(first.failed).to.have.length(1)
    expect(first.failed[0]!.error).to.match(/unsupported Unicode escape|cannot be converted/)
    const left = await t.query<{task: string}>(
      `select t.identifier as task from ${t.quoted}._private_jobs j join ${t.quoted}._private_tasks t on t.id = j.task_id`,
    )
    expect(left).to.deep.equal([{task: 'poison'}])
    await exhaustedJob(t, 'later')
    const second = await captureExhausted(t.db, {exclude})
    expect(second.captured).to.equal(1)
    expect(second.failed).to.deep.equal([])
  })
})
