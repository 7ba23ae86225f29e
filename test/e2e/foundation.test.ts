import {expect} from 'chai'

import {parseJson, runCli} from '../support/cli.js'
import {catalogSnapshot} from '../support/catalog.js'
import {
  createDatabase,
  dropDatabase,
  sql,
  testDatabaseName,
  TestSchema,
  uniqueName,
  urlForDatabase,
} from '../support/db.js'
import {rustDlqTableSql, rustMigration20Sql} from '../fixtures/rust.js'
import {execFileSync, spawnSync} from 'node:child_process'

const ANSI = /\u001B\[/

async function schemaExists(schema: string, url?: string): Promise<boolean> {
  const rows = await sql<{exists: boolean}>(
    'select exists (select 1 from pg_namespace where nspname = $1) as exists',
    [schema],
    url,
  )
  return rows[0]?.exists ?? false
}

describe('backfill migrate / init-dlq / schema print (real binary)', () => {
  const schemas: TestSchema[] = []
  const fresh = async (migrated = false): Promise<TestSchema> => {
    const t = await TestSchema.create({migrated})
    schemas.push(t)
    return t
  }
  after(async () => {
    for (const t of schemas) await t.drop()
  })

  it('migrate installs graphile-worker and the DLQ; a rerun says up to date', async () => {
    const t = await fresh()
    const first = await runCli(['migrate', '--schema', t.schema])
    expect(first.code, first.stderr).to.equal(0)
    expect(first.stdout).to.contain('applied graphile-worker migrations 1..19')
    const rows = await t.query<{id: number}>(`select id from ${t.quoted}.migrations order by id`)
    expect(rows.map((r) => r.id)).to.deep.equal(Array.from({length: 19}, (_, i) => i + 1))
    const columns = await t.query<{column_name: string}>(
      `select column_name from information_schema.columns where table_schema = $1 and table_name = 'backfill_dlq' order by ordinal_position`,
      [t.schema],
    )
    expect(columns.map((c) => c.column_name)).to.deep.equal([
      'id',
      'original_job_id',
      'task_identifier',
      'payload',
      'queue_name',
      'priority',
      'job_key',
      'max_attempts',
      'failure_reason',
      'failure_count',
      'last_error',
      'original_created_at',
      'original_run_at',
      'failed_at',
      'requeued_count',
      'last_requeued_at',
      'notes',
      // Ours, after the crate's 17 (it names the columns it writes and reads).
      'error_fingerprint',
      'error_fingerprint_at',
    ])
    const unique = await t.query(
      `select 1 from pg_indexes where schemaname = $1 and indexname = 'idx_backfill_dlq_job_key_unique' and indexdef like 'CREATE UNIQUE INDEX%WHERE (job_key IS NOT NULL)'`,
      [t.schema],
    )
    expect(unique).to.have.length(1)

    const again = await runCli(['migrate', '--schema', t.schema, '--json'])
    expect(again.code).to.equal(0)
    const result = parseJson<{upToDate: boolean; applied: number[]; revisionAfter: number}>(again)
    expect(result).to.include({upToDate: true, revisionAfter: 19})
    expect(result.applied).to.deep.equal([])
  })

  it('two migrate processes started together on an empty schema both succeed and leave one schema', async () => {
    const t = await fresh()
    const [a, b] = await Promise.all([
      runCli(['migrate', '--schema', t.schema]),
      runCli(['migrate', '--schema', t.schema]),
    ])
    expect(a.code, a.stderr).to.equal(0)
    expect(b.code, b.stderr).to.equal(0)
    const rows = await t.query<{id: number; n: number}>(
      `select id, count(*)::int as n from ${t.quoted}.migrations group by id order by id`,
    )
    expect(rows.map((r) => r.id)).to.deep.equal(Array.from({length: 19}, (_, i) => i + 1))
    expect(rows.every((r) => r.n === 1)).to.equal(true)
    const tables = await t.query(`select 1 from pg_tables where schemaname = $1 and tablename = 'backfill_dlq'`, [
      t.schema,
    ])
    expect(tables).to.have.length(1)
  })

  it('--dry-run reports what would be applied and writes nothing', async () => {
    const schema = uniqueName('dry')
    const result = await runCli(['migrate', '--schema', schema, '--dry-run', '--show-sql', '--json'])
    expect(result.code, result.stderr).to.equal(0)
    const json = parseJson<{
      dryRun: boolean
      revisionBefore: null
      applied: number[]
      sql: string
      dlq: {created: string[]}
    }>(result)
    expect(json.dryRun).to.equal(true)
    expect(json.revisionBefore).to.equal(null)
    expect(json.applied).to.have.length(19)
    expect(json.dlq.created).to.include('backfill_dlq')
    expect(json.sql).to.contain(`create table if not exists "${schema}".backfill_dlq`)
    expect(await schemaExists(schema)).to.equal(false)
  })

  it('a schema the Rust graphile_worker migrated to 20 is reported, not failed', async () => {
    const t = await fresh(true)
    await t.db.execScript(rustMigration20Sql(t.quoted))
    const result = await runCli(['migrate', '--schema', t.schema, '--json'])
    expect(result.code, result.stderr).to.equal(0)
    const json = parseJson<{unknownMigrations: number[]; notes: string[]; upToDate: boolean; revisionAfter: number}>(
      result,
    )
    expect(json.unknownMigrations).to.deep.equal([20])
    expect(json.revisionAfter).to.equal(20)
    expect(json.upToDate).to.equal(true)
    expect(json.notes.join('\n')).to.match(/migration 20 unknown to graphile-worker 0\.17\.3.*Rust graphile_worker/)
  })

  it('refuses (exit 4) a schema with a breaking migration newer than the bundled graphile-worker', async () => {
    const t = await fresh(true)
    await t.query(`insert into ${t.quoted}.migrations (id, breaking) values (25, true)`)
    const result = await runCli(['migrate', '--schema', t.schema])
    expect(result.code).to.equal(4)
    expect(result.stderr).to.match(/breaking migration 25.*refusing/)
  })

  it("init-dlq completes a table made from the crate's SQL file (no unique index), keeping rows and widening VARCHARs", async () => {
    const t = await fresh(true)
    await t.query(`drop table ${t.quoted}.backfill_dlq`)
    await t.db.execScript(rustDlqTableSql(t.quoted, {uniqueIndex: false}))
    await t.query(
      `insert into ${t.quoted}.backfill_dlq (task_identifier, payload, queue_name, job_key, failure_reason) values ('send_email', '{"a":1}', '', 'k1', 'x'), ('resize', '{}', 'default', null, 'y')`,
    )
    const result = await runCli(['init-dlq', '--schema', t.schema, '--json'])
    expect(result.code, result.stderr).to.equal(0)
    const json = parseJson<{created: string[]; tableExisted: boolean}>(result)
    expect(json.tableExisted).to.equal(true)
    expect(json.created).to.include.members(['idx_backfill_dlq_job_key_unique', 'backfill_dlq.queue_name as text'])
    expect((await t.query(`select count(*)::int as n from ${t.quoted}.backfill_dlq`))[0]).to.deep.equal({n: 2})
    const types = await t.query<{column_name: string; data_type: string}>(
      `select column_name, data_type from information_schema.columns where table_schema = $1 and table_name = 'backfill_dlq' and column_name in ('task_identifier','queue_name','job_key') order by 1`,
      [t.schema],
    )
    expect(types.every((r) => r.data_type === 'text')).to.equal(true)
    const again = await runCli(['init-dlq', '--schema', t.schema])
    expect(again.code).to.equal(0)
    expect(again.stdout).to.contain('up to date')
  })

  it('init-dlq refuses (exit 4) to add the unique index over duplicate keys, and changes nothing', async () => {
    const t = await fresh(true)
    await t.query(`drop table ${t.quoted}.backfill_dlq`)
    await t.db.execScript(rustDlqTableSql(t.quoted, {uniqueIndex: false}))
    await t.query(
      `insert into ${t.quoted}.backfill_dlq (task_identifier, payload, job_key, failure_reason) values ('a', '{}', 'dup', 'x'), ('a', '{}', 'dup', 'y')`,
    )
    const result = await runCli(['init-dlq', '--schema', t.schema])
    expect(result.code).to.equal(4)
    expect(result.stderr).to.contain('"dup" ×2').and.contain('delete from')
    const idx = await t.query(
      `select indexname from pg_indexes where schemaname = $1 and tablename = 'backfill_dlq' order by 1`,
      [t.schema],
    )
    expect(idx.map((r) => r.indexname)).not.to.include('idx_backfill_dlq_job_key_unique')
    const types = await t.query<{data_type: string}>(
      `select data_type from information_schema.columns where table_schema = $1 and table_name = 'backfill_dlq' and column_name = 'queue_name'`,
      [t.schema],
    )
    expect(types[0]?.data_type).to.equal('character varying')
  })

  it('init-dlq --recount measures (--dry-run) and corrects failure-group counts the triggers missed', async () => {
    const t = await fresh(true)
    const entry = (task: string): string =>
      `insert into ${t.quoted}.backfill_dlq (task_identifier, payload, failure_reason, error_fingerprint, error_fingerprint_at, failed_at)
       values ('${task}', '{}', 'x', '${task}-e', '2024-01-01', '2024-01-01')`
    await t.query(`${entry('a')}; ${entry('a')}; ${entry('b')}`)
    await t.query(`alter table ${t.quoted}.backfill_dlq disable trigger backfill_dlq_group_counts_insert;
      ${entry('a')}; ${entry('c')};
      alter table ${t.quoted}.backfill_dlq enable trigger backfill_dlq_group_counts_insert`)
    const dry = await runCli(['init-dlq', '--schema', t.schema, '--recount', '--dry-run', '--json'])
    expect(dry.code, dry.stderr).to.equal(0)
    expect(parseJson<{recount: unknown}>(dry).recount).to.deep.equal({groups: 2, entries: 2, total: 5, dryRun: true})
    const text = await runCli(['init-dlq', '--schema', t.schema, '--recount'])
    expect(text.code, text.stderr).to.equal(0)
    expect(text.stdout)
      .to.contain('up to date')
      .and.contain(
        'failure-group counts corrected: 2 failure groups were off by 2 entries in total (5 fingerprinted entries)',
      )
    const counts = await t.query(
      `select task_identifier, entries::int from ${t.quoted}.backfill_dlq_group_counts order by 1`,
    )
    expect(counts).to.deep.equal([
      {task_identifier: 'a', entries: 3},
      {task_identifier: 'b', entries: 1},
      {task_identifier: 'c', entries: 1},
    ])
    const again = await runCli(['init-dlq', '--schema', t.schema, '--recount'])
    expect(again.stdout).to.contain('failure-group counts match a fresh count (5 fingerprinted entries)')
  })

  it('init-dlq creates the schema when it does not exist', async () => {
    const schema = uniqueName('dlqonly')
    try {
      const result = await runCli(['init-dlq', '--schema', schema])
      expect(result.code, result.stderr).to.equal(0)
      expect(
        await sql(`select 1 from pg_tables where schemaname = $1 and tablename = 'backfill_dlq'`, [schema]),
      ).to.have.length(1)
    } finally {
      await sql(`drop schema if exists "${schema}" cascade`)
    }
  })

  describe('schema print', () => {
    const databases: string[] = []
    after(async () => {
      for (const name of databases) await dropDatabase(name)
    })

    it('applied with psql to an empty database gives the same catalog as migrate', async function () {
      const psql = spawnSync('psql', ['--version'])
      if (psql.status !== 0) this.skip()
      const viaMigrate = uniqueName('db_migrate')
      const viaPrint = uniqueName('db_print')
      databases.push(viaMigrate, viaPrint)
      const migrateUrl = await createDatabase(viaMigrate)
      const printUrl = await createDatabase(viaPrint)
      const migrated = await runCli(['migrate', '--schema', 'jobs'], {databaseUrl: migrateUrl})
      expect(migrated.code, migrated.stderr).to.equal(0)
      const printed = await runCli(['schema', 'print', '--schema', 'jobs'], {databaseUrl: null})
      expect(printed.code, printed.stderr).to.equal(0)
      execFileSync('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', '-', printUrl], {
        input: printed.stdout,
        stdio: ['pipe', 'ignore', 'pipe'],
      })
      const a = await catalogSnapshot(migrateUrl, 'jobs')
      const b = await catalogSnapshot(printUrl, 'jobs')
      expect(a.migrations).to.have.length(19)
      expect(a.functions?.length).to.be.greaterThan(5)
      expect(b).to.deep.equal(a)
      // A worker's migrate afterwards finds nothing to do.
      const after = await runCli(['migrate', '--schema', 'jobs', '--json'], {databaseUrl: printUrl})
      expect(parseJson<{upToDate: boolean}>(after).upToDate).to.equal(true)
      // `migrate --dry-run --show-sql` on an empty database prints SQL that builds the same catalog.
      const viaDryRun = uniqueName('db_dryrun')
      databases.push(viaDryRun)
      const dryRunUrl = await createDatabase(viaDryRun)
      const plan = await runCli(['migrate', '--schema', 'jobs', '--dry-run', '--show-sql', '--quiet'], {
        databaseUrl: dryRunUrl,
      })
      expect(plan.code, plan.stderr).to.equal(0)
      execFileSync('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', '-', dryRunUrl], {
        input: plan.stdout,
        stdio: ['pipe', 'ignore', 'pipe'],
      })
      expect(await catalogSnapshot(dryRunUrl, 'jobs')).to.deep.equal(a)
    })

    it('needs no database and no configuration', async () => {
      const result = await runCli(['schema', 'print', '--dlq-only'], {databaseUrl: null, env: {PGHOST: undefined}})
      expect(result.code).to.equal(0)
      expect(result.stdout).to.contain('"graphile_worker".backfill_dlq')
      expect(result.stdout).not.to.contain('migrations (id, breaking)')
    })
  })

  describe('bad input: a clear error, a documented exit code, nothing created', () => {
    it('unknown flag → 2', async () => {
      const result = await runCli(['migrate', '--no-such-flag'])
      expect(result.code).to.equal(2)
      expect(result.stderr).to.contain('Nonexistent flag: --no-such-flag')
    })

    it('unsafe schema names → 2, before connecting', async () => {
      for (const schema of ['x; drop table y', 'Robert"', '1abc']) {
        const result = await runCli(['migrate', '--schema', schema], {
          databaseUrl: 'postgres://nobody@127.0.0.1:1/none',
        })
        expect(result.code, schema).to.equal(2)
        expect(result.stderr).to.contain('invalid schema name')
      }
      expect(await schemaExists('x; drop table y')).to.equal(false)
    })

    it('unreachable database → 3 with a pg_isready hint and no password', async () => {
      const result = await runCli(['migrate'], {databaseUrl: 'postgres://app:Sup3rSecret@127.0.0.1:1/app'})
      expect(result.code).to.equal(3)
      expect(result.stderr).to.contain('connection refused').and.contain('pg_isready -h 127.0.0.1 -p 1')
      expect(result.stderr + result.stdout).not.to.contain('Sup3rSecret')
      const json = await runCli(['migrate', '--json'], {databaseUrl: 'postgres://app:Sup3rSecret@127.0.0.1:1/app'})
      expect(json.code).to.equal(3)
      const envelope = parseJson<{error: {code: string; exitCode: number; message: string}}>(json)
      expect(envelope.error).to.include({code: 'E_CONNECTION', exitCode: 3})
      expect(json.stdout + json.stderr).not.to.contain('Sup3rSecret')
      // Passwords libpq accepts but URL parsers choke on (an unencoded @, / or #).
      for (const url of [
        'postgres://app:Sup3r@Secret@127.0.0.1:1/app',
        'postgres://app:Sup3r/Secret@127.0.0.1:1/app',
        'postgres://app:Sup3r#Secret@127.0.0.1:1/app',
      ]) {
        for (const args of [['migrate'], ['migrate', '--json']]) {
          const run = await runCli(args, {databaseUrl: url})
          expect(run.code, url).to.equal(3)
          expect(run.stdout + run.stderr, url).not.to.contain('Secret')
        }
      }
    })

    it('a database that does not exist → 3 with a createdb hint', async () => {
      const result = await runCli(['migrate'], {databaseUrl: urlForDatabase('no_such_db_xyz')})
      expect(result.code).to.equal(3)
      expect(result.stderr).to.contain('database "no_such_db_xyz" does not exist').and.contain('createdb')
    })

    it('no database configured → 3 naming every option', async () => {
      const result = await runCli(['migrate'], {databaseUrl: null})
      expect(result.code).to.equal(3)
      expect(result.stderr)
        .to.contain('no database configured')
        .and.contain('DATABASE_URL')
        .and.contain('PGHOST')
        .and.contain('--embedded')
    })

    it('a role without CREATE permission → 3 with a GRANT hint; nothing created; password not printed', async () => {
      const role = uniqueName('nocreate')
      await sql(`create role ${role} login password 'Pa55word-xyz'`)
      try {
        const url = urlForDatabase(testDatabaseName(), `${role}:Pa55word-xyz`)
        const schema = uniqueName('denied')
        const result = await runCli(['migrate', '--schema', schema], {databaseUrl: url})
        expect(result.code, result.stderr).to.equal(3)
        expect(result.stderr)
          .to.contain('permission denied')
          .and.contain(`GRANT CREATE ON DATABASE ${testDatabaseName()} TO ${role}`)
        expect(result.stderr).not.to.contain('Pa55word-xyz')
        expect(await schemaExists(schema)).to.equal(false)
      } finally {
        await sql(`drop role ${role}`)
      }
    })
  })

  it('a role that may use the schema but not read its tables → 3 naming the owner membership (not CREATE, not a table GRANT: row security)', async () => {
    const t = await fresh(true)
    const role = uniqueName('reader')
    await sql(`create role ${role} login`)
    try {
      await t.query(`grant usage on schema ${t.quoted} to ${role}`)
      const result = await runCli(['status', '--schema', t.schema], {
        databaseUrl: urlForDatabase(testDatabaseName(), role),
      })
      expect(result.code, result.stderr).to.equal(3)
      const [owner] = await sql<{name: string}>('select current_user as name')
      expect(result.stderr).to.contain(`GRANT ${owner?.name} TO ${role}`).and.contain('row-level security')
      expect(result.stderr).not.to.contain('GRANT SELECT')
      expect(result.stderr).not.to.contain('GRANT CREATE ON DATABASE')
    } finally {
      await t.query(`revoke usage on schema ${t.quoted} from ${role}`)
      await sql(`drop role ${role}`)
    }
  })

  describe('output contract', () => {
    it('--json prints exactly one JSON document on stdout', async () => {
      const t = await fresh(true)
      const result = await runCli(['migrate', '--schema', t.schema, '--json'])
      expect(result.code).to.equal(0)
      expect(() => JSON.parse(result.stdout)).not.to.throw()
      expect(result.stdout.trim().startsWith('{')).to.equal(true)
    })

    it('no colour codes when piped, or with NO_COLOR even if FORCE_COLOR is set', async () => {
      const t = await fresh(true)
      const piped = await runCli(['migrate', '--schema', t.schema])
      expect(piped.stderr + piped.stdout).not.to.match(ANSI)
      // Errors and table headers are styled: FORCE_COLOR colours them even on a pipe, NO_COLOR wins.
      const forced = await runCli(['migrate', '--schema', 'Bad-Name'], {env: {FORCE_COLOR: '1'}})
      expect(forced.stderr).to.match(ANSI)
      const noColor = await runCli(['migrate', '--schema', 'Bad-Name'], {env: {FORCE_COLOR: '1', NO_COLOR: '1'}})
      expect(noColor.stderr + noColor.stdout).not.to.match(ANSI)
      const table = await runCli(['locks', 'list', '--schema', t.schema], {env: {FORCE_COLOR: '1', NO_COLOR: '1'}})
      expect(table.stderr + table.stdout).not.to.match(ANSI)
    })
  })
})
