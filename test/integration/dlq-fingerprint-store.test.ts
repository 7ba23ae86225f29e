import {expect} from 'chai'

import {captureNow} from '../../src/lib/dlq/capture-run.js'
import {captureExhausted} from '../../src/lib/dlq/capture.js'
import {fingerprint} from '../../src/lib/dlq/fingerprint.js'
import {backfillFingerprints} from '../../src/lib/dlq/fingerprint-store.js'
import type {DlqSelector} from '../../src/lib/dlq/selector.js'
import {dlqStats, type DlqStats} from '../../src/lib/dlq/stats.js'
import {failJobs, removeJobs} from '../../src/lib/jobs/actions.js'
import {initDlq, migrate} from '../../src/lib/schema/migrate.js'
import {TestSchema} from '../support/db.js'
import {insertDlq, type DlqRowSpec} from '../support/dlq.js'
import {addJob, setJob} from '../support/jobs.js'

/** Stats without the timing (the only field allowed to differ between two runs). */
async function statsOf(
  t: TestSchema,
  selector: DlqSelector,
  checkKeyConflicts = false,
): Promise<Omit<DlqStats, 'durationMs'>> {
  const {durationMs: _, ...rest} = await dlqStats(t.db, {selector, checkKeyConflicts})
  return rest
}

interface StoredRow {
  id: string
  task_identifier: string
  error_fingerprint: string | null
  current: boolean
  error_line: string
}

async function stored(t: TestSchema): Promise<StoredRow[]> {
  return t.query<StoredRow>(
    `select id, task_identifier, error_fingerprint, error_fingerprint_at = failed_at as current,
            left(split_part(coalesce(case jsonb_typeof(last_error) when 'string' then last_error #>> '{}'
              when 'object' then coalesce(last_error ->> 'message', last_error ->> 'error', last_error::text)
              when 'null' then null else last_error::text end, failure_reason), E'\\n', 1), 300) as error_line
     from ${t.quoted}.backfill_dlq order by id`,
  )
}

/** Every entry has a current fingerprint, the one stats computes from its error text. */
async function expectAllFingerprinted(t: TestSchema): Promise<void> {
  const rows = await stored(t)
  expect(rows.length).to.be.greaterThan(0)
  for (const row of rows) {
    expect(row.current, `entry ${row.id} has a current fingerprint`).to.equal(true)
    expect(row.error_fingerprint).to.equal(fingerprint(row.task_identifier, row.error_line).fingerprint)
  }
}

/** A varied DLQ as the Rust crate writes it (no fingerprints): string and object errors, none, queues, keys. */
const RUST_ROWS: DlqRowSpec[] = [
  ...Array.from({length: 30}, (_, i) => ({
    task: i % 3 === 0 ? 'charge' : 'send_email',
    queue: i % 4 === 0 ? 'mail' : '',
    jobKey: i % 5 === 0 ? `key-${i}` : null,
    lastError: `SMTP 421 try later for user ${i} at 2024-01-0${(i % 9) + 1}T00:00:00Z\n    at stack line`,
    failedAt: new Date(Date.UTC(2024, 4, 1, 0, i)),
  })),
  {task: 'charge', lastError: {message: 'card 4242 declined'}, failedAt: '2024-05-02T00:00:00Z'},
  {task: 'charge', lastError: {error: 'card 1111 declined', code: 7}, failedAt: '2024-05-02T00:01:00Z'},
  {task: 'charge', lastError: {code: 7}, failedAt: '2024-05-02T00:02:00Z'},
  {task: 'sync', lastError: null, failureReason: 'Removed by an operator', failedAt: '2024-05-02T00:03:00Z'},
  {task: 'sync', lastError: 'mailbox "x@y.z" full', failedAt: '2024-05-02T00:04:00Z'},
]

const SELECTORS: DlqSelector[] = [
  {},
  {tasks: ['charge']},
  {queues: ['mail']},
  {limit: 7},
  {until: new Date('2024-05-01T00:20:00Z')},
  {error: 'declined'},
]

/** A job that has used all its attempts with this error (what capture moves), optionally keyed. */
async function addExhausted(t: TestSchema, task: string, error: string | null, key?: string): Promise<string> {
  const id = await addJob(t, task, {maxAttempts: 3, ...(key === undefined ? {} : {key})})
  await setJob(t, id, 'attempts = max_attempts, last_error = $2', [error])
  return id
}

describe('DLQ fingerprints stored at capture (stats from the index)', () => {
  let t: TestSchema
  beforeEach(async () => {
    t = await TestSchema.create({migrated: true, prefix: 'fps'})
  })
  afterEach(async () => {
    await t.drop()
  })

  it('stats are identical before and after the backfill, for every selector, group and key-conflict count', async () => {
    await insertDlq(t, RUST_ROWS)
    await t.query(`select ${t.quoted}.add_job('send_email', '{}', job_key => 'key-5')`)
    const before = await statsOf(t, {})
    const groups = before.groups.map((g) => g.fingerprint)
    expect(groups.length).to.be.greaterThan(4)
    const selectors: DlqSelector[] = [...SELECTORS, ...groups.map((group) => ({group})), {group: groups[0], limit: 3}]
    const expected = await Promise.all(selectors.map((s) => statsOf(t, s, true)))

    const backfill = await backfillFingerprints(t.db, {batchSize: 4})
    expect(backfill.fingerprinted).to.equal(RUST_ROWS.length)
    expect(backfill.batches).to.equal(Math.ceil(RUST_ROWS.length / 4))
    await expectAllFingerprinted(t)
    for (const [i, selector] of selectors.entries()) {
      expect(await statsOf(t, selector, true), JSON.stringify(selector)).to.deep.equal(expected[i])
    }
    // Idempotent: nothing left to do.
    expect((await backfillFingerprints(t.db)).fingerprinted).to.equal(0)
  })

  it('rows the Rust crate writes later (no fingerprint) and rows its upsert rewrites (stale) are grouped from their text', async () => {
    await insertDlq(t, RUST_ROWS.slice(0, 10))
    await backfillFingerprints(t.db)
    // New crate-written rows, same and new failures.
    await insertDlq(t, [
      ...RUST_ROWS.slice(10, 20),
      {task: 'send_email', lastError: 'quota exceeded for tenant 9', failedAt: '2024-06-01T00:00:00Z'},
    ])
    // The crate's upsert on a keyed entry we fingerprinted: new error, failed_at = now(), our columns untouched.
    await t.query(
      `update ${t.quoted}.backfill_dlq set last_error = to_jsonb('quota exceeded for tenant 1'::text), failed_at = now(), failure_count = failure_count + 1 where job_key = 'key-5'`,
    )
    const mixed = await statsOf(t, {})
    const quota = mixed.groups.find((g) => g.template === 'quota exceeded for tenant <n>')
    expect(quota?.count).to.equal(2)
    expect(quota?.fingerprint).to.equal(fingerprint('send_email', 'quota exceeded for tenant 3').fingerprint)
    expect(mixed.total).to.equal(21)

    // The same figures once everything is fingerprinted again (the stale row included).
    expect((await backfillFingerprints(t.db)).fingerprinted).to.equal(12)
    await expectAllFingerprinted(t)
    expect(await statsOf(t, {})).to.deep.equal(mixed)
    // And the same as computing every group from the text (no stored fingerprint at all).
    await t.query(`update ${t.quoted}.backfill_dlq set error_fingerprint = null, error_fingerprint_at = null`)
    expect(await statsOf(t, {})).to.deep.equal(mixed)
  })

  it('every capture path stores the fingerprint with the entry (capture, dlq capture, jobs remove --to-dlq, fail --capture)', async () => {
    await addExhausted(t, 'send_email', 'SMTP 421 for user 1')
    await addExhausted(t, 'send_email', 'SMTP 421 for user 2', 'k1')
    expect((await captureExhausted(t.db)).captured).to.equal(2)
    await addExhausted(t, 'charge', 'card 4242 declined')
    expect((await captureNow(t.db)).captured).to.equal(1)
    await t.query(`select ${t.quoted}.add_job('resize', '{}'::json)`)
    expect((await removeJobs(t.db, {selector: {tasks: ['resize']}, toDlq: true, reason: 'bad'})).movedToDlq).to.equal(1)
    await t.query(`select ${t.quoted}.add_job('report', '{}'::json)`)
    expect((await failJobs(t.db, {selector: {tasks: ['report']}, capture: true})).movedToDlq).to.equal(1)
    await expectAllFingerprinted(t)
    // The upsert of a recaptured key refreshes the fingerprint with the error.
    await addExhausted(t, 'send_email', 'disk full on node 3', 'k1')
    await captureExhausted(t.db)
    await expectAllFingerprinted(t)
    const stats = await statsOf(t, {})
    expect(stats.total).to.equal(5)
    expect(stats.groups.map((g) => g.template).sort()).to.deep.equal(
      [
        'Manually marked as failed',
        'Removed by an operator: bad',
        'SMTP <n> for user <n>',
        'card <n> declined',
        'disk full on node <n>',
      ].sort(),
    )
    // Nothing for the backfill to do.
    expect((await backfillFingerprints(t.db)).fingerprinted).to.equal(0)
  })

  it('capture writes each entry once, with its fingerprint, for every shape of error (no UPDATE in the move)', async () => {
    const errors: (string | null)[] = [
      null, // entry reads its failure_reason
      '',
      'Permanent failure: card 4242 declined',
      'first line 1\nsecond line 2',
      'windows line 3\r\n  at stack',
      `${'é'.repeat(150)} ${'😀'.repeat(200)} tail 9`, // the 300-character cut in the middle of astral characters
      '  tabs\tand   spaces 12  ',
    ]
    for (const [i, error] of errors.entries())
      await addExhausted(t, i % 2 === 0 ? 'send_email' : 'charge', error, `k${i}`)
    // Every row written to backfill_dlq, by operation (a test trigger; it commits with the move).
    await t.query(`create table ${t.quoted}.test_dlq_writes (op text not null, id bigint not null)`)
    await t.query(`create function ${t.quoted}.test_log_dlq_write() returns trigger language plpgsql as $$
      begin insert into ${t.quoted}.test_dlq_writes values (tg_op, new.id); return null; end $$`)
    await t.query(`create trigger test_log after insert or update on ${t.quoted}.backfill_dlq
      for each row execute function ${t.quoted}.test_log_dlq_write()`)
    const writes = async (): Promise<Record<string, number>> =>
      Object.fromEntries(
        (
          await t.query<{op: string; n: number}>(
            `select op, count(*)::int as n from ${t.quoted}.test_dlq_writes group by op`,
          )
        ).map((r) => [r.op, r.n]),
      )
    expect((await captureExhausted(t.db, {batchSize: 3})).captured).to.equal(errors.length)
    expect(await writes()).to.deep.equal({INSERT: errors.length})
    await expectAllFingerprinted(t)
    // A recaptured key: the upsert's update is the entry's only write, fingerprint included.
    await addExhausted(t, 'charge', 'disk full on node 3', 'k1')
    await t.query(`truncate ${t.quoted}.test_dlq_writes`)
    expect((await captureExhausted(t.db)).captured).to.equal(1)
    expect(await writes()).to.deep.equal({UPDATE: 1})
    await expectAllFingerprinted(t)
  })

  it('migrate and init-dlq fingerprint existing entries (reported), then find nothing to do', async () => {
    await insertDlq(t, RUST_ROWS.slice(0, 12))
    const first = await initDlq(t.db)
    expect(first.fingerprinted).to.equal(12)
    await expectAllFingerprinted(t)
    await insertDlq(t, RUST_ROWS.slice(12, 15))
    const again = await migrate(t.db)
    expect(again.upToDate).to.equal(true)
    expect(again.dlq.fingerprinted).to.equal(3)
    expect((await migrate(t.db)).dlq.fingerprinted).to.equal(0)
  })
})
