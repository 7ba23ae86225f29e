import {expect} from 'chai'
import pg from 'pg'

import {parseJson, runCli} from '../support/cli.js'
import {sql, testDatabaseName, TestSchema, testUrl, urlForDatabase} from '../support/db.js'

interface Report {
  schema: string
  settings: {mode: string; concurrency: number}
  enqueue: {jobs: number; jobsPerSecond: number}
  processing: {jobs: number; jobsPerSecond: number}
  latencyMs: {samples: number; p50: number; p99: number} | null
  schemaDropped: boolean
  database: {name: string; throwaway: boolean; sharedBecause?: string}
}

/** Collects graphile's database-wide migration notices in the test database while fn runs. */
async function migrationNotices(fn: () => Promise<void>): Promise<string[]> {
  const client = new pg.Client({connectionString: testUrl()})
  await client.connect()
  const heard: string[] = []
  client.on('notification', (n) => heard.push(n.payload ?? ''))
  await client.query('LISTEN "worker:migrate"')
  try {
    await fn()
    await new Promise((r) => setTimeout(r, 200))
  } finally {
    await client.end()
  }
  return heard
}

describe('backfill bench (real binary)', function () {
  this.timeout(120_000)

  it('burn-down: enqueues, works off every job, measures latency, and drops its schema', async () => {
    const result = await runCli(['bench', '--jobs', '2000', '--concurrency', '4', '--latency-samples', '10', '--json'])
    expect(result.code, result.stderr).to.equal(0)
    const report = parseJson<Report>(result)
    expect(report.settings).to.include({mode: 'burn-down', concurrency: 4})
    expect(report.enqueue.jobs).to.equal(2000)
    expect(report.processing.jobs).to.equal(2000)
    expect(report.processing.jobsPerSecond).to.be.greaterThan(0)
    expect(report.latencyMs?.samples).to.equal(10)
    expect(report.latencyMs!.p50).to.be.greaterThan(0)
    expect(report.schema).to.match(/^backfill_bench_[0-9a-f]{8}$/)
    const left = await sql(`select 1 from pg_namespace where nspname = $1`, [report.schema])
    expect(left).to.have.length(0)
    expect(result.stderr).to.contain('processing').and.contain('cleaning up')
  })

  it('runs in a throwaway database of its own: the migration is announced to no pool of the target database', async () => {
    let result: Awaited<ReturnType<typeof runCli>> | undefined
    const heard = await migrationNotices(async () => {
      result = await runCli(['bench', '--jobs', '200', '--latency-samples', '0', '--json'])
    })
    expect(result!.code, result!.stderr).to.equal(0)
    const report = parseJson<Report>(result!)
    expect(report.database.throwaway).to.equal(true)
    expect(report.database.name).to.match(/^backfill_bench_[0-9a-f]{8}$/)
    expect(heard, 'breaking-migration notices reached the target database').to.deep.equal([])
    expect(await sql(`select 1 from pg_database where datname = $1`, [report.database.name])).to.have.length(0)
  })

  it('--same-database runs in a schema of the target database (its migration is announced there) and says so', async () => {
    let result: Awaited<ReturnType<typeof runCli>> | undefined
    const heard = await migrationNotices(async () => {
      result = await runCli(['bench', '--same-database', '--jobs', '200', '--latency-samples', '0', '--json'])
    })
    expect(result!.code, result!.stderr).to.equal(0)
    const report = parseJson<Report>(result!)
    expect(report.database).to.deep.include({throwaway: false})
    expect(report.database.sharedBecause).to.match(/--same-database/)
    expect(heard.some((payload) => JSON.parse(payload).breaking === true)).to.equal(true)
  })

  it('falls back to a schema of the target database when the role may not create databases, and says why', async () => {
    const role = `bench_nocreatedb_${Date.now()}`
    const database = testDatabaseName()
    await sql(`create role ${role} login nocreatedb`)
    await sql(`grant create on database ${database} to ${role}`)
    try {
      const result = await runCli(['bench', '--jobs', '200', '--latency-samples', '0', '--json'], {
        databaseUrl: urlForDatabase(database, role),
      })
      expect(result.code, result.stderr).to.equal(0)
      const report = parseJson<Report>(result)
      expect(report.database).to.deep.equal({
        name: database,
        throwaway: false,
        sharedBecause: `role "${role}" may not create databases`,
      })
      expect(report.processing.jobs).to.equal(200)
    } finally {
      await sql(`revoke create on database ${database} from ${role}`)
      await sql(`drop owned by ${role}`)
      await sql(`drop role ${role}`)
    }
  })

  it('continuous mode measures a fixed window', async () => {
    const result = await runCli(['bench', '--duration', '2s', '--latency-samples', '0', '--json'])
    expect(result.code, result.stderr).to.equal(0)
    const report = parseJson<Report>(result)
    expect(report.settings.mode).to.equal('continuous')
    expect(report.processing.jobs).to.be.greaterThan(0)
    expect(report.latencyMs).to.equal(null)
  })

  it('refuses a schema it did not create, or one with jobs (exit 4), and leaves it alone', async () => {
    const t = await TestSchema.create({migrated: true, prefix: 'benchref'})
    try {
      await t.query(`select ${t.quoted}.add_job('x', '{}')`)
      const result = await runCli(['bench', '--schema', t.schema, '--jobs', '100'])
      expect(result.code).to.equal(4)
      expect(result.stderr).to.contain(`schema "${t.schema}" already exists and holds jobs`)
      expect(await t.query(`select 1 from ${t.quoted}._private_jobs`)).to.have.length(1)
    } finally {
      await t.drop()
    }
  })
})
