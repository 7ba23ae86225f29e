import {expect} from 'chai'

import {parseJson, runCli} from '../support/cli.js'
import {sql, TestSchema} from '../support/db.js'

interface Report {
  schema: string
  settings: {mode: string; concurrency: number}
  enqueue: {jobs: number; jobsPerSecond: number}
  processing: {jobs: number; jobsPerSecond: number}
  latencyMs: {samples: number; p50: number; p99: number} | null
  schemaDropped: boolean
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
