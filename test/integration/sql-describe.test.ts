import {readdirSync} from 'node:fs'
import path from 'node:path'
import {pathToFileURL} from 'node:url'

import {expect} from 'chai'
import pg from 'pg'

import type {AnyStatement} from '../../src/lib/sql/statement.js'
import {ROOT} from '../support/cli.js'
import {rustMigration20Sql} from '../fixtures/rust.js'
import {TestSchema} from '../support/db.js'
import {describeStatement} from '../support/describe-sql.js'

const SQL_DIR = path.join(ROOT, 'src', 'lib', 'sql')

async function loadStatements(): Promise<AnyStatement[]> {
  const found: AnyStatement[] = []
  for (const file of readdirSync(SQL_DIR)
    .filter((f) => f.endsWith('.ts') && f !== 'statement.ts')
    .sort()) {
    const module = (await import(pathToFileURL(path.join(SQL_DIR, file)).href)) as Record<string, unknown>
    for (const value of Object.values(module)) {
      if (
        value &&
        typeof value === 'object' &&
        'id' in value &&
        'sql' in value &&
        'columns' in value &&
        'params' in value
      )
        found.push(value as AnyStatement)
    }
  }
  return found
}

/**
 * Checked SQL: every statement in src/lib/sql is described by PostgreSQL against a
 * freshly migrated schema; declared parameter types and result columns must match.
 */
describe('checked SQL: every library statement against a migrated schema', function () {
  let test: TestSchema
  let client: pg.Client
  let typeNames: Map<number, string>
  let statements: AnyStatement[]

  before(async () => {
    test = await TestSchema.create({migrated: true, prefix: 'describe'})
    // Some statements read the Rust port's _private_workers (only run when it exists).
    await test.db.execScript(rustMigration20Sql(test.quoted))
    client = new pg.Client({connectionString: test.url})
    await client.connect()
    const rows = (await client.query<{oid: number; typname: string}>('select oid::int, typname from pg_type')).rows
    typeNames = new Map(rows.map((r) => [r.oid, r.typname]))
    statements = await loadStatements()
  })

  after(async () => {
    await client?.end()
    await test?.drop()
  })

  it('finds the statements (and their ids are unique)', () => {
    expect(statements.length).to.be.greaterThan(5)
    const ids = statements.map((s) => s.id)
    expect(new Set(ids).size).to.equal(ids.length)
  })

  it('each statement parses, and its parameter types and result columns are as declared', async () => {
    const problems: string[] = []
    for (const statement of statements) {
      const text = statement.sql(test.quoted)
      let description
      try {
        description = await describeStatement(client, text)
      } catch (error) {
        problems.push(`${statement.id}: ${(error as Error).message}`)
        continue
      }
      const params = description.paramTypes.map((oid) => typeNames.get(oid))
      const declaredParams = statement.params.map((p) => p.replace(/\?$/, ''))
      if (JSON.stringify(params) !== JSON.stringify(declaredParams)) {
        problems.push(
          `${statement.id}: parameters are ${JSON.stringify(params)}, declared ${JSON.stringify(declaredParams)}`,
        )
      }
      const columns = description.fields.map((f) => `${f.name}:${typeNames.get(f.dataTypeID)}`)
      const declaredColumns = Object.entries(statement.columns).map(
        ([name, type]) => `${name}:${type.replace(/\?$/, '')}`,
      )
      if (JSON.stringify(columns) !== JSON.stringify(declaredColumns)) {
        problems.push(
          `${statement.id}: columns are ${JSON.stringify(columns)}, declared ${JSON.stringify(declaredColumns)}`,
        )
      }
    }
    expect(problems, problems.join('\n')).to.deep.equal([])
  })

  it('the check catches a renamed column', async () => {
    let message = ''
    try {
      await describeStatement(client, `select no_such_column from ${test.quoted}._private_jobs`)
    } catch (error) {
      message = (error as Error).message
    }
    expect(message).to.match(/column "no_such_column" does not exist/)
  })
})
