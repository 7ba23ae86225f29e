import {expect} from 'chai'
import pg from 'pg'

import {captureExhausted} from '../../src/lib/dlq/capture.js'
import {backfillFingerprints} from '../../src/lib/dlq/fingerprint-store.js'
import {purgeDlq} from '../../src/lib/dlq/purge.js'
import {retryDlq} from '../../src/lib/dlq/retry.js'
import type {DlqSelector} from '../../src/lib/dlq/selector.js'
import {dlqStats, type DlqStats, type StatsSource} from '../../src/lib/dlq/stats.js'
import {schemaStatus} from '../../src/lib/health/doctor.js'
import {runChecks} from '../../src/lib/health/check.js'
import {queueStatus} from '../../src/lib/health/status.js'
import {BACKFILL_SCHEMA_VERSION, GROUP_COUNTS_TRIGGERS} from '../../src/lib/schema/backfill-objects.js'
import {initDlq, migrate} from '../../src/lib/schema/migrate.js'
import {printSchemaSql} from '../../src/lib/schema/print.js'
import {targetFromUrl} from '../../src/lib/connection.js'
import {Database} from '../../src/lib/db.js'
import {parseSchemaName} from '../../src/lib/identifiers.js'
import {sql, testDatabaseName, TestSchema, urlForDatabase} from '../support/db.js'
import {insertDlq, type DlqRowSpec} from '../support/dlq.js'

type Stats = Omit<DlqStats, 'durationMs'>

async function statsVia(
  t: TestSchema,
  selector: DlqSelector,
  source: 'auto' | 'scan',
): Promise<{stats: Stats; used: StatsSource}> {
  let used: StatsSource | undefined
  const {durationMs: _, ...stats} = await dlqStats(t.db, {selector, source, onSource: (s) => (used = s)})
  return {stats, used: used!}
}

/** What backfill_dlq_group_counts should hold: a fresh count of the entries with a current fingerprint. */
async function expectCountsExact(t: TestSchema): Promise<void> {
  const kept = await t.query(
    `select task_identifier, queue_name, error_fingerprint, entries::int from ${t.quoted}.backfill_dlq_group_counts order by 1, 2, 3`,
  )
  const fresh = await t.query(
    `select task_identifier::text, queue_name::text, error_fingerprint, count(*)::int as entries from ${t.quoted}.backfill_dlq
     where error_fingerprint is not null and error_fingerprint_at = failed_at group by 1, 2, 3 order by 1, 2, 3`,
  )
  expect(kept).to.deep.equal(fresh)
}

/** Counts exact, and stats from them identical to the scan's, for the selectors the counts answer. */
async function expectStatsAgree(t: TestSchema, selectors: DlqSelector[] = [{}]): Promise<Stats> {
  await expectCountsExact(t)
  let first: Stats | undefined
  for (const selector of selectors) {
    const counted = await statsVia(t, selector, 'auto')
    const scanned = await statsVia(t, selector, 'scan')
    expect(counted.used, JSON.stringify(selector)).to.equal('group-counts')
    expect(scanned.used).to.equal('scan')
    expect(counted.stats, JSON.stringify(selector)).to.deep.equal(scanned.stats)
    first ??= counted.stats
  }
  return first!
}

async function exhaust(t: TestSchema, task: string, error: string, key?: string, queue?: string): Promise<void> {
  const [job] = await t.query<{id: string}>(
    `select id from ${t.quoted}.add_job($1, '{}'::json, job_key => $2, queue_name => $3, max_attempts => 3)`,
    [task, key ?? null, queue ?? null],
  )
  await t.query(`update ${t.quoted}._private_jobs set attempts = max_attempts, last_error = $2 where id = $1`, [
    job!.id,
    error,
  ])
}

/** The Rust crate's 1.2 move: insert, or on its job key refresh the entry (failed_at = now(); our columns untouched). */
async function rustUpsert(
  client: {query: (text: string, values?: unknown[]) => Promise<unknown>},
  quoted: string,
  row: {task: string; key: string | null; error: string; queue?: string},
): Promise<void> {
  await client.query(
    `insert into ${quoted}.backfill_dlq (original_job_id, task_identifier, payload, queue_name, priority, job_key, max_attempts, failure_reason, failure_count, last_error)
     values (1, $1, '{}'::jsonb, $2, 0, $3, 8, 'Job exceeded maximum retry attempts (8/8)', 1, to_jsonb($4::text))
     on conflict (job_key) where job_key is not null do update set failed_at = now(),
       failure_count = backfill_dlq.failure_count + 1, failure_reason = excluded.failure_reason,
       last_error = excluded.last_error, original_job_id = excluded.original_job_id`,
    [row.task, row.queue ?? '', row.key, row.error],
  )
}

/**
 * Two sessions for a deadlock with a known victim: PostgreSQL checks for a deadlock once per
 * wait, after deadlock_timeout, and the session whose check finds it is the victim. The first
 * waiter (db) checks after 5 s, well after the second (other) has joined the cycle even on a
 * loaded machine (with the default 1 s it sometimes checked too early, found nothing, and the
 * second became the victim); other's 60 s never come.
 */
async function deadlockSessions(t: TestSchema): Promise<{db: Database; other: pg.Client; end: () => Promise<void>}> {
  const pool = new pg.Pool({connectionString: t.url, max: 2, options: '-c deadlock_timeout=5s'})
  const other = new pg.Client({connectionString: t.url, options: '-c deadlock_timeout=60s'})
  await other.connect()
  const db = Database.fromPool(pool, {target: t.db.target, schema: t.db.schema})
  return {db, other, end: async () => Promise.all([pool.end(), other.end()]).then(() => undefined)}
}

/** Until a session other than the given one waits for a lock in a statement naming this test's schema. */
async function untilWaiting(t: TestSchema, except: pg.Client): Promise<void> {
  const [{pid}] = (await except.query('select pg_backend_pid() as pid')).rows as [{pid: number}]
  for (let i = 0; i < 500; i++) {
    const waiting = await t.query(
      `select 1 from pg_stat_activity where datname = current_database() and pid <> $1 and wait_event_type = 'Lock' and strpos(query, $2) > 0`,
      [pid, t.schema],
    )
    if (waiting.length > 0) return
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  throw new Error('no session waited for a lock')
}

/** 24 crate-written rows (no fingerprint) over 2 tasks, 2 queues, 2 failure groups; keys tagged so batches can repeat. */
const rowsTagged = (tag = ''): DlqRowSpec[] =>
  Array.from({length: 24}, (_, i) => ({
    task: i % 3 === 0 ? 'charge' : 'send_email',
    queue: i % 4 === 0 ? 'mail' : '',
    jobKey: i % 5 === 0 ? `key-${i}${tag}` : null,
    lastError: i % 2 === 0 ? `SMTP 421 for user ${i}` : {message: `card ${i} declined`},
    failedAt: new Date(Date.UTC(2024, 4, 1, 0, i % 7)),
  }))
const ROWS = rowsTagged()

describe('DLQ group counts kept by triggers (dlq stats without a scan)', function () {
  this.timeout(60_000)
  let t: TestSchema
  beforeEach(async () => {
    t = await TestSchema.create({migrated: true, prefix: 'dgc'})
  })
  afterEach(async () => {
    await t.drop()
  })

  it('stay exact through capture, Rust-style inserts and upserts, the fingerprint backfill, retry, purge and truncate', async () => {
    await exhaust(t, 'send_email', 'SMTP 421 for user 1')
    await exhaust(t, 'send_email', 'SMTP 421 for user 2', 'k1')
    await exhaust(t, 'charge', 'card 4242 declined', undefined, 'billing')
    expect((await captureExhausted(t.db)).captured).to.equal(3)
    const captured = await expectStatsAgree(t)
    expect(captured.total).to.equal(3)
    expect(captured.groups.map((g) => g.count)).to.deep.equal([2, 1])

    // Crate-written rows carry no fingerprint: counted from their text, not in the counts.
    await insertDlq(t, ROWS)
    const mixed = await expectStatsAgree(t, [{}, {tasks: ['charge']}, {queues: ['mail', '']}])
    expect(mixed.total).to.equal(27)
    expect((await backfillFingerprints(t.db, {batchSize: 7})).fingerprinted).to.equal(24)
    expect(await expectStatsAgree(t)).to.deep.equal(mixed)

    // The crate's upsert on a key we fingerprinted: the entry turns stale, leaves the counts, keeps its place in stats.
    await rustUpsert(t.db.pool, t.quoted, {task: 'send_email', key: 'k1', error: 'disk full on node 3'})
    await rustUpsert(t.db.pool, t.quoted, {task: 'charge', key: 'fresh', error: 'card 77 declined'})
    const upserted = await expectStatsAgree(t)
    expect(upserted.total).to.equal(28)
    expect(upserted.groups.find((g) => g.template === 'disk full on node <n>')?.count).to.equal(1)
    await backfillFingerprints(t.db)
    expect(await expectStatsAgree(t)).to.deep.equal(upserted)

    // --group answers from the counts too.
    const groups = upserted.groups.map((g) => g.fingerprint)
    await expectStatsAgree(
      t,
      groups.map((group) => ({group})),
    )

    const retried = await retryDlq(t.db, {selector: {tasks: ['charge']}, batchSize: 3})
    expect(retried.retried).to.be.greaterThan(0)
    await expectStatsAgree(t)
    const purged = await purgeDlq(t.db, {selector: {queues: ['mail']}, batchSize: 2})
    expect(purged.purged).to.be.greaterThan(0)
    const after = await expectStatsAgree(t)
    expect(after.total).to.equal(28 - retried.retried - purged.purged)

    // A group emptied by a delete leaves no zero row behind.
    await t.query(`delete from ${t.quoted}.backfill_dlq where task_identifier = 'send_email'`)
    await expectStatsAgree(t)
    const [zero] = await t.query<{n: number}>(
      `select count(*)::int as n from ${t.quoted}.backfill_dlq_group_counts where entries <= 0 or task_identifier = 'send_email'`,
    )
    expect(zero!.n).to.equal(0)

    await t.query(`truncate ${t.quoted}.backfill_dlq`)
    await expectCountsExact(t)
    const [left] = await t.query<{n: number}>(`select count(*)::int as n from ${t.quoted}.backfill_dlq_group_counts`)
    expect(left!.n).to.equal(0)
    expect((await statsVia(t, {}, 'auto')).stats.total).to.equal(0)
  })

  it('status and check --max-dlq count DLQ entries from the group counts, as the scan does', async () => {
    await insertDlq(t, ROWS)
    await backfillFingerprints(t.db)
    await insertDlq(t, rowsTagged('b').slice(0, 5)) // not fingerprinted
    const dlqOf = async (): Promise<unknown> => {
      const status = await queueStatus(t.db)
      return {
        totals: status.totals.dlq,
        dlq: status.dlq,
        tasks: status.tasks.map((task) => [task.task, task.dlq]),
        queues: status.queues.map((queue) => [queue.queue, queue.dlq]),
      }
    }
    const counted = await dlqOf()
    expect(counted).to.deep.include({totals: 29})
    expect((counted as {tasks: unknown}).tasks).to.deep.equal([
      ['charge', 10],
      ['send_email', 19],
    ])
    // The counts are what status reads: a count changed by hand shows.
    await t.query(
      `update ${t.quoted}.backfill_dlq_group_counts set entries = entries + 100 where (task_identifier, queue_name, error_fingerprint) = (select task_identifier, queue_name, error_fingerprint from ${t.quoted}.backfill_dlq_group_counts order by 1, 2, 3 limit 1)`,
    )
    expect(await dlqOf()).to.deep.include({totals: 29 + 100})
    const dlqCheck = async (): Promise<unknown> =>
      (await runChecks(t.db, {maxDlq: 1000})).checks.find((c) => c.name === 'dlq')?.actual
    expect(await dlqCheck()).to.equal(29 + 100)
    await t.query(`update ${t.quoted}.backfill_dlq_group_counts set entries = entries - 100 where entries > 100`)
    // Triggers off: the scan, same figures.
    await t.query(`alter table ${t.quoted}.backfill_dlq disable trigger ${GROUP_COUNTS_TRIGGERS[0]}`)
    expect(await dlqOf()).to.deep.equal(counted)
    expect(await dlqCheck()).to.equal(29)
  })

  it('two writers on separate connections: no lost update, no deadlock (capture + retry, two purges, a group emptied while refilled)', async () => {
    await insertDlq(t, ROWS)
    await backfillFingerprints(t.db)
    for (let i = 0; i < 6; i++) await exhaust(t, i % 2 ? 'charge' : 'send_email', `SMTP 421 for user ${100 + i}`)
    await Promise.all([captureExhausted(t.db), retryDlq(t.db, {selector: {tasks: ['send_email']}, batchSize: 2})])
    await expectStatsAgree(t)
    await insertDlq(t, rowsTagged('b'))
    await backfillFingerprints(t.db)
    await Promise.all([
      purgeDlq(t.db, {selector: {queues: ['mail']}, batchSize: 1}),
      purgeDlq(t.db, {selector: {tasks: ['charge']}, batchSize: 1}),
    ])
    await expectStatsAgree(t)

    // Interleaved by hand: A inserts into groups g1, g2 and holds them; B deletes from g2, g1 in
    // one statement and waits; A commits; B finishes. Then A empties a group (its counts row is
    // deleted) while B adds to it.
    const a = new pg.Client({connectionString: t.url})
    const b = new pg.Client({connectionString: t.url})
    await a.connect()
    await b.connect()
    try {
      const fp = (task: string, error: string): string =>
        `insert into ${t.quoted}.backfill_dlq (task_identifier, payload, failure_reason, last_error, error_fingerprint, error_fingerprint_at, failed_at)
         values ('${task}', '{}', 'x', to_jsonb('${error}'::text), '${task}-${error}', '2024-01-01', '2024-01-01')`
      await t.query(`${fp('zz1', 'e')}; ${fp('zz2', 'e')}; ${fp('zz2', 'e')}`)
      await expectCountsExact(t)
      await a.query('begin')
      await a.query(`insert into ${t.quoted}.backfill_dlq (task_identifier, payload, failure_reason, error_fingerprint, error_fingerprint_at, failed_at)
        select task, '{}', 'x', task || '-e', '2024-01-01', '2024-01-01' from unnest(array['zz1', 'zz2']) task`)
      await b.query('begin')
      const bDelete = b.query(`delete from ${t.quoted}.backfill_dlq where task_identifier in ('zz2', 'zz1')`)
      await untilWaiting(t, a) // B waits on the count row A holds
      await a.query('commit')
      await bDelete
      await b.query('commit')
      await expectCountsExact(t)

      await t.query(`${fp('zz3', 'e')}`)
      await a.query('begin')
      await a.query(`delete from ${t.quoted}.backfill_dlq where task_identifier = 'zz3'`)
      await b.query('begin')
      const bInsert = b.query(fp('zz3', 'e'))
      await untilWaiting(t, a)
      await a.query('commit')
      await bInsert
      await b.query('commit')
      await expectCountsExact(t)
      const [zz3] = await t.query<{entries: number}>(
        `select entries::int from ${t.quoted}.backfill_dlq_group_counts where task_identifier = 'zz3'`,
      )
      expect(zz3?.entries).to.equal(1)
    } finally {
      await a.end()
      await b.end()
    }
    await expectStatsAgree(t)
  })

  it("a capture chosen as the deadlock victim on two groups' count rows runs its batch again", async () => {
    // In the DLQ: a keyed entry of group F1 (plus a second F1 entry), two entries of group Fc.
    await insertDlq(t, [
      {task: 'send_email', queue: '', jobKey: 'kA', lastError: 'SMTP 421 for user 1'},
      {task: 'send_email', queue: '', jobKey: null, lastError: 'SMTP 421 for user 2'},
      {task: 'charge', queue: '', jobKey: null, lastError: 'card 1 declined'},
      {task: 'charge', queue: '', jobKey: null, lastError: 'card 2 declined'},
    ])
    await backfillFingerprints(t.db)
    // To capture: kA again with another error (its entry leaves F1: the update trigger), and a new Fc entry (the insert trigger).
    await exhaust(t, 'send_email', 'disk full on node 3', 'kA')
    await exhaust(t, 'charge', 'card 3 declined')
    const {db, other, end} = await deadlockSessions(t) // other: a purge, retry or the crate
    try {
      await other.query('begin')
      await other.query(
        `delete from ${t.quoted}.backfill_dlq where id = (select min(id) from ${t.quoted}.backfill_dlq where task_identifier = 'charge')`,
      ) // holds Fc's row
      const capture = captureExhausted(db).then(
        (r) => `captured ${r.captured}`,
        (error: Error) => `capture failed: ${error.message}`,
      )
      await untilWaiting(t, other) // capture holds F1, waits for Fc
      // Wants F1: a deadlock; the capture's check finds it, so the capture is the victim.
      const second = await other
        .query(`delete from ${t.quoted}.backfill_dlq where job_key is null and task_identifier = 'send_email'`)
        .then(
          () => 'ok',
          (error: Error) => error.message,
        )
      await other.query('commit')
      expect({second, capture: await capture}).to.deep.equal({second: 'ok', capture: 'captured 2'})
    } finally {
      await end()
    }
    expect(await t.query(`select id from ${t.quoted}._private_jobs`)).to.deep.equal([])
    await expectStatsAgree(t)
  })

  it('the fingerprint backfill chosen as the deadlock victim runs its batch again', async () => {
    const entry = (task: string, i: number): DlqRowSpec => ({
      task,
      queue: '',
      jobKey: null,
      lastError: `SMTP 421 for user ${i}`,
    })
    await insertDlq(t, [entry('aaa', 1), entry('aaa', 2), entry('zzz', 3), entry('zzz', 4)])
    await backfillFingerprints(t.db)
    await insertDlq(t, [entry('aaa', 5), entry('zzz', 6)]) // crate-written: no fingerprint yet
    const {db, other, end} = await deadlockSessions(t)
    try {
      await other.query('begin')
      await other.query(
        `delete from ${t.quoted}.backfill_dlq where id = (select min(id) from ${t.quoted}.backfill_dlq where task_identifier = 'zzz')`,
      ) // holds zzz's count row
      const backfill = backfillFingerprints(db).then(
        (r) => `fingerprinted ${r.fingerprinted}`,
        (error: Error) => `failed: ${error.message}`,
      )
      await untilWaiting(t, other) // its update took aaa's row (key order), waits for zzz's
      const second = await other
        .query(
          `delete from ${t.quoted}.backfill_dlq where id = (select min(id) from ${t.quoted}.backfill_dlq where task_identifier = 'aaa')`,
        )
        .then(
          () => 'ok',
          (error: Error) => error.message,
        )
      await other.query('commit')
      expect({second, backfill: await backfill}).to.deep.equal({second: 'ok', backfill: 'fingerprinted 2'})
    } finally {
      await end()
    }
    expect((await expectStatsAgree(t)).total).to.equal(4)
  })

  it('a role granted only backfill_dlq (the Rust service) can still insert, upsert and delete', async () => {
    const role = `dgc_rust_${Date.now().toString(36)}`
    await sql(`create role ${role} login`)
    await t.query(`grant usage on schema ${t.quoted} to ${role};
      grant select, insert, update, delete on ${t.quoted}.backfill_dlq to ${role};
      grant usage on sequence ${t.quoted}.backfill_dlq_id_seq to ${role}`)
    const rust = new pg.Client({connectionString: urlForDatabase(testDatabaseName(), role)})
    await rust.connect()
    try {
      await insertDlq(t, ROWS.slice(0, 6))
      await backfillFingerprints(t.db)
      // Without a grant on the counts table (nor EXECUTE on the trigger function) it cannot read it, yet its writes keep it exact.
      const [{may}] = (await t.query(`select has_function_privilege($1, $2::regproc, 'EXECUTE') as may`, [
        role,
        `${t.quoted}.backfill_dlq_group_counts_sync`,
      ])) as [{may: boolean}]
      expect(may).to.equal(false)
      const denied = await rust.query(`select 1 from ${t.quoted}.backfill_dlq_group_counts`).catch((e: Error) => e)
      expect(denied).to.be.instanceOf(Error)
      expect((denied as Error).message).to.match(/permission denied/)
      await rustUpsert(rust, t.quoted, {task: 'send_email', key: 'key-0', error: 'SMTP 421 for user 99'})
      await rustUpsert(rust, t.quoted, {task: 'send_email', key: 'new', error: 'SMTP 421 for user 98'})
      await rust.query(
        `insert into ${t.quoted}.backfill_dlq (task_identifier, payload, failure_reason, error_fingerprint, error_fingerprint_at, failed_at)
         values ('send_email', '{}', 'x', 'abc', '2024-01-01', '2024-01-01')`,
      )
      await rust.query(`delete from ${t.quoted}.backfill_dlq where job_key = 'key-5'`)
      await rust.query(`delete from ${t.quoted}.backfill_dlq where task_identifier = 'charge'`)
      await expectStatsAgree(t)
    } finally {
      await rust.end()
      await t.query(`drop owned by ${role}`).catch(() => undefined)
      await sql(`drop role if exists ${role}`).catch(() => undefined)
    }
  })

  it('a role that may read backfill_dlq but not the counts table (granted before schema 5): status, check and stats scan', async () => {
    await insertDlq(t, ROWS)
    await backfillFingerprints(t.db)
    const expected = await expectStatsAgree(t)
    const role = `dgc_mon_${Date.now().toString(36)}`
    await sql(`create role ${role} login bypassrls`)
    await t.query(`grant usage on schema ${t.quoted} to ${role}; grant select on all tables in schema ${t.quoted} to ${role};
      revoke select on ${t.quoted}.backfill_dlq_group_counts from ${role}`)
    const db = Database.connect({
      target: targetFromUrl(urlForDatabase(testDatabaseName(), role), 'flag-or-env'),
      schema: t.db.schema,
      max: 2,
    })
    try {
      let used: StatsSource | undefined
      const {durationMs: _, ...stats} = await dlqStats(db, {selector: {}, onSource: (s) => (used = s)})
      expect({used, stats}).to.deep.equal({used: 'scan', stats: expected})
      expect((await queueStatus(db)).totals.dlq).to.equal(24)
      expect((await runChecks(db, {maxDlq: 1000})).checks.find((c) => c.name === 'dlq')?.actual).to.equal(24)
      // Granted: the counts again.
      await t.query(`grant select on ${t.quoted}.backfill_dlq_group_counts to ${role}`)
      await dlqStats(db, {selector: {}, onSource: (s) => (used = s)})
      expect(used).to.equal('group-counts')
    } finally {
      await db.end()
      await t.query(`drop owned by ${role}`).catch(() => undefined)
      await sql(`drop role if exists ${role}`).catch(() => undefined)
    }
  })

  it('the SECURITY DEFINER trigger function: no role may attach it to a table of its own, it refuses any table but backfill_dlq, a schema-5 one is replaced', async () => {
    await insertDlq(t, ROWS.slice(0, 4))
    await backfillFingerprints(t.db)
    const counted = async (): Promise<number> =>
      (
        await t.query<{n: number}>(
          `select coalesce(sum(entries), 0)::int as n from ${t.quoted}.backfill_dlq_group_counts`,
        )
      )[0]!.n
    expect(await counted()).to.equal(4)
    const role = `dgc_att_${Date.now().toString(36)}`
    await sql(`create role ${role} login`)
    await t.query(`grant usage on schema ${t.quoted} to ${role}`)
    const attacker = new pg.Client({connectionString: urlForDatabase(testDatabaseName(), role)})
    await attacker.connect()
    const attach = async (): Promise<string> => {
      try {
        await attacker.query(
          `create temp table if not exists x (task_identifier text, queue_name text, error_fingerprint text, failed_at timestamptz, error_fingerprint_at timestamptz)`,
        )
        await attacker.query(`drop trigger if exists x_trunc on pg_temp.x`)
        await attacker.query(
          `create trigger x_trunc after truncate on pg_temp.x for each statement execute function ${t.quoted}.backfill_dlq_group_counts_sync()`,
        )
        await attacker.query('truncate x') // would run as the function's owner: delete from the counts
        return 'attached'
      } catch (error) {
        return (error as Error).message
      }
    }
    const functionDef = async (): Promise<string> =>
      (
        await t.query<{def: string}>(`select pg_get_functiondef($1::regproc) as def`, [
          `${t.quoted}.backfill_dlq_group_counts_sync`,
        ])
      )[0]!.def
    try {
      expect(await attach()).to.match(/permission denied for function .*backfill_dlq_group_counts_sync/)
      expect(await counted()).to.equal(4)
      // Attached by a role that may (here its owner) to another table: it refuses to run.
      await t.query(`create table ${t.quoted}.other (like ${t.quoted}.backfill_dlq);
        create trigger other_trunc after truncate on ${t.quoted}.other for each statement execute function ${t.quoted}.backfill_dlq_group_counts_sync()`)
      const refused = await t.query(`truncate ${t.quoted}.other`).catch((error: Error) => error.message)
      expect(refused).to.match(/keeps the counts of .*backfill_dlq only, not of .*other/)
      expect(await counted()).to.equal(4)
      await t.query(`drop table ${t.quoted}.other`)

      // A schema-5 database: the function without the check, executable by PUBLIC (the default).
      const current = await functionDef()
      const unguarded = current.replace(/ *-- Attached to another table[^\n]*\n *if tg_relid[\s\S]*?end if;\n/, '')
      expect(unguarded).to.not.include('tg_relid')
      await t.query(`${unguarded}; grant execute on function ${t.quoted}.backfill_dlq_group_counts_sync() to public`)
      await t.query(`update ${t.quoted}.backfill_meta set value = '5' where key = 'schema_version'`)
      expect(await attach()).to.equal('attached')
      expect(await counted()).to.equal(0)
      const finding = (await schemaStatus(t.db)).findings.find((f) => f.code === 'dlq-group-counts-function')
      expect(finding?.message).to.match(/schema 5's/)
      const migrated = await migrate(t.db)
      expect(migrated.dlq.created).to.deep.equal(['backfill_dlq_group_counts'])
      expect(await functionDef()).to.equal(current)
      expect(await counted()).to.equal(4) // recounted
      const [meta] = await t.query<{value: string}>(
        `select value from ${t.quoted}.backfill_meta where key = 'schema_version'`,
      )
      expect(meta!.value).to.equal(String(BACKFILL_SCHEMA_VERSION))
      expect((await schemaStatus(t.db)).findings.map((f) => f.code)).to.not.include('dlq-group-counts-function')
      expect(await attach()).to.match(/permission denied for function/)
      expect(await counted()).to.equal(4)
      expect((await migrate(t.db)).upToDate).to.equal(true)
    } finally {
      await attacker.end()
      await t.query(`drop owned by ${role}`).catch(() => undefined)
      await sql(`drop role if exists ${role}`).catch(() => undefined)
    }
  })

  it('upgrade from a populated version-4 schema: counts created, filled and exact; the old index replaced', async () => {
    // A version-4 schema as it was: no counts, no triggers, schema 4's fingerprint index.
    await t.query(`drop table ${t.quoted}.backfill_dlq_group_counts;
      ${GROUP_COUNTS_TRIGGERS.map((name) => `drop trigger ${name} on ${t.quoted}.backfill_dlq;`).join('\n')}
      drop function ${t.quoted}.backfill_dlq_group_counts_sync();
      drop index ${t.quoted}.idx_backfill_dlq_fingerprint_seen;
      create index idx_backfill_dlq_fingerprint on ${t.quoted}.backfill_dlq (task_identifier, queue_name, error_fingerprint) include (failed_at, id, error_fingerprint_at) where error_fingerprint is not null;
      update ${t.quoted}.backfill_meta set value = '4' where key = 'schema_version'`)
    await insertDlq(t, ROWS)
    await backfillFingerprints(t.db)
    await insertDlq(t, rowsTagged('b').slice(0, 4)) // left for migrate's backfill
    const scanned = await statsVia(t, {}, 'auto')
    expect(scanned.used).to.equal('scan')

    const result = await migrate(t.db)
    expect(result.dlq.created).to.include.members(['idx_backfill_dlq_fingerprint_seen', 'backfill_dlq_group_counts'])
    expect(result.dlq.fingerprinted).to.equal(4)
    expect(await expectStatsAgree(t)).to.deep.equal(scanned.stats)
    const [meta] = await t.query<{value: string}>(
      `select value from ${t.quoted}.backfill_meta where key = 'schema_version'`,
    )
    expect(meta!.value).to.equal(String(BACKFILL_SCHEMA_VERSION))
    const [old] = await t.query<{n: number}>(
      `select count(*)::int as n from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = $1 and c.relname = 'idx_backfill_dlq_fingerprint'`,
      [t.schema],
    )
    expect(old!.n).to.equal(0)
    expect((await migrate(t.db)).upToDate).to.equal(true)

    // Rolling deploy: a version-4 worker's migrate recreates its index; the next migrate drops it again.
    const oldIndex = `create index idx_backfill_dlq_fingerprint on ${t.quoted}.backfill_dlq (task_identifier, queue_name, error_fingerprint) include (failed_at, id, error_fingerprint_at) where error_fingerprint is not null`
    await t.query(oldIndex)
    const finding = (await schemaStatus(t.db)).findings.find((f) => f.code === 'replaced-index')
    expect(finding?.message).to.match(/idx_backfill_dlq_fingerprint is back/)
    const again = await migrate(t.db)
    expect(again.upToDate).to.equal(false)
    const [gone] = await t.query<{n: number}>(
      `select count(*)::int as n from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = $1 and c.relname = 'idx_backfill_dlq_fingerprint'`,
      [t.schema],
    )
    expect(gone!.n).to.equal(0)
    expect((await schemaStatus(t.db)).findings.map((f) => f.code)).to.not.include('replaced-index')
    await t.query(oldIndex)
    await initDlq(t.db)
    const [goneAgain] = await t.query<{n: number}>(
      `select count(*)::int as n from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = $1 and c.relname = 'idx_backfill_dlq_fingerprint'`,
      [t.schema],
    )
    expect(goneAgain!.n).to.equal(0)
    expect((await migrate(t.db)).upToDate).to.equal(true)
  })

  it('disabled or missing triggers: stats scan, the doctor says so, init-dlq repairs and recounts', async () => {
    await insertDlq(t, ROWS)
    await backfillFingerprints(t.db)
    const expected = await expectStatsAgree(t)
    const findings = async (): Promise<string[]> =>
      (await schemaStatus(t.db)).findings.filter((f) => f.code === 'dlq-group-counts').map((f) => f.message)
    expect(await findings()).to.deep.equal([])

    await t.query(`alter table ${t.quoted}.backfill_dlq disable trigger ${GROUP_COUNTS_TRIGGERS[2]}`)
    await t.query(`delete from ${t.quoted}.backfill_dlq where task_identifier = 'charge'`)
    const scanned = await statsVia(t, {}, 'auto')
    expect(scanned.used).to.equal('scan')
    expect(scanned.stats.total).to.equal(expected.total - 8)
    expect((await findings()).join()).to.match(/disabled/)
    expect((await initDlq(t.db)).created).to.deep.equal(['backfill_dlq_group_counts'])
    expect(await expectStatsAgree(t)).to.deep.equal(scanned.stats)
    expect(await findings()).to.deep.equal([])

    // The counts table dropped by hand: writes still go through, stats scan, migrate recreates and recounts.
    await t.query(`drop table ${t.quoted}.backfill_dlq_group_counts`)
    await insertDlq(t, rowsTagged('b').slice(0, 3))
    await t.query(`delete from ${t.quoted}.backfill_dlq where id = (select min(id) from ${t.quoted}.backfill_dlq)`)
    expect((await statsVia(t, {}, 'auto')).used).to.equal('scan')
    expect((await findings()).join()).to.match(/missing/)
    await migrate(t.db)
    await expectStatsAgree(t)
  })

  it('writes the triggers did not see (one disabled, or session_replication_role = replica): init-dlq --recount measures and corrects the drift', async () => {
    await insertDlq(t, ROWS)
    await backfillFingerprints(t.db)
    await expectStatsAgree(t)
    const [{groups}] = (await t.query(
      `select count(distinct (task_identifier, queue_name, error_fingerprint))::int as groups
       from (select * from ${t.quoted}.backfill_dlq order by id limit 7) d`,
    )) as [{groups: number}]
    // The bulk-load pattern: disable, write, enable again; the catalog looks as before.
    await t.query(`alter table ${t.quoted}.backfill_dlq disable trigger ${GROUP_COUNTS_TRIGGERS[2]}`)
    await t.query(
      `delete from ${t.quoted}.backfill_dlq where id in (select id from ${t.quoted}.backfill_dlq order by id limit 7)`,
    )
    await t.query(`alter table ${t.quoted}.backfill_dlq enable trigger ${GROUP_COUNTS_TRIGGERS[2]}`)
    const replica = new pg.Client({connectionString: t.url})
    await replica.connect()
    try {
      await replica.query(`set session_replication_role = replica`)
      await replica.query(
        `insert into ${t.quoted}.backfill_dlq (task_identifier, payload, failure_reason, error_fingerprint, error_fingerprint_at, failed_at)
         values ('zz', '{}', 'x', 'zz-e', '2024-01-01', '2024-01-01'), ('zz', '{}', 'x', 'zz-e', '2024-01-01', '2024-01-01')`,
      )
    } finally {
      await replica.end()
    }
    const kept = async (): Promise<number> =>
      (
        await t.query<{n: number}>(
          `select coalesce(sum(entries), 0)::int as n from ${t.quoted}.backfill_dlq_group_counts`,
        )
      )[0]!.n
    expect(await kept()).to.equal(24)
    expect((await statsVia(t, {}, 'auto')).stats.total).to.equal(24) // wrong: 19 entries
    expect((await initDlq(t.db)).upToDate).to.equal(true) // the catalog cannot tell

    const measured = await initDlq(t.db, {dryRun: true, recount: true})
    expect(measured.recount).to.deep.equal({groups: groups + 1, entries: 7 + 2, total: 19, dryRun: true})
    expect(await kept()).to.equal(24)

    const corrected = await initDlq(t.db, {recount: true})
    expect(corrected.upToDate).to.equal(true)
    expect(corrected.recount).to.deep.equal({groups: groups + 1, entries: 9, total: 19, dryRun: false})
    expect((await expectStatsAgree(t)).total).to.equal(19)
    expect((await initDlq(t.db, {recount: true})).recount).to.deep.equal({
      groups: 0,
      entries: 0,
      total: 19,
      dryRun: false,
    })

    // A count row without entries behind it goes too; missing counts are recreated with the objects.
    await t.query(`insert into ${t.quoted}.backfill_dlq_group_counts values ('ghost', '', 'g', 5)`)
    expect((await initDlq(t.db, {recount: true})).recount).to.deep.equal({
      groups: 1,
      entries: 5,
      total: 19,
      dryRun: false,
    })
    await expectCountsExact(t)
    await t.query(`drop table ${t.quoted}.backfill_dlq_group_counts`)
    expect((await initDlq(t.db, {dryRun: true, recount: true})).recount).to.equal(null)
    const rebuilt = await initDlq(t.db, {recount: true})
    expect(rebuilt.created).to.deep.equal(['backfill_dlq_group_counts'])
    expect(rebuilt.recount).to.deep.equal({groups: 0, entries: 0, total: 19, dryRun: false})
  })

  it('schema print creates the counts, their triggers and the index; applied again over a migrated schema (idempotent), writes are counted', async () => {
    const printed = printSchemaSql(parseSchemaName(t.schema), {graphile: false})
    expect(printed).to.include('create table if not exists')
    expect(printed).to.include('backfill_dlq_group_counts')
    for (const name of GROUP_COUNTS_TRIGGERS) expect(printed).to.include(`create trigger ${name}`)
    expect(printed).to.include('idx_backfill_dlq_fingerprint_seen')
    await t.query(printed) // applied again over the migrated schema: idempotent, recounts
    await insertDlq(t, ROWS)
    await backfillFingerprints(t.db)
    await expectStatsAgree(t)
  })
})
