import {spawn} from 'node:child_process'

import {expect} from 'chai'

import {fingerprint} from '../../src/lib/dlq/fingerprint.js'
import {rustDlqTableSql} from '../fixtures/rust.js'
import {catalogSnapshot} from '../support/catalog.js'
import {BIN, cleanEnv, parseJson, ROOT, runCli, type CliResult} from '../support/cli.js'
import {sql, TestSchema, testUrl, uniqueName} from '../support/db.js'
import {fillDlq, insertDlq, whereIsEverything} from '../support/dlq.js'

const ANSI = /\u001B\[/

async function dlqCount(t: TestSchema): Promise<number> {
  const [row] = await t.query<{n: number}>(`select count(*)::int as n from ${t.quoted}.backfill_dlq`)
  return row!.n
}

async function auditSum(t: TestSchema, action: string): Promise<number> {
  const [row] = await t.query<{n: number}>(
    `select coalesce(sum(count), 0)::int as n from ${t.quoted}.backfill_dlq_audit where action = $1`,
    [action],
  )
  return row!.n
}

/** Starts the real binary and resolves once stderr matches `until` (the process keeps running). */
function startCli(
  args: string[],
  until: RegExp,
): {done: Promise<CliResult>; reached: Promise<void>; kill: (signal: NodeJS.Signals) => void} {
  const child = spawn(process.execPath, [BIN, ...args], {
    env: cleanEnv({DATABASE_URL: testUrl()}),
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  let signalReached: () => void = () => undefined
  const reached = new Promise<void>((resolve) => (signalReached = resolve))
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d
    if (until.test(stderr)) signalReached()
  })
  const done = new Promise<CliResult>((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code, signal) => {
      signalReached()
      resolve({code, signal, stdout, stderr})
    })
  })
  return {done, reached, kill: (signal) => child.kill(signal)}
}

describe('backfill dlq … (real binary)', () => {
  const schemas: TestSchema[] = []
  const fresh = async (migrated = true): Promise<TestSchema> => {
    const t = await TestSchema.create({migrated, prefix: 'dlqe'})
    schemas.push(t)
    return t
  }
  after(async () => {
    for (const t of schemas) await t.drop()
  })

  describe('preconditions', () => {
    it('a schema that does not exist: exit 4 for every dlq command, nothing created', async () => {
      const schema = uniqueName('nodlq')
      for (const args of [
        ['list'],
        ['show', '1'],
        ['stats'],
        ['retry', '--all', '--yes'],
        ['purge', '--all', '--yes'],
        ['capture', '--yes'],
        ['history'],
      ]) {
        const result = await runCli(['dlq', ...args, '--schema', schema])
        expect(result.code, `${args.join(' ')}: ${result.stderr}`).to.equal(4)
        expect(result.stderr).to.contain('does not exist').and.contain('backfill migrate')
      }
      const [exists] = await sql<{n: number}>('select count(*)::int as n from pg_namespace where nspname = $1', [
        schema,
      ])
      expect(exists!.n).to.equal(0)
    })

    it('a DLQ created by the Rust crate alone: exit 4 pointing to init-dlq, nothing created or altered', async () => {
      const t = await fresh()
      await t.query(
        `drop table ${t.quoted}.backfill_dlq, ${t.quoted}.backfill_dlq_retried_jobs, ${t.quoted}.backfill_dlq_events, ${t.quoted}.backfill_dlq_audit`,
      )
      await t.db.execScript(rustDlqTableSql(t.quoted, {uniqueIndex: true}))
      await t.query(
        `insert into ${t.quoted}.backfill_dlq (task_identifier, payload, queue_name, failure_reason) values ('a', '{}', '', 'x')`,
      )
      const before = await catalogSnapshot(t.url, t.schema)
      for (const args of [
        ['list'],
        ['stats'],
        ['retry', '--all', '--yes'],
        ['purge', '--all', '--yes'],
        ['capture', '--yes'],
      ]) {
        const result = await runCli(['dlq', ...args, '--schema', t.schema, '--json'])
        expect(result.code, args.join(' ')).to.equal(4)
        const json = parseJson<{error: {code: string; message: string; suggestions: string[]}}>(result)
        expect(json.error.code).to.equal('E_NOT_MIGRATED')
        expect(json.error.suggestions.join(' ')).to.contain(`backfill init-dlq --schema ${t.schema}`)
      }
      expect(await catalogSnapshot(t.url, t.schema)).to.deep.equal(before)
      expect(await dlqCount(t)).to.equal(1)
    })
  })

  describe('Rust crate compatibility', () => {
    it('lists, groups, retries and purges rows written by the crate into its VARCHAR table (after init-dlq)', async () => {
      const t = await fresh()
      await t.query(`drop table ${t.quoted}.backfill_dlq`)
      await t.db.execScript(rustDlqTableSql(t.quoted, {uniqueIndex: false}))
      // As the crate writes them: the scanner (JSON string error, '' or legacy 'default' queue), add_to_dlq (any JSON, serial queue name).
      await t.query(`insert into ${t.quoted}.backfill_dlq (original_job_id, task_identifier, payload, queue_name, priority, job_key, max_attempts, failure_reason, failure_count, last_error, original_created_at, original_run_at) values
        (11, 'send_email', '{"to":"a@x.io"}', '', 0, null, 8, 'Job exceeded maximum retry attempts (8/8)', 1, to_jsonb('SMTP 421 try later for a@x.io'::text), now(), now()),
        (12, 'send_email', '{"to":"b@x.io"}', 'default', 5, 'mail-b', 8, 'Job exceeded maximum retry attempts (8/8)', 3, to_jsonb('SMTP 421 try later for b@x.io'::text), now(), now()),
        (13, 'charge', '{"u":9}', 'user:9', -10, 'charge-9', 3, 'card declined', 1, '{"message":"card 4242 declined","retryable":false}', now(), now())`)
      expect((await runCli(['init-dlq', '--schema', t.schema])).code).to.equal(0)

      const list = await runCli(['dlq', 'list', '--schema', t.schema, '--json'])
      expect(list.code, list.stderr).to.equal(0)
      const entries = parseJson<{
        entries: {taskIdentifier: string; queueName: string; errorText: string; jobKey: string | null}[]
        nextCursor: null
      }>(list).entries
      expect(entries.map((e) => e.errorText).sort()).to.deep.equal([
        'SMTP 421 try later for a@x.io',
        'SMTP 421 try later for b@x.io',
        'card 4242 declined',
      ])
      expect(entries.map((e) => e.queueName).sort()).to.deep.equal(['', 'default', 'user:9'])

      const stats = parseJson<{total: number; groups: {fingerprint: string; count: number; taskIdentifier: string}[]}>(
        await runCli(['dlq', 'stats', '--schema', t.schema, '--json']),
      )
      expect(stats.total).to.equal(3)
      expect(stats.groups.map((g) => [g.taskIdentifier, g.count])).to.deep.equal([
        ['send_email', 2],
        ['charge', 1],
      ])

      const retry = await runCli([
        'dlq',
        'retry',
        '--schema',
        t.schema,
        '--task',
        'send_email',
        '--task',
        'charge',
        '--yes',
        '--json',
      ])
      expect(retry.code, retry.stderr).to.equal(0)
      expect(parseJson<{retried: number}>(retry).retried).to.equal(3)
      const jobs = await t.query<{
        task: string
        queue: string | null
        key: string | null
        priority: number
        max_attempts: number
        payload: unknown
      }>(
        `select t.identifier as task, q.queue_name as queue, j.key, j.priority, j.max_attempts, j.payload from ${t.quoted}._private_jobs j
         join ${t.quoted}._private_tasks t on t.id = j.task_id left join ${t.quoted}._private_job_queues q on q.id = j.job_queue_id order by j.key nulls first`,
      )
      expect(jobs).to.deep.equal([
        {task: 'send_email', queue: null, key: null, priority: 0, max_attempts: 8, payload: {to: 'a@x.io'}},
        {task: 'charge', queue: 'user:9', key: 'charge-9', priority: -10, max_attempts: 3, payload: {u: 9}},
        {task: 'send_email', queue: null, key: 'mail-b', priority: 5, max_attempts: 8, payload: {to: 'b@x.io'}},
      ])

      // Rows we write (capture) are rows the crate reads: the 17 columns, a JSON string error, '' for parallel.
      await t.query(
        `update ${t.quoted}._private_jobs set attempts = max_attempts, last_error = 'still failing' where key = 'mail-b'`,
      )
      expect((await runCli(['dlq', 'capture', '--schema', t.schema, '--yes'])).code).to.equal(0)
      const [row] = await t.query<{queue_name: string; kind: string; failure_count: number; requeued_count: number}>(
        `select queue_name, jsonb_typeof(last_error) as kind, failure_count, requeued_count from ${t.quoted}.backfill_dlq`,
      )
      expect(row).to.deep.equal({queue_name: '', kind: 'string', failure_count: 4, requeued_count: 1})
      const purge = await runCli(['dlq', 'purge', '--schema', t.schema, '--all', '--yes'])
      expect(purge.code, purge.stderr).to.equal(0)
      expect(await dlqCount(t)).to.equal(0)
    })
  })

  describe('list / show / stats / history', () => {
    it('list prints a table (no colour when piped), pages with --cursor, and warns about uncaptured jobs', async () => {
      const t = await fresh()
      await fillDlq(t, 5)
      const [job] = await t.query<{id: string}>(
        `select id from ${t.quoted}.add_job('orphan', '{}'::json, max_attempts => 1)`,
      )
      await t.query(`update ${t.quoted}._private_jobs set attempts = 1, last_error = 'x' where id = $1`, [job!.id])
      const human = await runCli(['dlq', 'list', '--schema', t.schema, '--limit', '2'])
      expect(human.code, human.stderr).to.equal(0)
      expect(human.stdout).to.match(/^\s*ID\s+TASK\s+QUEUE\s+ATTEMPTS/)
      expect(human.stdout.trim().split('\n')).to.have.length(3)
      expect(human.stdout).to.contain('(parallel)').and.contain('SMTP 421 try later for user 1')
      expect(human.stdout + human.stderr).not.to.match(ANSI)
      expect(human.stderr)
        .to.contain('--cursor')
        .and.contain('1 exhausted job(s) are still in the jobs table')
        .and.contain('backfill dlq capture')
      const page1 = parseJson<{entries: {id: string}[]; nextCursor: string; uncaptured: {total: number}}>(
        await runCli(['dlq', 'list', '--schema', t.schema, '--limit', '3', '--json']),
      )
      expect(page1.entries).to.have.length(3)
      expect(page1.uncaptured.total).to.equal(1)
      const page2 = parseJson<{entries: {id: string}[]; nextCursor: string | null}>(
        await runCli(['dlq', 'list', '--schema', t.schema, '--limit', '3', '--cursor', page1.nextCursor, '--json']),
      )
      expect(page2.entries).to.have.length(2)
      expect(page2.nextCursor).to.equal(null)
      expect(new Set([...page1.entries, ...page2.entries].map((e) => e.id)).size).to.equal(5)
      const parallel = parseJson<{entries: unknown[]}>(
        await runCli(['dlq', 'list', '--schema', t.schema, '--queue', '', '--json']),
      )
      expect(parallel.entries).to.have.length(5)
      const serial = parseJson<{entries: unknown[]}>(
        await runCli(['dlq', 'list', '--schema', t.schema, '--queue', 'user:1', '--json']),
      )
      expect(serial.entries).to.have.length(0)
      const bad = await runCli(['dlq', 'list', '--schema', t.schema, '--cursor', 'bogus'])
      expect(bad.code).to.equal(2)
      expect(bad.stderr).to.contain('invalid cursor')
    })

    it('show prints payload, full error and history; unknown ids exit 4, malformed ids exit 2', async () => {
      const t = await fresh()
      const [id] = await insertDlq(t, [
        {
          task: 'charge',
          payload: {user: 7, amount: 12.5},
          lastError: {message: 'card declined', code: 'E42'},
          jobKey: 'charge-7',
        },
      ])
      const human = await runCli(['dlq', 'show', id!, '--schema', t.schema])
      expect(human.code, human.stderr).to.equal(0)
      expect(human.stdout)
        .to.contain('charge-7')
        .and.contain('"amount": 12.5')
        .and.contain('"code": "E42"')
        .and.contain('never retried')
      const json = parseJson<{entry: {id: string; payload: unknown}; history: unknown[]}>(
        await runCli(['dlq', 'show', id!, '--schema', t.schema, '--json']),
      )
      expect(json.entry).to.deep.include({id, payload: {user: 7, amount: 12.5}})
      const missing = await runCli(['dlq', 'show', '999999', '--schema', t.schema])
      expect(missing.code).to.equal(4)
      expect(missing.stderr).to.contain('does not exist')
      expect((await runCli(['dlq', 'show', 'abc', '--schema', t.schema])).code).to.equal(2)
    })

    it('stats shows groups with their fingerprint; --group on list selects them; a bad --group exits 2', async () => {
      const t = await fresh()
      await insertDlq(t, [
        {lastError: 'quota exceeded for tenant 1'},
        {lastError: 'quota exceeded for tenant 2'},
        {lastError: 'timeout'},
      ])
      const group = fingerprint('send_email', 'quota exceeded for tenant 3').fingerprint
      const human = await runCli(['dlq', 'stats', '--schema', t.schema])
      expect(human.code, human.stderr).to.equal(0)
      expect(human.stdout).to.contain('3 entries').and.contain(group).and.contain('quota exceeded for tenant 1')
      expect(human.stdout).to.contain(`--group ${group}`)
      const listed = parseJson<{entries: unknown[]}>(
        await runCli(['dlq', 'list', '--schema', t.schema, '--group', group, '--json']),
      )
      expect(listed.entries).to.have.length(2)
      const bad = await runCli(['dlq', 'stats', '--schema', t.schema, '--group', 'quota'])
      expect(bad.code).to.equal(2)
      expect(bad.stderr).to.contain('dlq stats')
      expect((await runCli(['dlq', 'list', '--schema', t.schema, '--older-than', 'soon'])).code).to.equal(2)
    })
  })

  describe('retry', () => {
    it('refuses an empty selection (exit 2) and a non-interactive run without --yes (exit 2); nothing changes', async () => {
      const t = await fresh()
      await fillDlq(t, 3)
      const empty = await runCli(['dlq', 'retry', '--schema', t.schema, '--yes'])
      expect(empty.code).to.equal(2)
      expect(empty.stderr).to.contain('without a selection').and.contain('--all')
      const noTty = await runCli(['dlq', 'retry', '--schema', t.schema, '--all'])
      expect(noTty.code).to.equal(2)
      expect(noTty.stderr).to.contain('without --yes')
      const json = await runCli(['dlq', 'purge', '--schema', t.schema, '--all', '--json'])
      expect(parseJson<{error: {code: string}}>(json).error.code).to.equal('E_CONFIRMATION_REQUIRED')
      expect(await dlqCount(t)).to.equal(3)
      expect(await t.query(`select 1 from ${t.quoted}._private_jobs`)).to.have.length(0)
      expect(await t.query(`select 1 from ${t.quoted}.backfill_dlq_audit`)).to.have.length(0)
    })

    it('--dry-run shows count, groups and sample, and changes nothing', async () => {
      const t = await fresh()
      await fillDlq(t, 12, {keyed: true})
      await t.query(`select ${t.quoted}.add_job('task_1', '{}'::json, job_key => 'key-1')`)
      const before = await whereIsEverything(t)
      const human = await runCli(['dlq', 'retry', '--schema', t.schema, '--all', '--dry-run'])
      expect(human.code, human.stderr).to.equal(0)
      expect(human.stdout)
        .to.contain('would retry 12 entries')
        .and.contain('1 of them would stay in the DLQ')
        .and.contain('Failure groups')
      const json = parseJson<{
        dryRun: boolean
        stats: {total: number; keyConflicts: number; groups: unknown[]}
        sample: {id: string}[]
      }>(await runCli(['dlq', 'retry', '--schema', t.schema, '--all', '--limit', '5', '--dry-run', '--json']))
      expect(json.dryRun).to.equal(true)
      expect(json.stats.total).to.equal(5)
      expect(json.stats.keyConflicts).to.equal(1)
      expect(json.sample).to.have.length(5)
      expect(await whereIsEverything(t)).to.deep.equal(before)
      expect(await t.query(`select 1 from ${t.quoted}.backfill_dlq_audit`)).to.have.length(0)
      const purgeDry = await runCli(['dlq', 'purge', '--schema', t.schema, '--older-than', '1s', '--dry-run'])
      expect(purgeDry.stdout).to.contain('would delete 12 entries')
      expect(await whereIsEverything(t)).to.deep.equal(before)
    })

    it('retries with progress and a summary; the audit trail shows who, why and what', async () => {
      const t = await fresh()
      await fillDlq(t, 30)
      const result = await runCli([
        'dlq',
        'retry',
        '--schema',
        t.schema,
        '--task',
        'task_1',
        '--batch-size',
        '4',
        '--yes',
        '--reason',
        'SMTP fixed',
      ])
      expect(result.code, result.stderr).to.equal(0)
      expect(result.stderr)
        .to.match(/batch 1: 4\/10 retried/)
        .and.match(/batch 3: 10\/10 retried/)
      expect(result.stdout).to.contain('retried 10 entries as new jobs in 3 batch(es)')
      expect((await whereIsEverything(t)).jobs).to.have.length(10)
      const history = parseJson<{
        runs: {action: string; count: number; batches: number; reason: string; selection: unknown; osUser: string}[]
      }>(await runCli(['dlq', 'history', '--schema', t.schema, '--json']))
      expect(history.runs).to.have.length(1)
      expect(history.runs[0]).to.deep.include({action: 'retry', count: 10, batches: 3, reason: 'SMTP fixed'})
      // The selection as acted on: the operator's selectors, bounded at the moment of confirmation.
      const selection = history.runs[0]!.selection as {tasks: string[]; until: string}
      expect(selection.tasks).to.deep.equal(['task_1'])
      expect(Date.now() - Date.parse(selection.until)).to.be.within(0, 60_000)
      expect(history.runs[0]!.osUser).to.be.a('string')
      const again = await runCli(['dlq', 'retry', '--schema', t.schema, '--task', 'task_1', '--yes'])
      expect(again.code).to.equal(0)
      expect(again.stdout).to.contain('nothing to retry')
    })

    it('two retries started together enqueue every entry exactly once', async () => {
      const t = await fresh()
      await fillDlq(t, 4000)
      const args = ['dlq', 'retry', '--schema', t.schema, '--all', '--yes', '--batch-size', '200', '--json']
      const [a, b] = await Promise.all([runCli(args), runCli(args)])
      expect(a.code, a.stderr).to.equal(0)
      expect(b.code, b.stderr).to.equal(0)
      expect(parseJson<{retried: number}>(a).retried + parseJson<{retried: number}>(b).retried).to.equal(4000)
      const where = await whereIsEverything(t)
      expect(where.dlq).to.deep.equal([])
      expect(where.jobs).to.deep.equal(Array.from({length: 4000}, (_, i) => i + 1))
      expect(await auditSum(t, 'retry')).to.equal(4000)
    })

    it('kill -9 in the middle leaves every entry either in the DLQ or enqueued, once', async () => {
      const t = await fresh()
      await fillDlq(t, 20_000)
      const run = startCli(['dlq', 'retry', '--schema', t.schema, '--all', '--yes', '--batch-size', '500'], /batch 3:/)
      await run.reached
      run.kill('SIGKILL')
      const result = await run.done
      expect(result.signal).to.equal('SIGKILL')
      const where = await whereIsEverything(t)
      expect(where.jobs.length).to.be.greaterThan(0)
      expect(where.dlq.length).to.be.greaterThan(0)
      const all = [...where.jobs, ...where.dlq].sort((x, y) => x - y)
      expect(all).to.deep.equal(Array.from({length: 20_000}, (_, i) => i + 1))
      // The audit trail holds exactly the batches that committed.
      expect(await auditSum(t, 'retry')).to.equal(where.jobs.length)
      const [lineage] = await t.query<{n: number}>(
        `select count(*)::int as n from ${t.quoted}.backfill_dlq_retried_jobs`,
      )
      expect(lineage!.n).to.equal(where.jobs.length)
      // Rerunning finishes the job.
      const rest = await runCli(['dlq', 'retry', '--schema', t.schema, '--all', '--yes', '--json'], {
        timeoutMs: 120_000,
      })
      expect(parseJson<{retried: number}>(rest).retried).to.equal(where.dlq.length)
      expect((await whereIsEverything(t)).jobs).to.have.length(20_000)
    })

    it('Ctrl-C finishes the current batch, prints the summary and exits 130', async () => {
      const t = await fresh()
      await fillDlq(t, 5000)
      const run = startCli(['dlq', 'retry', '--schema', t.schema, '--all', '--yes', '--batch-size', '100'], /batch 2:/)
      await run.reached
      run.kill('SIGINT')
      const result = await run.done
      expect(result.code, result.stderr).to.equal(130)
      expect(result.stderr).to.contain('finishing the current step').and.contain('interrupted after batch')
      const where = await whereIsEverything(t)
      expect(where.dlq.length).to.be.greaterThan(0)
      expect(where.jobs.length + where.dlq.length).to.equal(5000)
      expect(new Set([...where.jobs, ...where.dlq]).size).to.equal(5000)
      expect(where.jobs.length % 100).to.equal(0)
    })
  })

  describe('purge and capture', () => {
    it('purge deletes old entries in batches with progress; capture moves exhausted jobs', async () => {
      const t = await fresh()
      await t.query(`alter table ${t.quoted}.backfill_dlq set (fillfactor = 10)`)
      await insertDlq(t, [
        ...Array.from({length: 7}, () => ({failedAt: new Date(Date.now() - 40 * 86_400_000)})),
        ...Array.from({length: 3}, () => ({})),
      ])
      const purge = await runCli([
        'dlq',
        'purge',
        '--schema',
        t.schema,
        '--older-than',
        '30d',
        '--batch-size',
        '3',
        '--yes',
        '--reason',
        'monthly',
      ])
      expect(purge.code, purge.stderr).to.equal(0)
      expect(purge.stderr)
        .to.match(/batch 1: \d\/7 deleted/)
        .and.match(/batch 2: \d\/7 deleted/)
      expect(purge.stdout).to.match(/deleted 7 entries in \d batch\(es\)/)
      expect(await dlqCount(t)).to.equal(3)
      expect(await auditSum(t, 'purge')).to.equal(7)

      await t.query(
        `select ${t.quoted}.add_job('resize', json_build_object('n', n), max_attempts => 1) from generate_series(1, 4) n`,
      )
      await t.query(`update ${t.quoted}._private_jobs set attempts = 1, last_error = 'out of memory'`)
      const dry = await runCli(['dlq', 'capture', '--schema', t.schema, '--dry-run', '--json'])
      expect(parseJson<{waiting: {total: number}}>(dry).waiting.total).to.equal(4)
      expect(await dlqCount(t)).to.equal(3)
      const noYes = await runCli(['dlq', 'capture', '--schema', t.schema])
      expect(noYes.code).to.equal(2)
      expect(await dlqCount(t)).to.equal(3)
      const capture = await runCli(['dlq', 'capture', '--schema', t.schema, '--yes', '--json'])
      expect(capture.code, capture.stderr).to.equal(0)
      expect(parseJson<{captured: number}>(capture).captured).to.equal(4)
      expect(await dlqCount(t)).to.equal(7)
      expect(await auditSum(t, 'capture')).to.equal(4)
      const history = await runCli(['dlq', 'history', '--schema', t.schema])
      expect(history.stdout)
        .to.match(/capture\s+4/)
        .and.match(/purge\s+7/)
        .and.contain('monthly')
    })
  })
})
