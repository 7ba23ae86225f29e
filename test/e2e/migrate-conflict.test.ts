import {expect} from 'chai'

import {parseJson, runCli} from '../support/cli.js'
import {createDatabase, dropDatabase, sql, uniqueName} from '../support/db.js'

/** Everything in schema public a migrate could touch: relations with their columns, functions, rows of migrations. */
async function snapshot(url: string): Promise<string> {
  const relations = await sql(
    `select c.relname, c.relkind, coalesce(string_agg(a.attname || ':' || format_type(a.atttypid, a.atttypmod), ',' order by a.attnum), '') as cols
     from pg_class c join pg_namespace n on n.oid = c.relnamespace
     left join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
     where n.nspname = 'public' group by c.relname, c.relkind order by 1`,
    [],
    url,
  )
  const functions = await sql(
    `select p.proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname = 'public' order by 1`,
    [],
    url,
  )
  const schemas = await sql(`select nspname from pg_namespace where nspname not like 'pg_%' order by 1`, [], url)
  return JSON.stringify({relations, functions, schemas})
}

/**
 * `migrate --schema public` in a database where another tool already has a `jobs` or
 * `migrations` table: refuse before changing anything (exit 4), never a raw SQL error
 * with graphile's half-made ledger left behind.
 */
describe('migrate into a schema that holds another tool’s jobs/migrations tables (real binary)', function () {
  this.timeout(120_000)
  let database: string
  let url: string

  beforeEach(async () => {
    database = uniqueName('conflict')
    url = await createDatabase(database)
  })
  afterEach(async () => {
    await dropDatabase(database)
  })

  it("another tool's jobs table → exit 4 naming it; nothing created (no empty public.migrations)", async () => {
    await sql(`create table public.jobs (id serial primary key, title text not null)`, [], url)
    await sql(`insert into public.jobs (title) values ('not a graphile job')`, [], url)
    const before = await snapshot(url)
    for (const args of [
      ['migrate', '--schema', 'public'],
      ['migrate', '--schema', 'public', '--dry-run'],
    ]) {
      const result = await runCli(args, {databaseUrl: url})
      expect(result.code, result.stderr + result.stdout).to.equal(4)
      expect(result.stderr)
        .to.contain('public')
        .and.contain('jobs')
        .and.match(/graphile_worker/)
      expect(result.stderr).not.to.match(/database error|E_INTERNAL/)
      expect(await snapshot(url)).to.equal(before)
    }
    const json = await runCli(['migrate', '--schema', 'public', '--json'], {databaseUrl: url})
    expect(json.code).to.equal(4)
    const envelope = parseJson<{error: {code: string; details: {conflicts: string[]}}}>(json)
    expect(envelope.error.code).to.equal('E_SCHEMA_CONFLICT')
    expect(envelope.error.details.conflicts).to.include('jobs')
    expect(await snapshot(url)).to.equal(before)
  })

  it("another tool's migrations ledger → exit 4; the table keeps its shape and rows (no breaking column added)", async () => {
    await sql(
      `create table public.migrations (id serial primary key, name varchar(255) not null, run_on timestamp not null)`,
      [],
      url,
    )
    await sql(`insert into public.migrations (name, run_on) values ('20240101-init', now())`, [], url)
    const before = await snapshot(url)
    const result = await runCli(['migrate', '--schema', 'public'], {databaseUrl: url})
    expect(result.code, result.stderr + result.stdout).to.equal(4)
    expect(result.stderr).to.contain('migrations').and.contain('not graphile-worker')
    expect(await snapshot(url)).to.equal(before)
    // The read-only commands say "not installed", not a SQL error about its columns.
    const status = await runCli(['schema', 'status', '--schema', 'public', '--json'], {databaseUrl: url})
    expect(status.code, status.stderr).to.equal(4)
    const report = parseJson<{findings: {code: string}[]}>(status)
    expect(report.findings.map((f) => f.code)).to.include('foreign-ledger')
    expect(await snapshot(url)).to.equal(before)
  })

  it('a clean public schema still installs (the check does not refuse graphile-worker itself)', async () => {
    const result = await runCli(['migrate', '--schema', 'public'], {databaseUrl: url})
    expect(result.code, result.stderr).to.equal(0)
    const again = await runCli(['migrate', '--schema', 'public'], {databaseUrl: url})
    expect(again.code, again.stderr).to.equal(0)
  })
})
