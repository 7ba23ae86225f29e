import {spawn} from 'node:child_process'

import {expect} from 'chai'
import type pg from 'pg'

import {rustMigration19Sql, rustMigration20Sql} from '../fixtures/rust.js'
import {BIN, cleanEnv, parseJson, ROOT, runCli, type CliResult} from '../support/cli.js'
import {testUrl, TestSchema, uniqueName} from '../support/db.js'
import {jobRow, lockedJob, poolId, presenceSession, queueLock, registerWorker} from '../support/locks.js'

/**
 * Runs the binary and sends SIGINT once its stdout satisfies `ready` (so a slow, shared machine
 * only makes the test slower, not flaky), or after `maxMs` at the latest; collects its output.
 */
function runUntilInterrupted(args: string[], ready: (stdout: string) => boolean, maxMs = 30_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: cleanEnv({DATABASE_URL: testUrl()}),
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    let interrupted = false
    const interrupt = (): void => {
      if (interrupted) return
      interrupted = true
      child.kill('SIGINT')
    }
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d
      if (ready(stdout)) interrupt()
    })
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    const timer = setTimeout(interrupt, maxMs)
    const killer = setTimeout(() => child.kill('SIGKILL'), maxMs + 20_000)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      clearTimeout(killer)
      resolve({code, signal, stdout, stderr})
    })
  })
}

/** Heartbeats count from the server's start (restart grace): let a freshly started test server age a little. */
async function serverUptimeAtLeast(t: TestSchema, ms: number): Promise<void> {
  for (;;) {
    const [row] = await t.query<{uptime: number}>(
      `select (extract(epoch from now() - pg_postmaster_start_time()) * 1000)::float8 as uptime`,
    )
    if ((row?.uptime ?? 0) >= ms) return
    await new Promise((resolve) => setTimeout(resolve, ms - (row?.uptime ?? 0)))
  }
}

describe('backfill locks / status / check / schema status (real binary)', function () {
  const schemas: TestSchema[] = []
  const sessions: pg.Client[] = []
  const fresh = async (migrated = true): Promise<TestSchema> => {
    const t = await TestSchema.create({migrated, prefix: 'lh'})
    schemas.push(t)
    return t
  }
  after(async () => {
    for (const s of sessions) await s.end().catch(() => undefined)
    for (const t of schemas) await t.drop()
  })

  describe('locks', () => {
    it('list shows a dead worker, clean refuses without --yes off a terminal, --dry-run changes nothing, --yes releases at once', async () => {
      const t = await fresh()
      const dead = poolId()
      const live = poolId()
      await registerWorker(t, dead, {heartbeatAgo: '1 hour', hostname: 'host-died'})
      await registerWorker(t, live)
      sessions.push(await presenceSession(t.url, live))
      const deadJob = await lockedJob(t, {owner: dead, lockedAgo: '3 seconds', queue: 'user:7', task: 'send'})
      const liveJob = await lockedJob(t, {owner: live, lockedAgo: '5 hours'})
      const args = ['--schema', t.schema, '--heartbeat-timeout', '1s']
      await serverUptimeAtLeast(t, 3000)

      const list = await runCli(['locks', 'list', ...args, '--json'])
      expect(list.code, list.stderr).to.equal(0)
      const listing = parseJson<{
        owners: {owner: string; liveness: string; reason: string}[]
        locks: unknown[]
        totals: {byLiveness: Record<string, number>}
      }>(list)
      expect(listing.owners.map((o) => `${o.owner}:${o.liveness}`)).to.deep.equal([`${dead}:dead`, `${live}:live`])
      expect(listing.owners[0]?.reason).to.match(/host-died/)
      expect(listing.totals.byLiveness).to.deep.equal({live: 1, dead: 2, unknown: 0})
      const human = await runCli(['locks', 'list', ...args])
      expect(human.stdout).to.match(/OWNER\s+RUNTIME\s+LIVENESS/)
      expect(human.stdout).to.contain('user:7')
      expect(human.stderr).to.contain('backfill locks clean')

      const refused = await runCli(['locks', 'clean', ...args])
      expect(refused.code).to.equal(2)
      expect(refused.stderr).to.match(/refusing to release locks without --yes/)
      expect((await jobRow(t, deadJob))?.locked_by).to.equal(dead)

      const dry = await runCli(['locks', 'clean', ...args, '--dry-run', '--json'])
      expect(dry.code, dry.stderr).to.equal(0)
      expect(parseJson<{dryRun: boolean; jobLocks: number; queueLocks: number}>(dry)).to.include({
        dryRun: true,
        jobLocks: 1,
        queueLocks: 1,
      })
      expect((await jobRow(t, deadJob))?.locked_by).to.equal(dead)

      const clean = await runCli(['locks', 'clean', ...args, '--yes'])
      expect(clean.code, clean.stderr).to.equal(0)
      expect(clean.stdout).to.match(/RELEASED/)
      expect(clean.stdout).to.match(/released 1 job lock and 1 queue lock of dead owners/)
      expect(clean.stderr).to.match(/kept 1 of live owners/)
      expect((await jobRow(t, deadJob))?.locked_by).to.equal(null)
      expect((await queueLock(t, 'user:7'))?.locked_by).to.equal(null)
      expect((await jobRow(t, liveJob))?.locked_by).to.equal(live)
    })

    it('two `locks clean` processes at once release every lock exactly once', async () => {
      const t = await fresh()
      const dead = poolId()
      await registerWorker(t, dead, {stopped: true})
      await t.query(`insert into ${t.quoted}._private_tasks (identifier) values ('bulk')`)
      await t.query(
        `insert into ${t.quoted}._private_jobs (task_id, attempts, locked_by, locked_at)
        select (select id from ${t.quoted}._private_tasks where identifier = 'bulk'), 1, $1, now() - interval '1 minute' from generate_series(1, 300)`,
        [dead],
      )
      const args = ['locks', 'clean', '--schema', t.schema, '--yes', '--json']
      const [a, b] = await Promise.all([runCli(args), runCli(args)])
      expect(a.code, a.stderr).to.equal(0)
      expect(b.code, b.stderr).to.equal(0)
      const released = parseJson<{jobLocks: number}>(a).jobLocks + parseJson<{jobLocks: number}>(b).jobLocks
      expect(released).to.equal(300)
      const [left] = await t.query<{locked: number; total: number}>(
        `select count(*) filter (where locked_at is not null)::int as locked, count(*)::int as total from ${t.quoted}._private_jobs`,
      )
      expect(left).to.deep.equal({locked: 0, total: 300})
    })

    it('bad input is a one-line usage error (exit 2) that changes nothing', async () => {
      const t = await fresh()
      const result = await runCli([
        'locks',
        'clean',
        '--schema',
        t.schema,
        '--stale-job-lock-timeout',
        '30 minutes',
        '--yes',
      ])
      expect(result.code).to.equal(2)
      expect(result.stderr).to.match(/^Error: --stale-job-lock-timeout "30 minutes" is not a duration\n/)
    })

    it('warns when the job lock timeout is dangerously short', async () => {
      const t = await fresh()
      const result = await runCli([
        'locks',
        'clean',
        '--schema',
        t.schema,
        '--stale-job-lock-timeout',
        '2m',
        '--dry-run',
      ])
      expect(result.code).to.equal(0)
      expect(result.stderr).to.match(/DANGEROUS.*DUPLICATE EXECUTION/)
    })
  })

  describe('status', () => {
    it('--json counts, and the human tables', async () => {
      const t = await fresh()
      await t.query(`select ${t.quoted}.add_job('email', '{}'::json, run_at => now() - interval '5 minutes')`)
      await t.query(`select ${t.quoted}.add_job('email', '{}'::json, run_at => now() + interval '1 hour')`)
      await lockedJob(t, {owner: poolId(), lockedAgo: '1 minute', task: 'email', queue: 'user:1'})
      const json = await runCli(['status', '--schema', t.schema, '--json'])
      expect(json.code, json.stderr).to.equal(0)
      const status = parseJson<{totals: Record<string, unknown>; queues: {queue: string | null}[]}>(json)
      expect(status.totals).to.include({ready: 1, scheduled: 1, running: 1, exhausted: 0, dlq: 0})
      expect(status.queues.map((q) => q.queue)).to.deep.equal([null, 'user:1'])
      const human = await runCli(['status', '--schema', t.schema])
      expect(human.code).to.equal(0)
      expect(human.stdout).to.match(/TASK\s+READY\s+SCHEDULED\s+RUNNING\s+RETRYING\s+EXHAUSTED\s+DLQ\s+OLDEST READY/)
      expect(human.stdout).to.match(/\(parallel jobs\)/)
      expect(human.stdout).not.to.match(/\u001B\[/)
    })

    it('--watch repeats plain blocks when piped and exits 0 on Ctrl-C; with --json one document per line', async () => {
      const t = await fresh()
      const blocks = (out: string): number => out.split('\n').filter((l) => l.startsWith('--- every 1.0s')).length
      const plain = await runUntilInterrupted(
        ['status', '--schema', t.schema, '--watch', '1s'],
        (out) => blocks(out) >= 2 && out.endsWith('\n'),
      )
      expect(plain.code, plain.stderr).to.equal(0)
      expect(blocks(plain.stdout)).to.be.at.least(2)
      expect(plain.stdout).not.to.match(/\u001B\[/)

      const json = await runUntilInterrupted(['status', '--schema', t.schema, '--watch', '--json'], (out) =>
        out.endsWith('}\n'),
      )
      expect(json.code, json.stderr).to.equal(0)
      const lines = json.stdout.trim().split('\n')
      expect(lines.length).to.be.at.least(1)
      for (const line of lines) expect(JSON.parse(line)).to.have.property('totals')
    })

    it('an un-migrated schema: exit 4, nothing created', async () => {
      const schema = uniqueName('nope')
      const result = await runCli(['status', '--schema', schema])
      expect(result.code).to.equal(4)
      expect(result.stderr).to.match(/does not exist/)
    })
  })

  describe('check', () => {
    let t: TestSchema
    before(async () => {
      t = await fresh()
      const dead = poolId()
      await registerWorker(t, dead, {stopped: true})
      await lockedJob(t, {owner: dead, lockedAgo: '1 minute'})
      await lockedJob(t, {owner: 'by-hand', lockedAgo: '2 hours'})
      await t.query(`select ${t.quoted}.add_job('email', '{}'::json, run_at => now() - interval '10 minutes')`)
      await t.query(`select ${t.quoted}.add_job('email', '{}'::json, max_attempts => 1)`)
      await t.query(`update ${t.quoted}._private_jobs set attempts = 1 where max_attempts = 1`)
      await t.query(
        `insert into ${t.quoted}.backfill_dlq (task_identifier, payload, failure_reason) values ('email', '{}', 'x')`,
      )
    })

    it('exit 0 when a threshold holds, 6 with one line on stdout when it fails, for each threshold', async () => {
      const cases: [string[], string[], RegExp][] = [
        [['--max-ready-age', '15m'], ['--max-ready-age', '5m'], /^FAIL ready-age: the oldest ready job has waited 10m/],
        [['--max-ready', '1'], ['--max-ready', '0'], /^FAIL ready: 1 ready jobs \(max 0\)/],
        [['--max-dlq', '1'], ['--max-dlq', '0'], /^FAIL dlq: 1 DLQ entries \(max 0\)/],
        [['--max-exhausted', '1'], ['--max-exhausted', '0'], /^FAIL exhausted: 1 exhausted jobs/],
        [['--max-dead-locks', '1'], ['--max-dead-locks', '0'], /^FAIL dead-locks: 1 locks held by dead workers/],
        [['--max-stale-locks', '1'], ['--max-stale-locks', '0'], /^FAIL stale-locks: 1 stale locks/],
        [['--min-workers', '0'], ['--min-workers', '1'], /^FAIL workers: 0 live workers/],
      ]
      for (const [pass, fail, line] of cases) {
        const ok = await runCli(['check', '--schema', t.schema, ...pass])
        expect(ok.code, `${pass.join(' ')}: ${ok.stdout}${ok.stderr}`).to.equal(0)
        expect(ok.stdout).to.equal('')
        const bad = await runCli(['check', '--schema', t.schema, ...fail])
        expect(bad.code, `${fail.join(' ')}: ${bad.stderr}`).to.equal(6)
        expect(bad.stdout.trim().split('\n')).to.have.length(1)
        expect(bad.stdout).to.match(line)
      }
    })

    it('several failures: one line each; --json has every check and the same exit code', async () => {
      const result = await runCli([
        'check',
        '--schema',
        t.schema,
        '--max-dlq',
        '0',
        '--max-dead-locks',
        '0',
        '--require-migrated',
        '--json',
      ])
      expect(result.code).to.equal(6)
      const json = parseJson<{ok: boolean; failed: number; checks: {name: string; status: string}[]}>(result)
      expect(json).to.include({ok: false, failed: 2})
      expect(json.checks.map((c) => `${c.name}:${c.status}`)).to.deep.equal([
        'migrated:pass',
        'dlq:fail',
        'dead-locks:fail',
      ])
      const human = await runCli(['check', '--schema', t.schema, '--max-dlq', '0', '--max-dead-locks', '0'])
      expect(
        human.stdout
          .trim()
          .split('\n')
          .map((l) => l.split(':')[0]),
      ).to.deep.equal(['FAIL dlq', 'FAIL dead-locks'])
    })

    it('no threshold: exit 2; un-migrated: exit 4, or 6 with --require-migrated', async () => {
      expect((await runCli(['check', '--schema', t.schema])).code).to.equal(2)
      const schema = uniqueName('nope')
      expect((await runCli(['check', '--schema', schema, '--max-dlq', '0'])).code).to.equal(4)
      const required = await runCli(['check', '--schema', schema, '--require-migrated'])
      expect(required.code).to.equal(6)
      expect(required.stdout).to.match(/^FAIL migrated: schema ".*" does not exist/)
    })
  })

  describe('schema status', () => {
    it('exit 0 on a migrated schema (Node or Rust-migrated), 4 on an empty one', async () => {
      const t = await fresh()
      const node = await runCli(['schema', 'status', '--schema', t.schema])
      expect(node.code, node.stdout + node.stderr).to.equal(0)
      expect(node.stdout).to.match(
        /graphile-worker: revision 19 \(bundled graphile-worker 0\.17\.3 knows up to 19\), no pending migrations/,
      )
      expect(node.stdout).to.match(/migration 19: applied by Node graphile-worker/)

      await t.db.execScript(rustMigration19Sql(t.quoted, t.schema))
      await t.db.execScript(rustMigration20Sql(t.quoted))
      const rust = await runCli(['schema', 'status', '--schema', t.schema, '--json'])
      expect(rust.code).to.equal(0)
      const json = parseJson<{migration19: {by: string}; rust: {migration20: boolean}; actionNeeded: boolean}>(rust)
      expect(json).to.deep.include({migration19: json.migration19, actionNeeded: false})
      expect(json.migration19.by).to.equal('rust')
      expect(json.rust.migration20).to.equal(true)

      const empty = await runCli(['schema', 'status', '--schema', uniqueName('nope')])
      expect(empty.code).to.equal(4)
      expect(empty.stdout).to.match(/error\s+schema ".*" does not exist/)
      expect(empty.stdout).to.match(/→ backfill migrate --schema/)
    })
  })
})
