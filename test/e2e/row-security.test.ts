import {expect} from 'chai'

import {parseJson, runCli} from '../support/cli.js'
import {sql, testDatabaseName, TestSchema, uniqueName, urlForDatabase} from '../support/db.js'
import {TASKS_DIR} from '../support/worker.js'

/**
 * graphile-worker enables row-level security on its private tables without any policy: a
 * role that neither owns them nor bypasses RLS reads zero rows, whatever it was GRANTed.
 * Every command must refuse such a role (exit 3) instead of reporting a confident zero.
 */
describe('row-level security: a role that cannot see the job rows (real non-owner role)', function () {
  this.timeout(120_000)
  let t: TestSchema
  let role: string
  let url: string

  beforeEach(async () => {
    t = await TestSchema.create({migrated: true, prefix: 'rls'})
    role = uniqueName('ops')
    await sql(`create role ${role} login`)
    // What our permission hints used to suggest: every table privilege, and still no rows.
    await t.query(`grant usage on schema ${t.quoted} to ${role}`)
    await t.query(`grant select, insert, update, delete on all tables in schema ${t.quoted} to ${role}`)
    await t.query(`grant usage on all sequences in schema ${t.quoted} to ${role}`)
    for (let i = 0; i < 3; i++) await t.query(`select ${t.quoted}.add_job('work', '{}')`)
    // Three exhausted jobs and one lock two hours old.
    for (let i = 0; i < 3; i++) await t.query(`select ${t.quoted}.add_job('work', '{}', max_attempts => 1)`)
    await t.query(
      `update ${t.quoted}._private_jobs set attempts = max_attempts, last_error = 'boom' where max_attempts = 1`,
    )
    await t.query(`select ${t.quoted}.add_job('work', '{"held":true}')`)
    await t.query(
      `update ${t.quoted}._private_jobs set locked_by = 'pool-gone', locked_at = now() - interval '2 hours', attempts = 1
       where payload->>'held' = 'true'`,
    )
    url = urlForDatabase(testDatabaseName(), role)
  })

  afterEach(async () => {
    await t.drop()
    await sql(`drop owned by ${role}`).catch(() => undefined)
    await sql(`drop role if exists ${role}`)
  })

  const expectRowSecurityRefusal = (result: {code: number | null; stderr: string; stdout: string}): void => {
    expect(result.code, result.stderr + result.stdout).to.equal(3)
    expect(result.stderr).to.contain('row-level security').and.contain(`role "${role}"`)
    // The fix that works (ownership), not another GRANT.
    expect(result.stderr).to.match(/GRANT \S+ TO /)
    expect(result.stderr).not.to.contain('GRANT SELECT')
    expect(result.stderr).not.to.match(/\n\s+at /) // no stack traces
  }

  it('check, status, locks list, dlq capture and schema status fail with exit 3 instead of reporting zero', async () => {
    expectRowSecurityRefusal(await runCli(['check', '--schema', t.schema, '--max-ready', '0'], {databaseUrl: url}))
    expectRowSecurityRefusal(
      await runCli(['check', '--schema', t.schema, '--max-ready', '0', '--require-migrated'], {databaseUrl: url}),
    )
    expectRowSecurityRefusal(await runCli(['status', '--schema', t.schema], {databaseUrl: url}))
    expectRowSecurityRefusal(await runCli(['locks', 'list', '--schema', t.schema], {databaseUrl: url}))
    expectRowSecurityRefusal(await runCli(['dlq', 'capture', '--schema', t.schema, '--yes'], {databaseUrl: url}))
    expectRowSecurityRefusal(await runCli(['schema', 'status', '--schema', t.schema], {databaseUrl: url}))

    const json = await runCli(['status', '--schema', t.schema, '--json'], {databaseUrl: url})
    expect(json.code).to.equal(3)
    const envelope = parseJson<{error: {code: string; details: {tables: string[]; role: string}}}>(json)
    expect(envelope.error.code).to.equal('E_ROW_SECURITY')
    expect(envelope.error.details.role).to.equal(role)
    expect(envelope.error.details.tables).to.include('_private_jobs')
    // Nothing was moved: the three exhausted jobs are still in the jobs table.
    const [{n} = {n: -1}] = await t.query<{n: number}>(
      `select count(*)::int as n from ${t.quoted}._private_jobs where attempts >= max_attempts and locked_at is null`,
    )
    expect(n).to.equal(3)
  })

  it('worker --once --no-migrate fails (exit 3, one clear line) and processes nothing', async () => {
    const result = await runCli(['worker', '--schema', t.schema, '--tasks', TASKS_DIR, '--once', '--no-migrate'], {
      databaseUrl: url,
    })
    expectRowSecurityRefusal(result)
    const [{n} = {n: -1}] = await t.query<{n: number}>(`select count(*)::int as n from ${t.quoted}._private_jobs`)
    expect(n).to.equal(7)
  })

  it('worker --once where a policy lets the role read but not register its tasks: fails instead of exit 0', async () => {
    for (const table of ['_private_jobs', '_private_tasks', '_private_job_queues', '_private_known_crontabs'])
      await t.query(`create policy ops_read on ${t.quoted}.${table} for select to ${role} using (true)`)
    await t.query(`create policy ops_lock on ${t.quoted}._private_jobs for update to ${role} using (true)`)
    // Delete too, so the startup capture works (see the next test) and registration is reached.
    await t.query(`create policy ops_delete on ${t.quoted}._private_jobs for delete to ${role} using (true)`)
    const result = await runCli(['worker', '--schema', t.schema, '--tasks', TASKS_DIR, '--once', '--no-migrate'], {
      databaseUrl: url,
    })
    expect(result.code, result.stderr + result.stdout).to.equal(3)
    expect(result.stderr).to.match(/row-level security policy/)
    expect(result.stderr).not.to.contain('could move only')
    // The three exhausted jobs were captured; nothing ran.
    const [{n} = {n: -1}] = await t.query<{n: number}>(`select count(*)::int as n from ${t.quoted}._private_jobs`)
    expect(n).to.equal(4)
  })

  it('dlq capture where a policy lets the role lock but not delete the jobs: exit 3, nothing moved', async () => {
    for (const table of ['_private_jobs', '_private_tasks', '_private_job_queues', '_private_known_crontabs'])
      await t.query(`create policy ops_read on ${t.quoted}.${table} for select to ${role} using (true)`)
    await t.query(`create policy ops_lock on ${t.quoted}._private_jobs for update to ${role} using (true)`)
    const result = await runCli(['dlq', 'capture', '--schema', t.schema, '--yes'], {databaseUrl: url})
    expect(result.code, result.stderr + result.stdout).to.equal(3)
    expect(result.stderr).to.contain('could move only 0').and.contain('row-level security policy')
    expect(result.stderr).not.to.match(/\n\s+at /)
    const [counts] = await t.query<{jobs: number; dlq: number}>(
      `select (select count(*)::int from ${t.quoted}._private_jobs where attempts >= max_attempts) as jobs,
              (select count(*)::int from ${t.quoted}.backfill_dlq) as dlq`,
    )
    expect(counts).to.deep.equal({jobs: 3, dlq: 0})
  })

  it('the same role sees the truth once it may (member of the owner, or a policy that grants it rows)', async () => {
    const [{owner} = {owner: ''}] = await t.query<{owner: string}>(
      `select pg_get_userbyid(relowner) as owner from pg_class where oid = '${t.quoted}._private_jobs'::regclass`,
    )
    await sql(`grant ${owner} to ${role}`)
    try {
      const check = await runCli(['check', '--schema', t.schema, '--max-ready', '0'], {databaseUrl: url})
      expect(check.code, check.stderr).to.equal(6)
      expect(check.stdout + check.stderr).to.match(/3 ready/)
    } finally {
      await sql(`revoke ${owner} from ${role}`)
    }
    await sql(`alter role ${role} bypassrls`)
    try {
      const status = await runCli(['status', '--schema', t.schema, '--json'], {databaseUrl: url})
      expect(status.code, status.stderr).to.equal(0)
      expect(JSON.stringify(parseJson(status))).to.match(/"ready":3/)
    } finally {
      await sql(`alter role ${role} nobypassrls`)
    }
    for (const table of ['_private_jobs', '_private_tasks', '_private_job_queues', '_private_known_crontabs'])
      await t.query(`create policy ops_all on ${t.quoted}.${table} to ${role} using (true) with check (true)`)
    const locks = await runCli(['locks', 'list', '--schema', t.schema, '--json'], {databaseUrl: url})
    expect(locks.code, locks.stderr).to.equal(0)
    expect(JSON.stringify(parseJson(locks))).to.contain('pool-gone')
  })
})
