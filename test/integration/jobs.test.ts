import {expect} from 'chai'

import {dlqHistory} from '../../src/lib/dlq/audit.js'
import {UsageError} from '../../src/lib/errors.js'
import {
  failJobs,
  performJobAction,
  removeJobs,
  rescheduleJobs,
  runJobsNow,
  selectJobs,
} from '../../src/lib/jobs/actions.js'
import {listJobs} from '../../src/lib/jobs/list.js'
import {buildJobSelector, type JobSelector} from '../../src/lib/jobs/selector.js'
import {showJob} from '../../src/lib/jobs/show.js'
import {
  classifySkipped,
  failJobsBatch,
  moveJobsToDlqBatch,
  removeJobsBatch,
  rescheduleJobsBatch,
  runJobsNowBatch,
} from '../../src/lib/sql/jobs-actions.js'
import {SEEN_AT_SQL, SEEN_VERSION_SQL} from '../../src/lib/sql/jobs-select.js'
import {rustAddJobSql, rustAddJobsSql, rustMigration19Sql} from '../fixtures/rust.js'
import {TestSchema} from '../support/db.js'
import {addJob, craftStates, dlqJobIds, jobExists, setJob, type CraftedJobs} from '../support/jobs.js'

const liveness = {restartGrace: false}

async function ids(t: TestSchema, selector: JobSelector): Promise<string[]> {
  const page = await listJobs(t.db, {selector: {...selector, limit: 1000}, liveness})
  return page.jobs.map((j) => j.id).sort((a, b) => Number(a) - Number(b))
}

const sorted = (...values: string[]): string[] => [...values].sort((a, b) => Number(a) - Number(b))

describe('jobs (library against PostgreSQL)', () => {
  let t: TestSchema
  beforeEach(async () => {
    t = await TestSchema.create({migrated: true, prefix: 'jobs'})
  })
  afterEach(async () => {
    await t.drop()
  })

  describe('states', () => {
    it('derives each state from graphile columns, with the owner liveness of running jobs', async () => {
      const c = await craftStates(t)
      const {jobs} = await listJobs(t.db, {liveness})
      const state = Object.fromEntries(jobs.map((j) => [j.id, j.state]))
      expect(state).to.deep.equal({
        [c.ready]: 'ready',
        [c.scheduled]: 'scheduled',
        [c.retrying]: 'retrying',
        [c.exhausted]: 'exhausted',
        [c.running]: 'running',
        [c.queueHead]: 'running',
        [c.blocked]: 'blocked',
      })
      const running = jobs.find((j) => j.id === c.running)!
      expect(running.owner).to.include({id: c.deadOwner, liveness: 'dead', family: 'node'})
      expect(jobs.find((j) => j.id === c.queueHead)!.owner).to.include({liveness: 'unknown'})
      expect(jobs.find((j) => j.id === c.blocked)!.queueLockedBy).to.match(/^pool-/)
      expect(jobs.find((j) => j.id === c.ready)!.owner).to.equal(null)
    })

    it('--state selects each state alone and in combination', async () => {
      const c = await craftStates(t)
      expect(await ids(t, {states: ['ready']})).to.deep.equal([c.ready])
      expect(await ids(t, {states: ['scheduled']})).to.deep.equal([c.scheduled])
      expect(await ids(t, {states: ['retrying']})).to.deep.equal([c.retrying])
      expect(await ids(t, {states: ['exhausted']})).to.deep.equal([c.exhausted])
      expect(await ids(t, {states: ['blocked']})).to.deep.equal([c.blocked])
      expect(await ids(t, {states: ['running']})).to.deep.equal(sorted(c.running, c.queueHead))
      expect(await ids(t, {states: ['ready', 'blocked']})).to.deep.equal(sorted(c.ready, c.blocked))
    })

    it('a job whose run_at passes moves from scheduled to ready; a released queue unblocks', async () => {
      const c = await craftStates(t)
      await setJob(t, c.scheduled, `run_at = now() - interval '1 second'`)
      await t.query(`update ${t.quoted}._private_job_queues set locked_at = null, locked_by = null`)
      expect(await ids(t, {states: ['ready']})).to.deep.equal(sorted(c.ready, c.scheduled, c.blocked))
    })
  })

  describe('selectors', () => {
    let c: CraftedJobs
    beforeEach(async () => {
      c = await craftStates(t)
    })

    it('ids, task, queue (serial name or the parallel bucket) and job key', async () => {
      expect(await ids(t, {ids: [c.ready, c.exhausted]})).to.deep.equal(sorted(c.ready, c.exhausted))
      expect(await ids(t, {tasks: ['resize_image']})).to.deep.equal(sorted(c.retrying, c.exhausted))
      expect(await ids(t, {queues: ['account:42']})).to.deep.equal(sorted(c.queueHead, c.blocked))
      expect(await ids(t, {queues: ['']})).to.deep.equal(
        sorted(c.ready, c.scheduled, c.retrying, c.exhausted, c.running),
      )
      expect(await ids(t, {jobKeys: ['mail:1']})).to.deep.equal([c.ready])
      expect(await ids(t, {tasks: ['nope']})).to.deep.equal([])
    })

    it('error text, flags and priority ranges', async () => {
      const flagged = await addJob(t, 'send_email', {flags: ['tenant:9'], priority: -10})
      expect(await ids(t, {error: 'NOT FOUND'})).to.deep.equal([c.exhausted])
      expect(await ids(t, {flags: ['tenant:9']})).to.deep.equal([flagged])
      expect(await ids(t, {priorities: [{min: -32768, max: -1}]})).to.deep.equal([flagged])
      expect(await ids(t, {priorities: [{min: 5, max: 5}]})).to.deep.equal([c.scheduled])
      expect(
        await ids(t, {
          priorities: [
            {min: 5, max: 5},
            {min: -10, max: -10},
          ],
        }),
      ).to.deep.equal(sorted(flagged, c.scheduled))
    })

    it('--since/--until on created_at, or on run_at with the time field', async () => {
      await setJob(t, c.ready, `created_at = now() - interval '3 days'`)
      const selector = buildJobSelector({olderThan: '2d'})
      expect(await ids(t, selector)).to.deep.equal([c.ready])
      expect(await ids(t, buildJobSelector({since: '1d'}))).to.not.include(c.ready)
      // Due within the next two hours, from now on: the scheduled and the retrying job.
      const due = buildJobSelector({since: new Date(), until: new Date(Date.now() + 2 * 3600_000), timeField: 'run-at'})
      expect(await ids(t, due)).to.deep.equal(sorted(c.scheduled, c.retrying))
    })

    it('errors name the input by the caller\u2019s label, and the library default names no flag', () => {
      const labelled = (fn: () => unknown): string => {
        try {
          fn()
        } catch (error) {
          expect(error).to.be.instanceOf(UsageError)
          return (error as Error).message
        }
        throw new Error('expected a UsageError')
      }
      expect(labelled(() => buildJobSelector({states: ['stuck']}, {labels: {states: '--state'}}))).to.contain('--state')
      expect(labelled(() => buildJobSelector({states: ['stuck']}))).to.match(/^invalid state "stuck"/)
      expect(labelled(() => buildJobSelector({since: 'soon'}))).to.match(/^invalid since/)
      expect(labelled(() => buildJobSelector({since: 'soon'}, {labels: {since: 'from'}}))).to.match(/^invalid from/)
      expect(labelled(() => buildJobSelector({priorities: ['5..1']}))).to.contain('5 is above 1')
      expect(labelled(() => buildJobSelector({ids: ['x']}))).to.contain('job id')
    })
  })

  describe('list', () => {
    it('pages newest first and next-to-run first with keyset cursors, every job once', async () => {
      for (let i = 0; i < 23; i++) await addJob(t, 'page', {priority: i % 3, runAt: `${-i % 5} seconds`, payload: {i}})
      for (const sort of ['newest', 'next'] as const) {
        const seen: string[] = []
        let cursor: string | undefined
        for (let pages = 0; pages < 10; pages++) {
          const page = await listJobs(t.db, {selector: {limit: 5}, sort, cursor})
          seen.push(...page.jobs.map((j) => j.id))
          if (sort === 'next')
            for (let i = 1; i < page.jobs.length; i++) {
              const [a, b] = [page.jobs[i - 1]!, page.jobs[i]!]
              expect(a.priority < b.priority || (a.priority === b.priority && a.runAt <= b.runAt)).to.equal(true)
            }
          if (!page.nextCursor) break
          cursor = page.nextCursor
        }
        expect(seen, sort).to.have.length(23)
        expect(new Set(seen).size).to.equal(23)
      }
    })

    it('next-to-run refuses running/exhausted states and cursors of another sort', async () => {
      await addJob(t, 'a')
      await addJob(t, 'a')
      let error: unknown
      try {
        await listJobs(t.db, {sort: 'next', selector: {states: ['running']}})
      } catch (e) {
        error = e
      }
      expect(error).to.be.instanceOf(UsageError)
      const {nextCursor} = await listJobs(t.db, {selector: {limit: 1}})
      error = undefined
      try {
        await listJobs(t.db, {sort: 'next', cursor: nextCursor!})
      } catch (e) {
        error = e
      }
      expect((error as UsageError).code).to.equal('E_BAD_CURSOR')
    })
  })

  describe('show', () => {
    it('everything about one job: state and why, owner liveness, serial queue position, DLQ history', async () => {
      const c = await craftStates(t)
      const third = await addJob(t, 'sync_account', {queue: 'account:42', key: 'acct:42:sync'})
      const blocked = await showJob(t.db, {id: third, liveness})
      expect(blocked.job.state).to.equal('blocked')
      expect(blocked.queue).to.include({name: 'account:42', ahead: 1, waiting: 2, runningJobId: c.queueHead})
      expect(blocked.why).to.contain(`held by job ${c.queueHead}`)
      const running = await showJob(t.db, {id: c.running, liveness})
      expect(running.owner).to.include({liveness: 'dead'})
      expect(running.why).to.contain('owner dead')
      const exhausted = await showJob(t.db, {id: c.exhausted})
      expect(exhausted.job.lastError).to.equal('image 7 not found')
      expect(exhausted.why).to.contain('no attempts left')

      // The DLQ story of the same job key: an earlier failure of acct:42:sync parked in the DLQ.
      await t.query(
        `insert into ${t.quoted}.backfill_dlq (task_identifier, payload, queue_name, job_key, failure_reason, last_error)
         values ('sync_account', '{}', 'account:42', 'acct:42:sync', 'Job exceeded maximum retry attempts (8/8)', to_jsonb('earlier failure'::text))`,
      )
      const byKey = await showJob(t.db, {jobKey: 'acct:42:sync'})
      expect(byKey.job.id).to.equal(third)
      expect(byKey.dlq?.entries.map((e) => e.errorText)).to.deep.equal(['earlier failure'])
      expect(byKey.payloadText).to.equal('{}')
    })

    it('a missing job is a precondition error (exit 4)', async () => {
      let error: unknown
      try {
        await showJob(t.db, {id: '999999'})
      } catch (e) {
        error = e
      }
      expect(error).to.include({code: 'E_NOT_FOUND', exitCode: 4})
    })
  })

  describe('actions', () => {
    it('a dry run (selectJobs) changes nothing and counts per task, leaving out running jobs', async () => {
      const c = await craftStates(t)
      const before = await t.jobs()
      const selection = await selectJobs(t.db, {action: 'remove', selector: {}})
      expect(selection.count).to.equal(5)
      expect(selection.matched).to.equal(7)
      expect(selection.excluded).to.deep.equal({running: 2})
      expect(selection.byTask).to.deep.equal([
        {taskIdentifier: 'resize_image', count: 2},
        {taskIdentifier: 'send_email', count: 2},
        {taskIdentifier: 'sync_account', count: 1},
      ])
      expect(selection.sample.map((j) => j.id)).to.deep.equal(
        sorted(c.ready, c.scheduled, c.retrying, c.exhausted, c.blocked),
      )
      expect(JSON.parse(JSON.stringify(selection))).to.not.have.property('ids')
      expect(await t.jobs()).to.deep.equal(before)
    })

    it('remove deletes what was selected, never a running job, and writes audit rows', async () => {
      const c = await craftStates(t)
      const result = await removeJobs(t.db, {selector: {tasks: ['send_email', 'sync_account']}, reason: 'cleanup'})
      expect(result.done).to.equal(3)
      expect(result.byTask).to.deep.equal({send_email: 2, sync_account: 1})
      for (const id of [c.ready, c.scheduled, c.blocked]) expect(await jobExists(t, id)).to.equal(false)
      for (const id of [c.running, c.queueHead, c.retrying, c.exhausted]) expect(await jobExists(t, id)).to.equal(true)
      const [run] = await dlqHistory(t.db, {limit: 5})
      expect(run).to.include({action: 'jobs.remove', count: 3, reason: 'cleanup', run: result.run})
      expect(run!.selection).to.deep.equal({tasks: ['send_email', 'sync_account']})
    })

    it('a batch reaches its jobs through the primary key, never a scan of the whole queue', async () => {
      // Issue 14: joined only to the unnest of the batch, the planner scanned every job per batch.
      await t.query(`insert into ${t.quoted}._private_tasks (identifier) values ('bulk')`)
      await t.query(
        `insert into ${t.quoted}._private_jobs (task_id, payload, run_at)
         select (select id from ${t.quoted}._private_tasks where identifier = 'bulk'), '{}', now() + interval '1 hour'
         from generate_series(1, 50000)`,
      )
      await t.query(`analyze ${t.quoted}._private_jobs`)
      const [batch] = await t.query<{ids: string[]; seen_at: string[]; seen_version: string[]}>(
        `select array_agg(id) as ids, array_agg(${SEEN_AT_SQL}) as seen_at, array_agg(${SEEN_VERSION_SQL}) as seen_version
         from (select * from ${t.quoted}._private_jobs order by id limit 2000) j`,
      )
      const wanted = [batch!.ids, batch!.seen_at, batch!.seen_version]
      const cases = [
        {statement: removeJobsBatch, params: wanted},
        {statement: moveJobsToDlqBatch, params: [...wanted, 'reason']},
        {statement: failJobsBatch, params: [...wanted, null]},
        {statement: runJobsNowBatch, params: [...wanted, true, null, null, null, null]},
        {statement: rescheduleJobsBatch, params: [...wanted, false, new Date(), null, null, null]},
        {statement: classifySkipped, params: [...wanted, 'remove', false, null]},
      ]
      for (const {statement, params} of cases) {
        const [{'QUERY PLAN': plan}] = (await t.query(`explain (format json) ${statement.sql(t.quoted)}`, params)) as [
          {'QUERY PLAN': unknown},
        ]
        const scans: string[] = []
        const walk = (node: Record<string, unknown>): void => {
          if (node['Relation Name'] === '_private_jobs') scans.push(node['Node Type'] as string)
          for (const child of (node.Plans as Record<string, unknown>[] | undefined) ?? []) walk(child)
        }
        walk((plan as [{Plan: Record<string, unknown>}])[0].Plan)
        expect(scans, statement.id).to.not.be.empty
        expect(scans, statement.id).to.not.include('Seq Scan')
      }
    })

    it('acts on the selection as confirmed: jobs enqueued or changed after it are left alone', async () => {
      const a = await addJob(t, 'send_email')
      const b = await addJob(t, 'send_email')
      const selection = await selectJobs(t.db, {action: 'remove', selector: {tasks: ['send_email']}})
      const late = await addJob(t, 'send_email')
      // b fails an attempt in the meantime (graphile's fail leaves updated_at alone: attempts tell).
      await setJob(t, b, `attempts = attempts + 1, last_error = 'flaky', run_at = now() + interval '1 minute'`)
      const result = await performJobAction(t.db, {selection})
      expect(result.done).to.equal(1)
      expect(result.skipped.changed).to.equal(1)
      expect(result.skippedSample).to.deep.equal([{jobId: b, reason: 'changed', state: 'retrying'}])
      expect(await jobExists(t, a)).to.equal(false)
      expect(await jobExists(t, b)).to.equal(true)
      expect(await jobExists(t, late)).to.equal(true)
      const [run] = await dlqHistory(t.db, {limit: 1})
      expect(run).to.include({count: 1, skipped: 1})
    })

    it('a job a worker takes between confirmation and action is skipped as running', async () => {
      const a = await addJob(t, 'send_email')
      const selection = await selectJobs(t.db, {action: 'fail', selector: {ids: [a]}})
      await setJob(t, a, `locked_at = now(), locked_by = 'pool-abc', attempts = attempts + 1`)
      const result = await performJobAction(t.db, {selection})
      expect(result.done).to.equal(0)
      expect(result.skipped.running).to.equal(1)
    })

    it('remove --to-dlq moves jobs into backfill_dlq with the reason, in one statement per batch', async () => {
      const c = await craftStates(t)
      const result = await removeJobs(t.db, {selector: {tasks: ['resize_image']}, toDlq: true, reason: 'bad images'})
      expect(result).to.include({done: 2, movedToDlq: 2})
      expect(await dlqJobIds(t)).to.deep.equal(sorted(c.retrying, c.exhausted))
      const rows = await t.query<{failure_reason: string; last_error: unknown}>(
        `select failure_reason, last_error from ${t.quoted}.backfill_dlq order by original_job_id`,
      )
      expect(rows.map((r) => r.failure_reason)).to.deep.equal([
        'Removed by an operator: bad images',
        'Removed by an operator: bad images',
      ])
      expect(rows.map((r) => r.last_error)).to.deep.equal(['timeout after 30s', 'image 7 not found'])
      const [run] = await dlqHistory(t.db, {limit: 1})
      expect(run).to.include({action: 'jobs.move-to-dlq', count: 2})
    })

    it('fail marks jobs permanently failed (skipping exhausted ones); --capture moves them at once', async () => {
      const c = await craftStates(t)
      const result = await failJobs(t.db, {selector: {tasks: ['resize_image']}, reason: 'never works'})
      expect(result.done).to.equal(1)
      expect(result.skipped.not_applicable).to.equal(0)
      const [row] = await t.query<{attempts: number; max_attempts: number; last_error: string}>(
        `select attempts, max_attempts, last_error from ${t.quoted}._private_jobs where id = $1`,
        [c.retrying],
      )
      expect(row).to.deep.equal({attempts: 8, max_attempts: 8, last_error: 'never works'})

      const captured = await failJobs(t.db, {selector: {ids: [c.ready, c.scheduled]}, capture: true})
      expect(captured).to.include({done: 2, movedToDlq: 2})
      expect(await dlqJobIds(t)).to.deep.equal(sorted(c.ready, c.scheduled))
      const reasons = await t.query<{failure_reason: string}>(`select failure_reason from ${t.quoted}.backfill_dlq`)
      expect(reasons.every((r) => r.failure_reason === 'Failed by an operator')).to.equal(true)
    })

    it('run-now makes scheduled and retrying jobs due, keeping attempts unless reset', async () => {
      const c = await craftStates(t)
      const result = await runJobsNow(t.db, {selector: {}})
      // scheduled and retrying; ready/blocked are due already, exhausted needs a reset, running never.
      expect(result.done).to.equal(2)
      expect(await ids(t, {states: ['ready']})).to.deep.equal(sorted(c.ready, c.scheduled, c.retrying))
      const [retrying] = await t.query<{attempts: number}>(
        `select attempts from ${t.quoted}._private_jobs where id = $1`,
        [c.retrying],
      )
      expect(retrying!.attempts).to.equal(2)
      const revived = await runJobsNow(t.db, {selector: {states: ['exhausted']}, resetAttempts: true})
      expect(revived.done).to.equal(1)
      expect(await ids(t, {states: ['exhausted']})).to.deep.equal([])
    })

    it('reschedule sets run_at (or a delay), priority and max attempts through reschedule_jobs', async () => {
      const c = await craftStates(t)
      const runAt = new Date(Date.now() + 3_600_000)
      const result = await rescheduleJobs(t.db, {selector: {tasks: ['send_email']}, runAt, priority: -5})
      expect(result.done).to.equal(2) // ready and scheduled; the running one is skipped
      const rows = await t.query<{id: string; priority: number; run_at: Date}>(
        `select id::text, priority, run_at from ${t.quoted}._private_jobs where id = any($1::bigint[]) order by id`,
        [[c.ready, c.scheduled]],
      )
      for (const row of rows) {
        expect(row.priority).to.equal(-5)
        expect(row.run_at.getTime()).to.be.closeTo(runAt.getTime(), 1)
      }
      const delayed = await rescheduleJobs(t.db, {selector: {ids: [c.retrying]}, delayMs: 7_200_000, maxAttempts: 20})
      expect(delayed.done).to.equal(1)
      const [retrying] = await t.query<{max_attempts: number; in_s: number}>(
        `select max_attempts, extract(epoch from run_at - now())::int as in_s from ${t.quoted}._private_jobs where id = $1`,
        [c.retrying],
      )
      expect(retrying!.max_attempts).to.equal(20)
      expect(retrying!.in_s).to.be.within(7150, 7200)
      let error: unknown
      try {
        await rescheduleJobs(t.db, {selector: {ids: [c.ready]}})
      } catch (e) {
        error = e
      }
      expect(error).to.be.instanceOf(UsageError)
    })

    it('two operators acting at once change each job once', async () => {
      for (let i = 0; i < 300; i++) await addJob(t, 'send_email', {runAt: '1 hour'})
      const [a, b] = await Promise.all([
        selectJobs(t.db, {action: 'run_now', selector: {tasks: ['send_email']}}),
        selectJobs(t.db, {action: 'run_now', selector: {tasks: ['send_email']}}),
      ])
      const [ra, rb] = await Promise.all([
        performJobAction(t.db, {selection: a!, batchSize: 25}),
        performJobAction(t.db, {selection: b!, batchSize: 25}),
      ])
      expect(ra.done + rb.done).to.equal(300)
      expect(ra.done + rb.done + ra.skipped.changed + rb.skipped.changed).to.equal(600)
      const audited = await t.query<{n: number}>(
        `select coalesce(sum(count), 0)::int as n from ${t.quoted}.backfill_dlq_audit where action = 'jobs.run-now'`,
      )
      expect(audited[0]!.n).to.equal(300)
    })

    it('operates jobs enqueued by plain SQL add_job and by the Rust port\u2019s SQL', async () => {
      await t.db.execScript(rustMigration19Sql(t.quoted, t.schema))
      // The Rust port's own statements, against its migration 19 add_job/add_jobs bodies.
      const [rust] = await t.query<{id: string}>(rustAddJobSql(t.quoted), [
        'rust_task',
        '{"from":"rust"}',
        null,
        new Date(Date.now() + 300_000),
        8,
        'rust:1',
        -5,
        null,
        'replace',
      ])
      const [rustBatch] = await t.query<{id: string}>(rustAddJobsSql(t.quoted), [
        JSON.stringify([{identifier: 'rust_task', payload: {batch: 1}, queue_name: 'rust_serial', max_attempts: 8}]),
        false,
      ])
      const node = await addJob(t, 'node_task', {runAt: '5 minutes'})
      expect(await ids(t, {tasks: ['rust_task']})).to.deep.equal(sorted(rust!.id, rustBatch!.id))
      const now = await runJobsNow(t.db, {selector: {tasks: ['rust_task', 'node_task']}})
      expect(now.done).to.equal(2) // the scheduled ones; the batch job is due already
      const removed = await removeJobs(t.db, {selector: {tasks: ['rust_task', 'node_task']}, toDlq: true})
      expect(removed.done).to.equal(3)
      expect(await dlqJobIds(t)).to.deep.equal(sorted(rust!.id, rustBatch!.id, node))
      const [serial] = await t.query<{queue_name: string}>(
        `select queue_name from ${t.quoted}.backfill_dlq where original_job_id = $1`,
        [rustBatch!.id],
      )
      expect(serial!.queue_name).to.equal('rust_serial')
    })
  })
})
