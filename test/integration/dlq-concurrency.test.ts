import {expect} from 'chai'

import {captureExhausted} from '../../src/lib/dlq/capture.js'
import {fingerprint} from '../../src/lib/dlq/fingerprint.js'
import {backfillFingerprints} from '../../src/lib/dlq/fingerprint-store.js'
import {purgeDlq} from '../../src/lib/dlq/purge.js'
import {retryDlq} from '../../src/lib/dlq/retry.js'
import {selectionAsOfNow} from '../../src/lib/dlq/selector.js'
import {dlqStats, type StatsSource} from '../../src/lib/dlq/stats.js'
import {failJobs, removeJobs} from '../../src/lib/jobs/actions.js'
import {Database} from '../../src/lib/db.js'
import {TestSchema} from '../support/db.js'

/**
 * Many operators at once, each on its own pool: retries (skip and replace, by task, by group,
 * limited), captures, wide and limited purges, jobs remove --to-dlq and fail --capture, the
 * crate's inserts and upserts, and the fingerprint backfill, for several rounds. Afterwards
 * the trigger-kept group counts must equal a fresh count, and every job of the tasks nobody
 * purges must be in exactly one place (DLQ or jobs table), never lost, never doubled.
 */

const ERRORS = ['SMTP 421 try later for user', 'card declined for order', 'disk full on node']
/** Kept tasks: moved back and forth, never purged. */
const KEPT = ['a', 'b']
const N = 600

async function recountDiff(t: TestSchema): Promise<{kept: unknown[]; fresh: unknown[]}> {
  const kept = await t.query(
    `select task_identifier, queue_name, error_fingerprint, entries::int from ${t.quoted}.backfill_dlq_group_counts order by 1, 2, 3`,
  )
  const fresh = await t.query(
    `select task_identifier::text, queue_name::text, error_fingerprint, count(*)::int as entries from ${t.quoted}.backfill_dlq
     where error_fingerprint is not null and error_fingerprint_at = failed_at group by 1, 2, 3 order by 1, 2, 3`,
  )
  return {kept, fresh}
}

describe('DLQ under many concurrent operators (group counts, nothing lost or doubled)', function () {
  this.timeout(180_000)
  let t: TestSchema
  const pools: Database[] = []
  beforeEach(async () => {
    t = await TestSchema.create({migrated: true, prefix: 'dcc'})
  })
  afterEach(async () => {
    await Promise.all(pools.splice(0).map((db) => db.end()))
    await t.drop()
  })

  it('mixed retry, capture, purge, job actions, crate writes and fingerprint backfill: counts equal a recount, kept jobs each in one place', async () => {
    const operator = (): Database => {
      const db = Database.connect({target: t.db.target, schema: t.db.schema, max: 2})
      pools.push(db)
      return db
    }
    // Entries of tasks a, b (kept) and p (purged); p's have job keys the crate upserts on.
    await t.query(
      `insert into ${t.quoted}.backfill_dlq (original_job_id, task_identifier, payload, queue_name, priority, job_key, max_attempts, failure_reason, last_error, failed_at)
       select i, (array['a', 'b', 'p'])[1 + i % 3], jsonb_build_object('i', i), case when i % 4 = 0 then 'mail' else '' end, 0,
              case when i % 3 = 2 then 'pk-' || i end, 8, 'Job exceeded maximum retry attempts (8/8)',
              to_jsonb((array[$2::text, $3::text, $4::text])[1 + i % 5 % 3] || ' ' || i), now() - make_interval(secs => i)
       from generate_series(1, $1::int) i`,
      [N, ...ERRORS],
    )
    // Half fingerprinted before, half by the backfill racing everything else.
    await t.query(`update ${t.quoted}.backfill_dlq set error_fingerprint = null where id % 2 = 0`)
    await backfillFingerprints(t.db)
    await t.query(
      `update ${t.quoted}.backfill_dlq set error_fingerprint = null, error_fingerprint_at = null where id % 2 = 0`,
    )
    const groupA = fingerprint('a', `${ERRORS[0]} 1`).fingerprint

    const errors: string[] = []
    const guard = (name: string, run: () => Promise<unknown>): Promise<void> =>
      run().then(
        () => undefined,
        (error: Error) => {
          errors.push(`${name}: ${error.message}`)
        },
      )
    const exhaustSome = async (db: Database, task: string, error: string): Promise<void> => {
      await db.pool.query(
        `update ${db.quotedSchema}._private_jobs j set attempts = j.max_attempts, last_error = $2 || ' ' || j.id
         from ${db.quotedSchema}._private_tasks k
         where k.id = j.task_id and k.identifier = $1 and j.locked_at is null and j.id % 3 <> 0`,
        [task, error],
      )
    }
    let crateKey = 0
    for (let round = 0; round < 6; round++) {
      const ops = [
        guard('retry a', async () => {
          const db = operator()
          await retryDlq(db, {selector: await selectionAsOfNow(db, {tasks: ['a']}), batchSize: 7})
        }),
        guard('retry group (replace)', async () => {
          const db = operator()
          await retryDlq(db, {selector: {group: groupA}, batchSize: 5, keyConflict: 'replace'})
        }),
        guard('retry b limited', async () => {
          const db = operator()
          await retryDlq(db, {selector: {tasks: ['b'], limit: 40}, batchSize: 9})
        }),
        guard('retry all (skip)', async () => {
          const db = operator()
          await retryDlq(db, {selector: {tasks: KEPT, queues: ['mail']}, batchSize: 11})
        }),
        guard('exhaust + capture', async () => {
          const db = operator()
          await exhaustSome(db, 'a', ERRORS[round % 3]!)
          await exhaustSome(db, 'b', ERRORS[(round + 1) % 3]!)
          await captureExhausted(db, {batchSize: 6})
        }),
        guard('capture', async () => {
          await captureExhausted(operator(), {batchSize: 13})
        }),
        guard('remove --to-dlq', async () => {
          await removeJobs(operator(), {selector: {tasks: ['b'], limit: 25}, toDlq: true, batchSize: 4})
        }),
        guard('fail --capture', async () => {
          await failJobs(operator(), {selector: {tasks: ['a'], limit: 25}, capture: true, batchSize: 4})
        }),
        guard('purge p wide', async () => {
          const db = operator()
          await purgeDlq(db, {selector: await selectionAsOfNow(db, {tasks: ['p'], queues: ['mail']})})
        }),
        guard('purge p limited', async () => {
          await purgeDlq(operator(), {selector: {tasks: ['p'], limit: 30}, batchSize: 3})
        }),
        guard('crate writes', async () => {
          const db = operator()
          for (let i = 0; i < 30; i++) {
            const key = i % 2 === 0 ? `pk-${2 + 3 * ((round * 30 + i) % (N / 3))}` : `crate-${crateKey++}`
            await db.pool.query(
              `insert into ${db.quotedSchema}.backfill_dlq (original_job_id, task_identifier, payload, queue_name, priority, job_key, max_attempts, failure_reason, failure_count, last_error)
               values (1, 'p', '{}'::jsonb, '', 0, $1, 8, 'Job exceeded maximum retry attempts (8/8)', 1, to_jsonb($2::text))
               on conflict (job_key) where job_key is not null do update set failed_at = now(),
                 failure_count = backfill_dlq.failure_count + 1, last_error = excluded.last_error`,
              [key, `${ERRORS[i % 3]} ${i}`],
            )
          }
        }),
        guard('fingerprint backfill', async () => {
          await backfillFingerprints(operator(), {batchSize: 17})
        }),
      ]
      await Promise.all(ops)
      await Promise.all(pools.splice(0).map((db) => db.end()))
    }
    expect(errors, 'operations failed').to.deep.equal([])

    const {kept, fresh} = await recountDiff(t)
    expect(kept).to.deep.equal(fresh)
    // What `dlq stats` answers from the counts is what a scan of the entries answers.
    await backfillFingerprints(t.db)
    const stats = async (source: 'auto' | 'scan'): Promise<{used?: StatsSource; stats: object}> => {
      let used: StatsSource | undefined
      const {durationMs: _, ...rest} = await dlqStats(t.db, {selector: {}, source, onSource: (s) => (used = s)})
      return {used, stats: rest}
    }
    const counted = await stats('auto')
    const scanned = await stats('scan')
    expect(counted.used).to.equal('group-counts')
    expect(counted.stats).to.deep.equal(scanned.stats)

    // Every kept job once: in the DLQ or in the jobs table.
    const places = await t.query<{i: number; n: number}>(
      `select i, count(*)::int as n from (
         select (payload ->> 'i')::int as i from ${t.quoted}.backfill_dlq where task_identifier = any($1::text[])
         union all
         select (j.payload::jsonb ->> 'i')::int from ${t.quoted}._private_jobs j
         join ${t.quoted}._private_tasks k on k.id = j.task_id where k.identifier = any($1::text[])
       ) x group by i order by i`,
      [KEPT],
    )
    const expected = Array.from({length: N}, (_, k) => k + 1).filter((i) => i % 3 !== 2)
    expect(places.filter((p) => p.n !== 1)).to.deep.equal([])
    expect(places.map((p) => p.i)).to.deep.equal(expected)
  })
})
