import {expect} from 'chai'
import pg from 'pg'

import {Database} from '../../src/lib/db.js'
import {QueueMetricsExporter} from '../../src/lib/metrics/exporter.js'
import {AdvisoryLeader} from '../../src/lib/metrics/leader.js'
import {collectQueueMetrics, OTHER_LABEL, PARALLEL_LABEL} from '../../src/lib/metrics/queue-metrics.js'
import {insertDlq} from '../support/dlq.js'
import {TestSchema} from '../support/db.js'
import {lockedJob, poolId, registerWorker} from '../support/locks.js'
import {addJobs} from '../support/worker.js'

/** Parses Prometheus text into `name{labels}` → value (labels as printed, in order). */
function series(text: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const at = line.lastIndexOf(' ')
    out.set(line.slice(0, at), Number(line.slice(at + 1)))
  }
  return out
}

async function waitUntil(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

describe('queue metrics (real PostgreSQL)', function () {
  this.timeout(60_000)
  let t: TestSchema

  beforeEach(async () => {
    t = await TestSchema.create({migrated: true, prefix: 'qm'})
  })
  afterEach(async () => {
    await t.drop()
  })

  /** Known jobs: what each gauge must say about them. */
  async function seed(): Promise<void> {
    await addJobs(t, 3, {task: 'send_email'}) // ready
    await t.query(`select ${t.quoted}.add_job('send_email', '{}', run_at => now() + interval '1 hour')`) // scheduled
    await t.query(`select ${t.quoted}.add_job('resize', '{}', run_at => now() - interval '10 minutes')`) // ready, 10 min old
    // retrying: failed once, back in backoff (scheduled)
    const [retrying] = await t.query<{id: string}>(`select id from ${t.quoted}.add_job('resize', '{}')`)
    await t.query(
      `update ${t.quoted}._private_jobs set attempts = 1, run_at = now() + interval '5 minutes' where id = $1`,
      [retrying!.id],
    )
    // exhausted: out of attempts, unlocked
    const [exhausted] = await t.query<{id: string}>(
      `select id from ${t.quoted}.add_job('resize', '{}', max_attempts => 2)`,
    )
    await t.query(`update ${t.quoted}._private_jobs set attempts = 2 where id = $1`, [exhausted!.id])
    await addJobs(t, 2, {task: 'sync', queue: 'tenant-1'})
    // a dead worker's job lock (and its queue lock) and a live one's
    const dead = poolId()
    await registerWorker(t, dead, {heartbeatAgo: '10 minutes'})
    await lockedJob(t, {task: 'sync', queue: 'tenant-2', owner: dead, lockedAgo: '11 minutes'})
    await insertDlq(t, [
      {task: 'charge', lastError: 'card 4242 declined'},
      {task: 'charge', lastError: 'card 1111 declined'},
      {task: 'charge', lastError: 'gateway timeout after 30s'},
      {task: 'resize', lastError: 'bad image'},
    ])
    await t.query(
      `insert into ${t.quoted}.backfill_dlq_audit (action, count) values ('retry', 5), ('retry', 2), ('purge', 3)`,
    )
  }

  it('collects every state per task and queue, oldest ready age, DLQ, failure groups, locks and workers', async () => {
    await seed()
    const snapshot = await collectQueueMetrics(t.db, {restartGrace: false})
    const task = (name: string) => snapshot.tasks.find((x) => x.task === name)
    expect(task('send_email')?.states).to.deep.equal({ready: 3, scheduled: 1, running: 0, retrying: 0, exhausted: 0})
    expect(task('resize')?.states).to.deep.equal({ready: 1, scheduled: 1, running: 0, retrying: 1, exhausted: 1})
    expect(task('resize')?.oldestReadyAgeSeconds).to.be.within(599, 700)
    expect(task('resize')?.dlq).to.equal(1)
    expect(task('charge')).to.include({dlq: 3, failureGroups: 2})
    expect(task('sync')?.states).to.include({ready: 2, running: 1})
    const queue = (name: string) => snapshot.queues.find((x) => x.queue === name)
    expect(queue('tenant-1')?.states.ready).to.equal(2)
    expect(queue('tenant-2')?.states.running).to.equal(1)
    expect(queue(PARALLEL_LABEL)?.states).to.include({ready: 4, scheduled: 2, exhausted: 1})
    const lock = (kind: string, liveness: string) =>
      snapshot.locks.find((l) => l.kind === kind && l.liveness === liveness)?.count
    expect(lock('job', 'dead')).to.equal(1)
    expect(lock('queue', 'dead')).to.equal(1)
    expect(lock('job', 'live')).to.equal(0)
    expect(snapshot.workers.find((w) => w.runtime === 'backfill' && w.state === 'dead')?.count).to.equal(1)
    expect(snapshot.audit).to.deep.equal({retry: 7, purge: 3})
  })

  it('folds tasks and queues beyond the top N into (other)', async () => {
    for (const [i, n] of [5, 4, 3, 2, 1].entries()) await addJobs(t, n, {task: `t${i}`})
    for (const [i, n] of [3, 2, 1].entries()) await addJobs(t, n, {task: 'q', queue: `q${i}`})
    const snapshot = await collectQueueMetrics(t.db, {topTasks: 2, topQueues: 1})
    expect(snapshot.tasks.map((x) => [x.task, x.states.ready])).to.deep.equal([
      ['q', 6],
      ['t0', 5],
      [OTHER_LABEL, 10],
    ])
    expect(snapshot.queues.map((x) => [x.queue, x.states.ready])).to.deep.equal([
      [PARALLEL_LABEL, 15],
      ['q0', 3],
      [OTHER_LABEL, 3],
    ])
  })

  it('serves the snapshot as Prometheus series', async () => {
    await seed()
    const exporter = new QueueMetricsExporter(t.db, {intervalMs: 60_000, restartGrace: false})
    await exporter.start()
    try {
      const text = await exporter.registry!.metrics()
      const s = series(text)
      expect(s.get('backfill_jobs{task="send_email",state="ready"}')).to.equal(3)
      expect(s.get('backfill_jobs{task="resize",state="exhausted"}')).to.equal(1)
      expect(s.get('backfill_queue_jobs{queue="(parallel)",state="ready"}')).to.equal(4)
      expect(s.get('backfill_jobs_oldest_ready_age_seconds{task="resize"}')).to.be.within(599, 700)
      expect(s.get('backfill_dlq_entries{task="charge"}')).to.equal(3)
      expect(s.get('backfill_dlq_failure_groups{task="charge"}')).to.equal(2)
      expect(s.get('backfill_locks{kind="job",liveness="dead"}')).to.equal(1)
      expect(s.get('backfill_workers{runtime="backfill",state="dead"}')).to.equal(1)
      expect(s.get('backfill_dlq_audited_total{action="retry"}')).to.equal(7)
      // A second scan replaces the values (counters carry the table totals, not a sum of scans).
      await t.query(`insert into ${t.quoted}.backfill_dlq_audit (action, count) values ('purge', 1)`)
      await exporter.tick()
      const again = series(await exporter.registry!.metrics())
      expect(again.get('backfill_dlq_audited_total{action="retry"}')).to.equal(7)
      expect(again.get('backfill_dlq_audited_total{action="purge"}')).to.equal(4)
      // Failure groups are regrouped only when the DLQ changed, and then they are current.
      expect(again.get('backfill_dlq_failure_groups{task="charge"}')).to.equal(2)
      await insertDlq(t, [{task: 'charge', lastError: 'fraud check refused'}])
      await exporter.tick()
      expect(series(await exporter.registry!.metrics()).get('backfill_dlq_failure_groups{task="charge"}')).to.equal(3)
      await t.query(`delete from ${t.quoted}.backfill_dlq where last_error::text like '%gateway%'`)
      await exporter.tick()
      const after = series(await exporter.registry!.metrics())
      expect(after.get('backfill_dlq_failure_groups{task="charge"}')).to.equal(2)
      expect(after.get('backfill_dlq_entries{task="charge"}')).to.equal(3)
    } finally {
      await exporter.stop()
    }
  })

  it('elects one leader among exporters; the lead moves when the leader goes away', async () => {
    await addJobs(t, 2, {task: 'a'})
    const dbs = [0, 1].map(() => Database.connect({target: t.db.target, schema: t.db.schema, max: 2}))
    const exporters = dbs.map((db) => new QueueMetricsExporter(db, {intervalMs: 200, leaderElection: true}))
    try {
      await Promise.all(exporters.map((e) => e.start()))
      await waitUntil('one leader', () => exporters.filter((e) => e.isLeader).length === 1)
      const leader = exporters.find((e) => e.isLeader)!
      const other = exporters.find((e) => !e.isLeader)!
      expect(leader.registry).to.not.equal(undefined)
      expect(other.registry, 'a follower exports no queue series').to.equal(undefined)
      // Stay stable over several rounds.
      await new Promise((r) => setTimeout(r, 800))
      expect(leader.isLeader && !other.isLeader).to.equal(true)
      await leader.stop()
      await waitUntil('the other exporter takes the lead', () => other.isLeader && other.registry !== undefined)
      expect(series(await other.registry!.metrics()).get('backfill_jobs{task="a",state="ready"}')).to.equal(2)
    } finally {
      await Promise.all(exporters.map((e) => e.stop()))
      await Promise.all(dbs.map((db) => db.end()))
    }
  })

  it('a leader whose session is terminated loses the lead, and another process takes it', async () => {
    const a = new AdvisoryLeader({target: t.db.target, key: `test:${t.schema}`})
    const b = new AdvisoryLeader({target: t.db.target, key: `test:${t.schema}`})
    try {
      expect(await a.tryLead()).to.equal(true)
      expect(await b.tryLead()).to.equal(false)
      const admin = new pg.Client({connectionString: t.url})
      await admin.connect()
      try {
        const killed = await admin.query(
          `select pg_terminate_backend(a.pid) from pg_stat_activity a
           where a.application_name = $1 and exists (select 1 from pg_locks l where l.pid = a.pid and l.locktype = 'advisory' and l.granted)`,
          [`backfill-leader:test:${t.schema}`],
        )
        expect(killed.rowCount).to.equal(1)
      } finally {
        await admin.end()
      }
      await waitUntil('b leads', async () => (await b.tryLead()) && !(await a.tryLead()))
      expect(a.isLeader).to.equal(false)
    } finally {
      await a.close()
      await b.close()
    }
  })
})
