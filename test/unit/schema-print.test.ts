import {expect} from 'chai'

import {parseSchemaName} from '../../src/lib/identifiers.js'
import {graphilePackage} from '../../src/lib/schema/graphile-migrations.js'
import {printSchemaSql} from '../../src/lib/schema/print.js'

describe('schema print (offline)', () => {
  const schema = parseSchemaName('app_jobs')

  it('has every graphile-worker migration in order, each recording its ledger row first', () => {
    const sql = printSchemaSql(schema)
    const pkg = graphilePackage()
    expect(pkg.migrations.map((m) => m.id)).to.deep.equal(Array.from({length: pkg.highest}, (_, i) => i + 1))
    let last = -1
    for (const m of pkg.migrations) {
      const at = sql.indexOf(`insert into "app_jobs".migrations (id, breaking) values (${m.id}, ${m.breaking});`)
      expect(at, `migration ${m.id}`).to.be.greaterThan(last)
      last = at
    }
    expect(sql).not.to.contain(':GRAPHILE_WORKER_SCHEMA')
    expect(sql).not.to.contain('graphile_worker.')
    expect(sql).to.contain('create table if not exists "app_jobs".backfill_dlq')
    expect(sql).to.contain(
      'create unique index if not exists idx_backfill_dlq_job_key_unique on "app_jobs".backfill_dlq (job_key) where job_key is not null',
    )
  })

  it('marks the breaking migrations the way graphile-worker does', () => {
    const breaking = graphilePackage()
      .migrations.filter((m) => m.breaking)
      .map((m) => m.id)
    expect(breaking).to.deep.equal([1, 3, 11, 13, 14, 16, 19])
  })

  it('prints one part on request', () => {
    const dlq = printSchemaSql(schema, {graphile: false})
    expect(dlq).to.contain('backfill_dlq').and.not.contain('migrations (id, breaking)')
    const graphile = printSchemaSql(schema, {backfill: false})
    expect(graphile)
      .to.contain('migrations (id, breaking)')
      .and.not.contain('create table if not exists "app_jobs".backfill_dlq')
  })
})
