import {expect} from 'chai'
import pg from 'pg'

import {Database} from '../../src/lib/db.js'
import {targetFromUrl} from '../../src/lib/connection.js'
import {parseSchemaName} from '../../src/lib/identifiers.js'
import {migrate, type MigrateResult} from '../../src/lib/schema/migrate.js'
import {sql, testUrl, uniqueName} from '../support/db.js'

describe('migrate: installers that waited for another report what they found', function () {
  this.timeout(120_000)
  const schema = uniqueName('migconc')
  after(async () => {
    await sql(`drop schema if exists ${schema} cascade`)
  })

  it('two installers on an empty schema: one applies, the other reports revision N → N and nothing applied', async () => {
    // Hold the install lock so both read "not installed" before either can take it.
    const holder = new pg.Client({connectionString: testUrl()})
    await holder.connect()
    await holder.query('select pg_advisory_lock(hashtextextended($1, 0))', [`backfill:migrate:${schema}`])
    const dbs = [0, 1].map(() =>
      Database.connect({target: targetFromUrl(testUrl(), 'flag-or-env'), schema: parseSchemaName(schema), max: 3}),
    )
    let results: MigrateResult[]
    try {
      const runs = dbs.map((db) => migrate(db))
      for (let i = 0; i < 200; i += 1) {
        const [row] = (
          await holder.query<{n: number}>(
            `select count(*)::int as n from pg_locks where locktype = 'advisory' and not granted`,
          )
        ).rows
        if (row!.n >= 2) break
        await new Promise((resolve) => setTimeout(resolve, 25))
      }
      await holder.query('select pg_advisory_unlock_all()')
      results = await Promise.all(runs)
    } finally {
      await holder.end()
      for (const db of dbs) await db.end()
    }
    const [installer, waiter] = results[0]!.applied.length > 0 ? results : [results[1]!, results[0]!]
    expect(installer!.revisionBefore).to.equal(null)
    expect(installer!.applied).to.not.be.empty
    expect(waiter!.applied).to.deep.equal([])
    expect(waiter!.revisionBefore).to.equal(waiter!.revisionAfter)
    expect(waiter!.revisionAfter).to.equal(installer!.revisionAfter)
  })
})
