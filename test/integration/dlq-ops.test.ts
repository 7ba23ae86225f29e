import {expect} from 'chai'
import pg from 'pg'

import {dlqHistory} from '../../src/lib/dlq/audit.js'
import {captureNow} from '../../src/lib/dlq/capture-run.js'
import {captureExhausted} from '../../src/lib/dlq/capture.js'
import {listDlq, showDlqEntry} from '../../src/lib/dlq/entries.js'
import {fingerprint} from '../../src/lib/dlq/fingerprint.js'
import {previewSelection} from '../../src/lib/dlq/preview.js'
import {purgeDlq} from '../../src/lib/dlq/purge.js'
import {retryDlq} from '../../src/lib/dlq/retry.js'
import {countSelection} from '../../src/lib/dlq/scan.js'
import {selectionAsOfNow, type DlqSelector} from '../../src/lib/dlq/selector.js'
import {dlqStats} from '../../src/lib/dlq/stats.js'
import {BULK_FLAG} from '../../src/lib/jobs/priority.js'
import type {Database} from '../../src/lib/db.js'
import {type JobRow, TestSchema} from '../support/db.js'
import {fillDlq, insertDlq, whereIsEverything} from '../support/dlq.js'

const jobs = (t: TestSchema): Promise<JobRow[]> => t.jobs()

async function dlqCount(t: TestSchema): Promise<number> {
  const [row] = await t.query<{n: number}>(`select count(*)::int as n from ${t.quoted}.backfill_dlq`)
  return row!.n
}

/** Makes the job fail for good, as graphile leaves it after its last attempt. */
async function exhaust(t: TestSchema, jobId: string, error = 'failed again'): Promise<void> {
  await t.query(`update ${t.quoted}._private_jobs set attempts = max_attempts, last_error = $2 where id = $1`, [
    jobId,
    error,
  ])
}

describe('DLQ operations (library against PostgreSQL)', () => {
  let t: TestSchema
  beforeEach(async () => {
    t = await TestSchema.create({migrated: true, prefix: 'dlq'})
  })
  afterEach(async () => {
    await t.drop()
  })

  describe('list', () => {
    it('pages newest first with keyset cursors: every entry exactly once, also when failed_at ties', async () => {
      const same = '2024-05-01T10:00:00.123456Z'
      await insertDlq(
        t,
        Array.from({length: 25}, (_, i) => ({
          failedAt: i < 10 ? same : new Date(Date.parse('2024-05-02T00:00:00Z') + i * 1000),
        })),
      )
      const seen: string[] = []
      let cursor: string | undefined
      let pages = 0
      for (;;) {
        const page = await listDlq(t.db, {selector: {limit: 7}, cursor, checkUncaptured: false})
        pages += 1
        seen.push(...page.entries.map((e) => e.id))
        for (let i = 1; i < page.entries.length; i++) {
          const [a, b] = [page.entries[i - 1]!, page.entries[i]!]
          expect(
            a.failedAt.getTime() > b.failedAt.getTime() ||
              (a.failedAt.getTime() === b.failedAt.getTime() && BigInt(a.id) > BigInt(b.id)),
          ).to.equal(true)
        }
        if (!page.nextCursor) break
        cursor = page.nextCursor
      }
      expect(pages).to.equal(4)
      expect(seen).to.have.length(25)
      expect(new Set(seen).size).to.equal(25)
    })

    it('reads last_error as a JSON string or any JSON, with failure_reason as the fallback', async () => {
      const [str, obj, other, none] = await insertDlq(t, [
        {lastError: 'SMTP 421 try later'},
        {lastError: {message: 'card declined', code: 42}},
        {lastError: {status: 500}},
        {lastError: null, failureReason: 'Permanent failure (attempt 2/8)'},
      ])
      const {entries} = await listDlq(t.db, {selector: {}, checkUncaptured: false})
      const byId = new Map(entries.map((e) => [e.id, e]))
      expect(byId.get(str!)?.errorText).to.equal('SMTP 421 try later')
      expect(byId.get(obj!)?.errorText).to.equal('card declined')
      expect(byId.get(obj!)?.lastError).to.deep.equal({message: 'card declined', code: 42})
      expect(byId.get(other!)?.errorText).to.equal('{"status": 500}')
      expect(byId.get(none!)?.errorText).to.equal('Permanent failure (attempt 2/8)')
      expect(byId.get(none!)?.attempts).to.equal(2)
      expect(byId.get(str!)?.attempts).to.equal(8)
    })

    it('applies every selector (and their combination)', async () => {
      const ids = await insertDlq(t, [
        {task: 'send_email', queue: '', lastError: 'SMTP 421 for a@x.io', failedAt: '2024-05-01T00:00:00Z'},
        {
          task: 'send_email',
          queue: 'default',
          jobKey: 'k1',
          lastError: 'SMTP 421 for b@y.io',
          failedAt: '2024-05-02T00:00:00Z',
        },
        {
          task: 'charge',
          queue: 'user:1',
          jobKey: 'k2',
          lastError: {message: 'Card Declined'},
          failedAt: '2024-05-03T00:00:00Z',
        },
        {task: 'charge', queue: 'user:2', lastError: 'timeout', failedAt: '2024-05-04T00:00:00Z'},
      ])
      const select = async (selector: DlqSelector): Promise<string[]> =>
        (await listDlq(t.db, {selector, checkUncaptured: false})).entries.map((e) => e.id).sort()
      expect(await select({ids: [ids[0]!, ids[3]!]})).to.deep.equal([ids[0], ids[3]].sort())
      expect(await select({tasks: ['charge']})).to.deep.equal([ids[2], ids[3]].sort())
      expect(await select({queues: ['']})).to.deep.equal([ids[0]])
      expect(await select({queues: ['default', 'user:2']})).to.deep.equal([ids[1], ids[3]].sort())
      expect(await select({jobKeys: ['k2']})).to.deep.equal([ids[2]])
      expect(await select({since: new Date('2024-05-02T00:00:00Z')})).to.deep.equal([ids[1], ids[2], ids[3]].sort())
      expect(await select({until: new Date('2024-05-02T00:00:00Z')})).to.deep.equal([ids[0]])
      expect(await select({error: 'card decl'})).to.deep.equal([ids[2]])
      expect(await select({error: '"Card Declined"'})).to.deep.equal([ids[2]]) // any field of a JSON error
      expect(await select({error: 'smtp'})).to.deep.equal([ids[0], ids[1]].sort())
      const group = fingerprint('send_email', 'SMTP 421 for a@x.io').fingerprint
      expect(await select({group})).to.deep.equal([ids[0], ids[1]].sort())
      expect(await select({tasks: ['send_email'], queues: ['default'], error: '421'})).to.deep.equal([ids[1]])
      expect(await select({tasks: ['nope']})).to.deep.equal([])
      expect(await countSelection(t.db, {tasks: ['charge']})).to.equal(2)
      expect(await countSelection(t.db, {group})).to.equal(2)
      expect(await countSelection(t.db, {group, limit: 1})).to.equal(1)
    })

    it('pages a --group selection', async () => {
      await insertDlq(
        t,
        Array.from({length: 30}, (_, i) => ({
          lastError: i % 3 === 0 ? `disk full on node ${i}` : `timeout after ${i}ms`,
        })),
      )
      const group = fingerprint('send_email', 'disk full on node 1').fingerprint
      const seen: string[] = []
      let cursor: string | undefined
      for (;;) {
        const page = await listDlq(t.db, {selector: {group, limit: 4}, cursor, checkUncaptured: false})
        expect(page.entries.every((e) => e.errorText.startsWith('disk full'))).to.equal(true)
        seen.push(...page.entries.map((e) => e.id))
        if (!page.nextCursor) break
        cursor = page.nextCursor
      }
      expect(seen).to.have.length(10)
      expect(new Set(seen).size).to.equal(10)
    })

    it('reports exhausted jobs still waiting in the jobs table', async () => {
      const [job] = await t.query<{id: string}>(
        `select id from ${t.quoted}.add_job('resize', '{}'::json, max_attempts => 1)`,
      )
      await exhaust(t, job!.id)
      const page = await listDlq(t.db, {selector: {}})
      expect(page.uncaptured?.total).to.equal(1)
      expect(page.uncaptured?.groups[0]?.taskIdentifier).to.equal('resize')
    })
  })

  describe('stats', () => {
    it('counts per task and queue and groups errors by fingerprint, with first/last seen and a sample', async () => {
      await insertDlq(t, [
        {task: 'send_email', lastError: 'SMTP 421 try later for user 1', failedAt: '2024-05-01T00:00:00Z'},
        {task: 'send_email', lastError: 'SMTP 421 try later for user 2', failedAt: '2024-05-03T00:00:00Z'},
        {
          task: 'send_email',
          queue: 'mail',
          lastError: 'SMTP 421 try later for user 3',
          failedAt: '2024-05-02T00:00:00Z',
        },
        {task: 'send_email', lastError: 'mailbox "x@y.z" full', failedAt: '2024-05-04T00:00:00Z'},
        {task: 'charge', lastError: {message: 'card 4242 declined'}, failedAt: '2024-05-05T00:00:00Z'},
      ])
      const stats = await dlqStats(t.db, {selector: {}})
      expect(stats.total).to.equal(5)
      expect(stats.oldest?.toISOString()).to.equal('2024-05-01T00:00:00.000Z')
      expect(stats.newest?.toISOString()).to.equal('2024-05-05T00:00:00.000Z')
      expect(stats.byTask).to.deep.equal([
        {taskIdentifier: 'send_email', count: 4},
        {taskIdentifier: 'charge', count: 1},
      ])
      expect(stats.byQueue).to.deep.equal([
        {queueName: '', count: 4},
        {queueName: 'mail', count: 1},
      ])
      expect(stats.groups).to.have.length(3)
      const smtp = stats.groups[0]!
      expect(smtp).to.include({
        taskIdentifier: 'send_email',
        template: 'SMTP <n> try later for user <n>',
        count: 3,
        sampleError: 'SMTP 421 try later for user 1',
      })
      expect(smtp.fingerprint).to.equal(fingerprint('send_email', 'SMTP 421 try later for user 77').fingerprint)
      expect(smtp.firstSeen.toISOString()).to.equal('2024-05-01T00:00:00.000Z')
      expect(smtp.lastSeen.toISOString()).to.equal('2024-05-03T00:00:00.000Z')
      expect(stats.groups.map((g) => g.template)).to.include.members(['mailbox "<v>" full', 'card <n> declined'])
      expect(stats.keyConflicts).to.equal(null)

      const one = await dlqStats(t.db, {selector: {group: smtp.fingerprint}})
      expect(one.total).to.equal(3)
      expect(one.byQueue).to.deep.equal([
        {queueName: '', count: 2},
        {queueName: 'mail', count: 1},
      ])
    })

    it('--limit counts the first N selected entries in id order, with and without a group', async () => {
      await insertDlq(
        t,
        Array.from({length: 10}, (_, i) => ({task: i % 2 === 0 ? 'even' : 'odd', lastError: 'same error'})),
      )
      expect((await dlqStats(t.db, {selector: {limit: 3}})).byTask).to.deep.equal([
        {taskIdentifier: 'even', count: 2},
        {taskIdentifier: 'odd', count: 1},
      ])
      const odd = fingerprint('odd', 'same error').fingerprint
      const limited = await dlqStats(t.db, {selector: {group: odd, limit: 2}})
      expect(limited.total).to.equal(2)
      expect(limited.groups.map((g) => g.fingerprint)).to.deep.equal([odd])
      expect((await dlqStats(t.db, {selector: {limit: 50}})).total).to.equal(10)
    })

    it('caps the number of groups tracked (bounded memory) and counts the rest', async () => {
      await insertDlq(
        t,
        Array.from({length: 6}, (_, i) => ({lastError: `error kind ${'abcdef'[i]}`})),
      )
      const stats = await dlqStats(t.db, {selector: {}, maxGroups: 4, fetchSize: 2})
      expect(stats.total).to.equal(6)
      expect(stats.groups).to.have.length(4)
      expect(stats.ungrouped).to.equal(2)
      expect(stats.groupsTruncated).to.equal(true)
    })
  })

  describe('retry', () => {
    it('re-enqueues task, payload, priority, queue, key and max attempts, and leaves the DLQ in the same statement', async () => {
      const ids = await insertDlq(t, [
        {task: 'send_email', payload: {to: 'a'}, queue: '', priority: 0, maxAttempts: 5},
        {task: 'send_email', payload: {to: 'b'}, queue: 'default', priority: -10, jobKey: 'mail-b', maxAttempts: null},
        {task: 'charge', payload: {u: 1}, queue: 'user:1', priority: 100_000, maxAttempts: 99_999},
        {task: 'charge', payload: {u: 2}, queue: 'user:2', priority: -100_000, maxAttempts: 0},
      ])
      const result = await retryDlq(t.db, {
        selector: {ids},
        reason: 'after the fix',
        actor: {osUser: 'oncall', hostname: 'laptop'},
      })
      expect(result).to.include({retried: 4, interrupted: false, batches: 1})
      expect(result.skipped).to.deep.equal({keyConflict: 0, invalid: 0})
      expect(await dlqCount(t)).to.equal(0)
      const rows = await jobs(t)
      const byPayload = (key: string, value: unknown): JobRow =>
        rows.find((r) => (r.payload as Record<string, unknown>)[key] === value)!
      expect(byPayload('to', 'a')).to.include({
        task: 'send_email',
        queue: null,
        priority: 0,
        max_attempts: 5,
        key: null,
        attempts: 0,
      })
      expect(byPayload('to', 'a').flags).to.deep.equal({[BULK_FLAG]: true})
      expect(byPayload('to', 'b')).to.include({queue: null, priority: -10, max_attempts: 8, key: 'mail-b'})
      expect(byPayload('to', 'b').flags).to.equal(null)
      expect(byPayload('u', 1)).to.include({queue: 'user:1', priority: 32767, max_attempts: 32767})
      expect(byPayload('u', 2)).to.include({queue: 'user:2', priority: -32768, max_attempts: 1})
      // run_at keeps the DLQ order, one microsecond apart
      const order = ids.map((id) => result.sample.find((s) => s.dlqId === id)!.jobId)
      const runAts = order.map((jobId) => rows.find((r) => r.id === jobId)!.run_at.getTime())
      expect([...runAts].sort((a, b) => a - b)).to.deep.equal(runAts)

      const [audit] = await t.query<{
        action: string
        os_user: string
        hostname: string
        reason: string
        count: number
        dlq_ids: string[]
        job_ids: string[]
        selection: unknown
      }>(
        `select action, os_user, hostname, reason, count, dlq_ids, job_ids, selection from ${t.quoted}.backfill_dlq_audit`,
      )
      expect(audit).to.deep.include({
        action: 'retry',
        os_user: 'oncall',
        hostname: 'laptop',
        reason: 'after the fix',
        count: 4,
      })
      expect(audit!.dlq_ids).to.deep.equal(ids)
      expect(audit!.job_ids).to.deep.equal(order)
      expect(audit!.selection).to.deep.equal({ids})
      const lineage = await t.query<{
        job_id: string
        case_id: string
        requeued_count: number
        dlq_id: string
        audit_id: string
      }>(
        `select l.job_id, l.case_id, l.requeued_count, l.dlq_id, l.audit_id from ${t.quoted}.backfill_dlq_retried_jobs l order by case_id`,
      )
      expect(lineage.map((l) => [l.case_id, l.job_id, l.requeued_count, l.dlq_id])).to.deep.equal(
        ids.map((id, i) => [id, order[i], 1, id]),
      )
      const [{id: auditId}] = (await t.query<{id: string}>(`select id from ${t.quoted}.backfill_dlq_audit`)) as [
        {id: string},
      ]
      expect(lineage.every((l) => l.audit_id === auditId)).to.equal(true)
      // The 'retried' event is written only if the job lands in the DLQ again (see the story test below).
      expect(await t.query(`select 1 from ${t.quoted}.backfill_dlq_events`)).to.have.length(0)
    })

    it("--default-queue serial keeps the crate's 'default' as a serial queue; overrides apply to every entry", async () => {
      await insertDlq(t, [{queue: 'default', priority: 3, maxAttempts: 4}])
      const runAt = new Date(Date.now() + 3_600_000)
      await retryDlq(t.db, {selector: {}, defaultQueue: 'serial', priority: -5, maxAttempts: 2, runAt})
      const [job] = await jobs(t)
      expect(job).to.include({queue: 'default', priority: -5, max_attempts: 2})
      expect(job!.flags).to.equal(null)
      expect(Math.abs(job!.run_at.getTime() - runAt.getTime())).to.be.lessThan(5)
    })

    it('refuses out-of-range overrides before touching anything', async () => {
      await insertDlq(t, [{}])
      for (const options of [{priority: 40_000}, {maxAttempts: 0}, {batchSize: 0}]) {
        let code = ''
        try {
          await retryDlq(t.db, {selector: {}, ...options})
        } catch (error) {
          code = (error as {code: string}).code
        }
        expect(code).to.match(/^E_/)
      }
      expect(await dlqCount(t)).to.equal(1)
    })

    describe('when a job with the same job_key is in the jobs table', () => {
      async function keyedJob(state: 'waiting' | 'running' | 'failed'): Promise<string> {
        const [job] = await t.query<{id: string}>(
          `select id from ${t.quoted}.add_job('sync', '{"v":"new"}'::json, job_key => 'user-7', max_attempts => 3)`,
        )
        if (state === 'running')
          await t.query(
            `update ${t.quoted}._private_jobs set locked_at = now(), locked_by = 'pool-x', attempts = 1 where id = $1`,
            [job!.id],
          )
        if (state === 'failed') await exhaust(t, job!.id)
        return job!.id
      }

      for (const state of ['waiting', 'running', 'failed'] as const) {
        it(`skip (default) leaves the entry in the DLQ and the ${state} job untouched`, async () => {
          const jobId = await keyedJob(state)
          const [entry] = await insertDlq(t, [{task: 'sync', payload: {v: 'old'}, jobKey: 'user-7'}])
          const before = await jobs(t)
          const result = await retryDlq(t.db, {selector: {}})
          expect(result.retried).to.equal(0)
          expect(result.skipped.keyConflict).to.equal(1)
          expect(result.skippedSample).to.deep.equal([{dlqId: entry, taskIdentifier: 'sync', reason: 'key_conflict'}])
          expect(await dlqCount(t)).to.equal(1)
          expect(await jobs(t)).to.deep.equal(before)
          expect(before[0]!.id).to.equal(jobId)
          const [audit] = await t.query<{count: number; details: {skipped: unknown[]}}>(
            `select count, details from ${t.quoted}.backfill_dlq_audit`,
          )
          expect(audit!.count).to.equal(0)
          expect(audit!.details.skipped).to.deep.equal([{id: entry, status: 'key_conflict'}])
          const preview = await previewSelection(t.db, {selector: {}, checkKeyConflicts: true})
          expect(preview.stats.keyConflicts).to.equal(1)
        })
      }

      it("replace overwrites a waiting job (graphile's replace): one job, the entry's payload", async () => {
        const jobId = await keyedJob('waiting')
        await insertDlq(t, [{task: 'sync', payload: {v: 'old'}, jobKey: 'user-7', maxAttempts: 8}])
        const result = await retryDlq(t.db, {selector: {}, keyConflict: 'replace'})
        expect(result.retried).to.equal(1)
        expect(result.sample[0]!.jobId).to.equal(jobId)
        const rows = await jobs(t)
        expect(rows).to.have.length(1)
        expect(rows[0]).to.deep.include({id: jobId, payload: {v: 'old'}, key: 'user-7', attempts: 0, max_attempts: 8})
        expect(await dlqCount(t)).to.equal(0)
      })

      for (const state of ['running', 'failed'] as const) {
        it(`replace enqueues a new job and detaches the ${state} one (key cleared, no further attempts)`, async () => {
          const oldId = await keyedJob(state)
          await insertDlq(t, [{task: 'sync', payload: {v: 'old'}, jobKey: 'user-7'}])
          const result = await retryDlq(t.db, {selector: {}, keyConflict: 'replace'})
          expect(result.retried).to.equal(1)
          const rows = await jobs(t)
          expect(rows).to.have.length(2)
          const old = rows.find((r) => r.id === oldId)!
          const fresh = rows.find((r) => r.id !== oldId)!
          expect(old.key).to.equal(null)
          expect(old.attempts).to.equal(old.max_attempts)
          expect(fresh).to.deep.include({id: result.sample[0]!.jobId, key: 'user-7', payload: {v: 'old'}, attempts: 0})
        })
      }
    })

    it('leaves entries graphile would reject (names over 128 characters) in the DLQ and retries the rest', async () => {
      const [bad, good] = await insertDlq(t, [{task: 'x'.repeat(150)}, {task: 'fine'}])
      const result = await retryDlq(t.db, {selector: {}})
      expect(result.retried).to.equal(1)
      expect(result.skipped.invalid).to.equal(1)
      expect(result.skippedSample[0]!.dlqId).to.equal(bad)
      expect(result.sample[0]!.dlqId).to.equal(good)
      expect(await dlqCount(t)).to.equal(1)
    })

    it('--limit retries a canary of the first N entries in id order; batches commit one by one', async () => {
      await fillDlq(t, 25)
      const batches: number[] = []
      const result = await retryDlq(t.db, {selector: {limit: 7}, batchSize: 3, onBatch: (p) => batches.push(p.retried)})
      expect(result.retried).to.equal(7)
      expect(batches).to.deep.equal([3, 6, 7])
      const where = await whereIsEverything(t)
      expect(where.jobs).to.have.length(7)
      expect(where.dlq).to.have.length(18)
      const [ids] = await t.query<{ids: string[]}>(
        `select array_agg(id order by id) as ids from ${t.quoted}.backfill_dlq`,
      )
      const [retried] = await t.query<{ids: string[]}>(
        `select array_agg(x order by x) as ids from ${t.quoted}.backfill_dlq_audit, unnest(dlq_ids) x`,
      )
      expect(retried!.ids.every((id) => BigInt(id) < BigInt(ids!.ids[0]!))).to.equal(true)
      expect(await t.query(`select 1 from ${t.quoted}.backfill_dlq_audit`)).to.have.length(3)
    })

    it('--group retries exactly that failure group', async () => {
      await insertDlq(
        t,
        Array.from({length: 12}, (_, i) => ({
          lastError: i % 4 === 0 ? `quota exceeded for tenant ${i}` : `network reset ${i}`,
        })),
      )
      const group = fingerprint('send_email', 'quota exceeded for tenant 1').fingerprint
      const result = await retryDlq(t.db, {selector: {group}, batchSize: 5})
      expect(result.retried).to.equal(3)
      const left = await t.query<{e: string}>(`select last_error #>> '{}' as e from ${t.quoted}.backfill_dlq`)
      expect(left.every((r) => r.e.startsWith('network reset'))).to.equal(true)
      expect(left).to.have.length(9)
    })

    it('two retries of different groups at once each retry their whole group (only matching entries are locked)', async () => {
      await t.query(
        `insert into ${t.quoted}.backfill_dlq (task_identifier, payload, queue_name, failure_reason, last_error)
         select 'sync', jsonb_build_object('i', i), '', 'x', to_jsonb(case when i % 2 = 0 then 'disk full on node ' else 'timeout after ' end || i)
         from generate_series(1, 2000) i`,
      )
      const disk = fingerprint('sync', 'disk full on node 1').fingerprint
      const timeout = fingerprint('sync', 'timeout after 1').fingerprint
      const [a, b] = await Promise.all([
        retryDlq(t.db, {selector: {group: disk}, batchSize: 100}),
        retryDlq(t.db, {selector: {group: timeout}, batchSize: 100}),
      ])
      expect([a.retried, b.retried]).to.deep.equal([1000, 1000])
      expect(await dlqCount(t)).to.equal(0)
    })

    it('stops between batches when signalled, with every entry in exactly one place', async () => {
      await fillDlq(t, 20)
      const controller = new AbortController()
      const result = await retryDlq(t.db, {
        selector: {},
        batchSize: 5,
        signal: controller.signal,
        onBatch: () => controller.abort(),
      })
      expect(result).to.include({retried: 5, interrupted: true, batches: 1})
      const where = await whereIsEverything(t)
      expect(where.jobs.length + where.dlq.length).to.equal(20)
      expect(new Set([...where.jobs, ...where.dlq]).size).to.equal(20)
    })

    it('a retried job that fails again comes back with its retry count, and show tells its story', async () => {
      const [first] = await insertDlq(t, [{task: 'flaky', payload: {n: 1}, notes: 'after deploy 12'}])
      const one = await retryDlq(t.db, {selector: {}, reason: 'first try', actor: {osUser: 'ada', hostname: 'h1'}})
      await exhaust(t, one.sample[0]!.jobId, 'still broken')
      await captureExhausted(t.db)
      const [second] = await t.query<{
        id: string
        requeued_count: number
        failure_count: number
        notes: string
        last_requeued_at: Date | null
      }>(`select id, requeued_count, failure_count, notes, last_requeued_at from ${t.quoted}.backfill_dlq`)
      expect(second).to.include({requeued_count: 1, failure_count: 2, notes: 'after deploy 12'})
      expect(second!.last_requeued_at).to.be.instanceOf(Date)

      const two = await retryDlq(t.db, {selector: {}, reason: 'second try'})
      await exhaust(t, two.sample[0]!.jobId, 'broken again')
      await captureExhausted(t.db)
      const [third] = await t.query<{id: string; requeued_count: number}>(
        `select id, requeued_count from ${t.quoted}.backfill_dlq`,
      )
      expect(third!.requeued_count).to.equal(2)

      const shown = await showDlqEntry(t.db, third!.id)
      expect(shown.caseId).to.equal(first)
      expect(shown.entry.errorText).to.equal('broken again')
      expect(shown.history.map((h) => [h.event, h.dlqId, h.jobId])).to.deep.equal([
        ['retried', first, one.sample[0]!.jobId],
        ['recaptured', second!.id, one.sample[0]!.jobId],
        ['retried', second!.id, two.sample[0]!.jobId],
        ['recaptured', third!.id, two.sample[0]!.jobId],
      ])
      expect(shown.history[0]).to.include({osUser: 'ada', hostname: 'h1', reason: 'first try'})
    })

    it('skip mode never overwrites a job enqueued with the same key while the retry runs', async () => {
      await insertDlq(t, [{jobKey: 'K', payload: {v: 'old failed'}}])
      // Another session enqueues key K and commits only after the retry's statement has started.
      const app = new pg.Client({connectionString: t.url})
      await app.connect()
      try {
        await app.query('begin')
        await app.query(`select ${t.quoted}.add_job('send_email', '{"v":"NEW"}', job_key => 'K')`)
        const retry = retryDlq(t.db, {selector: {}})
        await new Promise((r) => setTimeout(r, 300)) // the retry now waits on the uncommitted key
        await app.query('commit')
        const result = await retry
        expect(result.retried).to.equal(0)
        expect(result.skipped.keyConflict).to.equal(1)
      } finally {
        await app.end()
      }
      const jobs = await t.jobs()
      expect(jobs.map((j) => [j.key, j.payload, j.revision])).to.deep.equal([['K', {v: 'NEW'}, 0]])
      expect(await dlqCount(t)).to.equal(1)
    })

    it('skip mode never strips the key of a job enqueued and fetched by a worker while the retry runs', async () => {
      await insertDlq(t, [{task: 'new_task', jobKey: 'K', payload: {v: 'old failed'}}])
      // X holds new_task's row in _private_tasks uncommitted: the retry's add_jobs() waits on it,
      // after its statement's snapshot (no job K then) and before add_jobs() looks at job K.
      const x = new pg.Client({connectionString: t.url})
      await x.connect()
      try {
        await x.query('begin')
        await x.query(`insert into ${t.quoted}._private_tasks (identifier) values ('new_task')`)
        const retry = retryDlq(t.db, {selector: {}})
        let waited = false
        for (let i = 0; i < 500 && !waited; i++) {
          const [w] = await t.query<{n: number}>(
            `select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and strpos(query, $1) > 0`,
            [t.schema],
          )
          waited = w!.n > 0
          if (!waited) await new Promise((r) => setTimeout(r, 20))
        }
        expect(waited, "the retry's add_jobs() waits on new_task's row").to.equal(true)
        // Meanwhile the application enqueues key K and a worker fetches it (attempt 1 running).
        await t.query(`select ${t.quoted}.add_job('send_email', '{"v":"NEW"}', job_key => 'K')`)
        await t.query(
          `update ${t.quoted}._private_jobs set locked_at = now(), locked_by = 'pool-test', attempts = 1 where key = 'K'`,
        )
        await x.query('rollback')
        const result = await retry
        expect({retried: result.retried, keyConflict: result.skipped.keyConflict}).to.deep.equal({
          retried: 0,
          keyConflict: 1,
        })
      } finally {
        await x.end()
      }
      const jobs = await t.jobs()
      expect(jobs.map((j) => [j.key, j.payload, j.attempts, j.max_attempts])).to.deep.equal([['K', {v: 'NEW'}, 1, 25]])
      expect(await dlqCount(t)).to.equal(1)
    })

    it('two retries at once enqueue every entry exactly once in total', async () => {
      await fillDlq(t, 3000)
      const [a, b] = await Promise.all([
        retryDlq(t.db, {selector: {}, batchSize: 100}),
        retryDlq(t.db, {selector: {}, batchSize: 100}),
      ])
      expect(a.retried + b.retried).to.equal(3000)
      const where = await whereIsEverything(t)
      expect(where.dlq).to.deep.equal([])
      expect(where.jobs).to.deep.equal(Array.from({length: 3000}, (_, i) => i + 1))
      const [audit] = await t.query<{n: number}>(
        `select sum(count)::int as n from ${t.quoted}.backfill_dlq_audit where action = 'retry'`,
      )
      expect(audit!.n).to.equal(3000)
    })

    it('a retry racing a purge (both skipping locked rows): every entry is either enqueued or purged, never both', async () => {
      await fillDlq(t, 3000)
      const payloadOf = new Map(
        (
          await t.query<{id: string; i: number}>(`select id, (payload ->> 'i')::int as i from ${t.quoted}.backfill_dlq`)
        ).map((r) => [r.id, r.i]),
      )
      const [retried, purged] = await Promise.all([
        retryDlq(t.db, {selector: {}, batchSize: 100}),
        purgeDlq(t.db, {selector: {limit: 3000}, batchSize: 100}),
      ])
      expect(retried.retried + purged.purged).to.equal(3000)
      const where = await whereIsEverything(t)
      expect(where.dlq).to.deep.equal([])
      expect(where.jobs).to.have.length(retried.retried)
      const purgedIds = await t.query<{id: string}>(
        `select x::text as id from ${t.quoted}.backfill_dlq_audit, unnest(dlq_ids) x where action = 'purge'`,
      )
      const purgedPayloads = new Set(purgedIds.map((r) => payloadOf.get(r.id)))
      expect(purgedPayloads.size).to.equal(purged.purged)
      expect(where.jobs.some((i) => purgedPayloads.has(i))).to.equal(false)
      expect(new Set([...where.jobs, ...purgedPayloads]).size).to.equal(3000)
    })
  })

  describe('purge', () => {
    it('deletes a wide selection in batches of heap pages, with an audit row per batch', async () => {
      // fillfactor 10 spreads the rows over pages (a few per page), as a big DLQ is.
      await t.query(`alter table ${t.quoted}.backfill_dlq set (fillfactor = 10)`)
      await fillDlq(t, 23)
      await t.query(`analyze ${t.quoted}.backfill_dlq`)
      const progress: number[] = []
      const result = await purgeDlq(t.db, {
        selector: {},
        batchSize: 10,
        reason: 'cleanup',
        onBatch: (p) => progress.push(p.purged),
      })
      expect(result).to.include({purged: 23, interrupted: false})
      expect(result.batches).to.be.greaterThan(1)
      expect(progress.at(-1)).to.equal(23)
      expect([...progress].sort((a, b) => a - b)).to.deep.equal(progress)
      expect(await dlqCount(t)).to.equal(0)
      const audit = await t.query<{count: number; reason: string; dlq_ids: string[]}>(
        `select count, reason, dlq_ids from ${t.quoted}.backfill_dlq_audit order by id`,
      )
      expect(audit).to.have.length(result.batches)
      expect(audit.every((a) => a.count > 0 && a.count <= 12 && a.reason === 'cleanup')).to.equal(true)
      expect(audit.every((a) => a.dlq_ids === null)).to.equal(true) // a bulk delete records selection and counts
      const [run] = await dlqHistory(t.db)
      expect(run).to.include({action: 'purge', count: 23, batches: result.batches, reason: 'cleanup', run: result.run})
    })

    it('with --limit walks ids in order, in batches of exactly the batch size', async () => {
      await fillDlq(t, 30)
      const progress: number[] = []
      const result = await purgeDlq(t.db, {
        selector: {limit: 23},
        batchSize: 10,
        onBatch: (p) => progress.push(p.purged),
      })
      expect(result).to.include({purged: 23, batches: 3})
      expect(progress).to.deep.equal([10, 20, 23])
      const audit = await t.query<{count: number}>(`select count from ${t.quoted}.backfill_dlq_audit order by id`)
      expect(audit.map((a) => a.count)).to.deep.equal([10, 10, 3])
      const [left] = await t.query<{min: number}>(
        `select min((payload ->> 'i')::int) as min, count(*)::int from ${t.quoted}.backfill_dlq`,
      )
      expect(left!.min).to.equal(24)
    })

    it('a wide purge racing a retry that holds rows waits for them and never deletes a retried entry', async () => {
      await fillDlq(t, 2000)
      const [retried, purged] = await Promise.all([
        retryDlq(t.db, {selector: {}, batchSize: 300}),
        purgeDlq(t.db, {selector: {tasks: ['task_0', 'task_1', 'task_2']}, batchSize: 50}),
      ])
      expect(retried.retried + purged.purged).to.equal(2000)
      const where = await whereIsEverything(t)
      expect(where.dlq).to.deep.equal([])
      expect(where.jobs).to.have.length(retried.retried)
    })

    it('a wide purge also deletes a selected entry that a concurrent update moved to a page added at the end', async () => {
      await fillDlq(t, 2000)
      await t.query(`analyze ${t.quoted}.backfill_dlq`)
      const selector = await selectionAsOfNow(t.db, {tasks: ['task_0', 'task_1', 'task_2']})
      // Between the first two batches, the crate's requeue bookkeeping (or the fingerprint backfill
      // of a starting worker) updates the last entry: its new version no longer fits its full page.
      let transactions = 0
      const db = Object.create(t.db) as Database
      db.transaction = async (run) => {
        transactions += 1
        if (transactions === 2)
          await t.query(
            `update ${t.quoted}.backfill_dlq set notes = 'requeued', error_fingerprint = 'x' where id = (select max(id) from ${t.quoted}.backfill_dlq)`,
          )
        return t.db.transaction(run)
      }
      const result = await purgeDlq(db, {selector, batchSize: 100})
      expect(transactions).to.be.greaterThan(2)
      expect({purged: result.purged, left: await dlqCount(t)}).to.deep.equal({purged: 2000, left: 0})
    })

    it('--group leaves an entry that failed again after the selection was taken (its new version is re-checked against the whole selector)', async () => {
      const hourAgo = new Date(Date.now() - 3_600_000)
      await insertDlq(t, [
        {jobKey: 'k1', queue: 'mail', lastError: 'SMTP 421 for user 1', failedAt: hourAgo},
        {jobKey: 'k2', queue: 'mail', lastError: 'SMTP 421 for user 2', failedAt: hourAgo},
      ])
      const group = fingerprint('send_email', 'SMTP 421 for user 1').fingerprint
      const selector = await selectionAsOfNow(t.db, {group, queues: ['mail']})
      // Between the walk's read and its lock, k1's job fails again (the crate's upsert: same
      // failure group, failed_at = now), and k2 is moved to another queue by a capture's upsert.
      const db = Object.create(t.db) as Database
      db.transaction = (run) =>
        t.db.transaction((tx) => {
          const locking = Object.create(tx) as Database
          locking.rows = (async (statement: {id: string}, params: unknown[]) => {
            if (statement.id === 'dlq.lock_ids') {
              await t.query(
                `update ${t.quoted}.backfill_dlq set failed_at = now(), failure_count = failure_count + 1, last_error = to_jsonb('SMTP 421 for user 9'::text) where job_key = 'k1'`,
              )
              await t.query(`update ${t.quoted}.backfill_dlq set queue_name = 'other' where job_key = 'k2'`)
            }
            return tx.rows(statement as never, params as never)
          }) as Database['rows']
          return run(locking)
        })
      const result = await purgeDlq(db, {selector, batchSize: 10})
      expect(result.purged).to.equal(0)
      expect(await dlqCount(t)).to.equal(2)
    })

    it('purges only what the selector matches (older-than, group, limit)', async () => {
      const old = new Date(Date.now() - 40 * 86_400_000)
      await insertDlq(t, [
        {failedAt: old, lastError: 'gone 1'},
        {failedAt: old, lastError: 'gone 2'},
        {lastError: 'gone 3'},
        {failedAt: old, lastError: 'other'},
      ])
      const group = fingerprint('send_email', 'gone 9').fingerprint
      const result = await purgeDlq(t.db, {selector: {until: new Date(Date.now() - 30 * 86_400_000), group}})
      expect(result.purged).to.equal(2)
      const left = await t.query<{e: string}>(
        `select last_error #>> '{}' as e from ${t.quoted}.backfill_dlq order by id`,
      )
      expect(left.map((r) => r.e)).to.deep.equal(['gone 3', 'other'])
      expect((await purgeDlq(t.db, {selector: {limit: 1}})).purged).to.equal(1)
      expect(await dlqCount(t)).to.equal(1)
    })
  })

  describe("capture (the worker's statement, audited)", () => {
    it('dry run counts; a run moves and writes an audit row per batch with the ids', async () => {
      const made = await t.query<{id: string}>(
        `select (${t.quoted}.add_job('resize', json_build_object('n', n), max_attempts => 1)).id from generate_series(1, 5) n`,
      )
      for (const job of made) await exhaust(t, job.id)
      const dry = await captureNow(t.db, {dryRun: true})
      expect(dry).to.include({dryRun: true, captured: 0})
      expect(dry.waiting.total).to.equal(5)
      expect(await dlqCount(t)).to.equal(0)
      const run = await captureNow(t.db, {
        batchSize: 2,
        reason: 'workers without DLQ',
        actor: {osUser: 'ops', hostname: 'box'},
      })
      expect(run).to.include({captured: 5, batches: 3})
      const audit = await t.query<{
        action: string
        count: number
        job_ids: string[]
        dlq_ids: string[]
        os_user: string
        reason: string
      }>(`select action, count, job_ids, dlq_ids, os_user, reason from ${t.quoted}.backfill_dlq_audit order by id`)
      expect(audit.map((a) => a.count)).to.deep.equal([2, 2, 1])
      expect(audit.flatMap((a) => a.job_ids).sort()).to.deep.equal(made.map((m) => m.id).sort())
      expect(
        audit.every((a) => a.action === 'capture' && a.os_user === 'ops' && a.reason === 'workers without DLQ'),
      ).to.equal(true)
      const [history] = await dlqHistory(t.db, {action: 'capture'})
      expect(history).to.include({count: 5, batches: 3})
    })
  })
})
