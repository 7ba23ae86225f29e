import {spawnSync} from 'node:child_process'
import {mkdtempSync, readFileSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import {expect} from 'chai'

import {graphileBootstrapSql, graphileMigrationSql, graphilePackage} from '../../src/lib/schema/graphile-migrations.js'
import {BIN, cleanEnv, ROOT} from '../support/cli.js'
import {TestSchema} from '../support/db.js'

interface Playbook {
  id: string
  title: string
  blocks: string[]
}

/** Playbooks are marked `<!-- runbook: id -->` before their heading; their ```sh blocks are run. */
function parseRunbook(text: string): Playbook[] {
  const playbooks: Playbook[] = []
  for (const part of text.split(/<!-- runbook: /).slice(1)) {
    const id = part.slice(0, part.indexOf(' -->'))
    const title = /^## (.+)$/m.exec(part)?.[1] ?? id
    const blocks = [...part.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1] as string)
    playbooks.push({id, title, blocks})
  }
  return playbooks
}

const DEAD = 'pool-0123456789abcdef01'

/** A backfill worker that died holding locks: a stale registry row and no presence session. */
async function deadWorkerHolding(t: TestSchema, jobs: number, queue?: string): Promise<void> {
  // Heartbeat ages count from the server's start (restart grace): let one 30 s bound pass.
  const [up] = await t.query<{seconds: number}>(
    `select extract(epoch from now() - pg_postmaster_start_time())::float as seconds`,
  )
  if ((up?.seconds ?? 60) < 31) await new Promise((r) => setTimeout(r, (31 - (up?.seconds ?? 0)) * 1000))
  await t.query(
    `insert into ${t.quoted}.backfill_workers (pool_id, hostname, pid, started_at, last_heartbeat_at, metadata)
    values ($1, 'worker-7.internal', 4242, now() - interval '2 hours', now() - interval '10 minutes', '{"heartbeatIntervalMs": 10000}')`,
    [DEAD],
  )
  await t.query(
    `select ${t.quoted}.add_job('send_email', json_build_object('n', i), queue_name => $1) from generate_series(1, $2::int) i`,
    [queue ?? null, jobs],
  )
  await t.query(
    `update ${t.quoted}._private_jobs set locked_at = now() - interval '3 minutes', locked_by = $1, attempts = 1 where id in (select id from ${t.quoted}._private_jobs order by id limit $2)`,
    [DEAD, jobs],
  )
  if (queue)
    await t.query(
      `update ${t.quoted}._private_job_queues set locked_at = now() - interval '3 minutes', locked_by = $1 where queue_name = $2`,
      [DEAD, queue],
    )
}

async function dlqRows(
  t: TestSchema,
  count: number,
  options: {task: string; error: (i: number) => string; failedAgo?: string},
): Promise<void> {
  for (let i = 1; i <= count; i++) {
    await t.query(
      `insert into ${t.quoted}.backfill_dlq (original_job_id, task_identifier, payload, queue_name, priority, max_attempts, failure_reason, last_error, failed_at)
       values ($1, $2, $3, '', 0, 8, 'Job exceeded maximum retry attempts (8/8)', to_jsonb($4::text), now() - $5::interval)`,
      [100_000 + i, options.task, JSON.stringify({n: i}), options.error(i), options.failedAgo ?? '1 minute'],
    )
  }
}

const setups: Record<string, (t: TestSchema) => Promise<void>> = {
  async backlog(t) {
    await t.query(
      `select ${t.quoted}.add_job('send_email', '{}', run_at => now() - interval '10 minutes') from generate_series(1, 200)`,
    )
    await t.query(`select ${t.quoted}.add_job('resize_image', '{}') from generate_series(1, 20)`)
    await deadWorkerHolding(t, 2)
  },
  async 'host-died'(t) {
    await deadWorkerHolding(t, 3, 'account:42')
  },
  async 'broken-deploy'(t) {
    await dlqRows(t, 12, {
      task: 'send_email',
      error: (i) => `SMTP 421 mailbox user${i}@example.com busy, try again at 2026-11-23T10:0${i % 10}:00Z`,
    })
    await dlqRows(t, 3, {task: 'resize_image', error: (i) => `image ${i} not found`})
    await t.query(
      `select ${t.quoted}.add_job('send_email', '{"left":"behind"}', max_attempts => 1) from generate_series(1, 3)`,
    )
    await t.query(`update ${t.quoted}._private_jobs set attempts = 1, last_error = 'SMTP 421 busy'`)
  },
  async 'failing-loop'(t) {
    for (let i = 1; i <= 10; i++)
      await t.query(
        `select ${t.quoted}.add_job('send_invoice', json_build_object('invoice', $1::int), job_key => 'invoice:' || $1, max_attempts => 25)`,
        [i],
      )
    await t.query(
      `update ${t.quoted}._private_jobs set attempts = 3, run_at = now() + interval '2 minutes', last_error = 'template "invoice.html" not found'`,
    )
    // Another task keeps running normally, and one send_invoice job is on a worker right now.
    await t.query(`select ${t.quoted}.add_job('send_email', '{}') from generate_series(1, 5)`)
    await t.query(
      `update ${t.quoted}._private_jobs set locked_at = now(), locked_by = 'pool-0123456789abcdef02', attempts = 4 where key = 'invoice:10'`,
    )
  },
  async 'fleet-down'(t) {
    // Ready jobs, and the only worker seen died holding two of them.
    await t.query(`select ${t.quoted}.add_job('send_email', '{}') from generate_series(1, 5)`)
    await deadWorkerHolding(t, 2)
  },
  async purge(t) {
    await dlqRows(t, 20, {task: 'send_email', error: () => 'old failure', failedAgo: '40 days'})
    await dlqRows(t, 5, {task: 'send_email', error: () => 'recent failure'})
  },
  async upgrade(t) {
    // A schema at graphile-worker revision 18 (a Node 0.16 install): migration 19 (breaking) pending.
    const quoted = t.quoted
    await t.db.execScript(graphileBootstrapSql(quoted))
    for (const m of graphilePackage().migrations.filter((m) => m.id <= 18))
      await t.db.execScript(graphileMigrationSql(quoted, m))
  },
  async 'ci-setup'() {},
}

const checks: Record<string, (t: TestSchema) => Promise<void>> = {
  async backlog(t) {
    expect(await t.query(`select 1 from ${t.quoted}._private_jobs`)).to.have.length(222)
  },
  async 'host-died'(t) {
    expect(await t.query(`select 1 from ${t.quoted}._private_jobs where locked_at is not null`)).to.have.length(0)
    expect(await t.query(`select 1 from ${t.quoted}._private_job_queues where locked_at is not null`)).to.have.length(0)
    expect(await t.query(`select 1 from ${t.quoted}._private_jobs`)).to.have.length(3)
  },
  async 'broken-deploy'(t) {
    const left = await t.query<{task_identifier: string}>(`select task_identifier from ${t.quoted}.backfill_dlq`)
    // The send_email group went back to the jobs table; the captured leftovers and resize_image stay.
    expect(left.filter((r) => r.task_identifier === 'resize_image')).to.have.length(3)
    expect(await t.query(`select 1 from ${t.quoted}._private_jobs where payload::jsonb ? 'n'`)).to.have.length(12)
    expect(await t.query(`select 1 from ${t.quoted}._private_jobs where attempts >= max_attempts`)).to.have.length(0)
  },
  async 'failing-loop'(t) {
    // Nine parked and retried as fresh jobs; the running one was left alone; send_email untouched.
    const jobs = await t.query<{key: string | null; attempts: number; task: string}>(
      `select j.key, j.attempts, t.identifier as task from ${t.quoted}._private_jobs j join ${t.quoted}._private_tasks t on t.id = j.task_id`,
    )
    expect(jobs.filter((j) => j.task === 'send_email')).to.have.length(5)
    const invoices = jobs.filter((j) => j.task === 'send_invoice')
    expect(invoices).to.have.length(10)
    expect(invoices.filter((j) => j.attempts === 0)).to.have.length(9)
    expect(await t.query(`select 1 from ${t.quoted}.backfill_dlq`)).to.have.length(0)
    const actions = await t.query<{action: string}>(`select distinct action from ${t.quoted}.backfill_dlq_audit`)
    expect(actions.map((a) => a.action).sort()).to.deep.equal(['jobs.fail', 'retry'])
  },
  async 'fleet-down'(t) {
    // Read-only playbook up to the dry run: the dead worker's locks are still there.
    expect(await t.query(`select 1 from ${t.quoted}._private_jobs where locked_at is not null`)).to.have.length(2)
  },
  async purge(t) {
    expect(await t.query(`select 1 from ${t.quoted}.backfill_dlq`)).to.have.length(5)
  },
  async upgrade(t) {
    const [row] = await t.query<{id: number}>(`select max(id) as id from ${t.quoted}.migrations`)
    expect(row?.id).to.equal(19)
  },
  async 'ci-setup'(t) {
    const [row] = await t.query<{id: number}>(`select max(id) as id from ${t.quoted}.migrations`)
    expect(row?.id).to.equal(19)
  },
}

describe('docs/runbook.md: every command block runs against a prepared database', function () {
  this.timeout(120_000)
  const playbooks = parseRunbook(readFileSync(path.join(ROOT, 'docs', 'runbook.md'), 'utf8'))

  it('has the playbooks the on-call team needs, each with commands', () => {
    expect(playbooks.map((p) => p.id)).to.deep.equal([
      'backlog',
      'host-died',
      'broken-deploy',
      'failing-loop',
      'fleet-down',
      'purge',
      'upgrade',
      'ci-setup',
    ])
    for (const p of playbooks) expect(p.blocks.length, p.id).to.be.greaterThan(0)
  })

  for (const playbook of parseRunbook(readFileSync(path.join(ROOT, 'docs', 'runbook.md'), 'utf8'))) {
    it(`${playbook.title}`, async function () {
      if (playbook.blocks.some((b) => /\bpsql\b/.test(b)) && spawnSync('psql', ['--version']).status !== 0) this.skip()
      const t = await TestSchema.create({
        migrated: playbook.id !== 'upgrade' && playbook.id !== 'ci-setup',
        prefix: 'rb',
      })
      try {
        await setups[playbook.id]?.(t)
        const dir = mkdtempSync(path.join(os.tmpdir(), 'runbook-'))
        // One shell per playbook, so variables set in one block (GROUP=…) reach the next.
        const script = path.join(dir, 'playbook.sh')
        writeFileSync(
          script,
          [
            `backfill() { "${process.execPath}" "${BIN}" "$@"; }`,
            ...playbook.blocks.map((b, i) => `echo "### block ${i + 1}" >&2\n${b}`),
          ].join('\n'),
        )
        const result = spawnSync('bash', ['-euo', 'pipefail', script], {
          cwd: dir,
          env: cleanEnv({DATABASE_URL: t.url, GRAPHILE_WORKER_SCHEMA: t.schema, NO_COLOR: '1'}),
          encoding: 'utf8',
          timeout: 90_000,
        })
        expect(
          result.status,
          `"${playbook.title}" failed (see the last ### block):\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`,
        ).to.equal(0)
        await checks[playbook.id]?.(t)
      } finally {
        await t.drop()
      }
    })
  }
})
