import {expect} from 'chai'

import {UsageError} from '../../src/lib/errors.js'
import {parseSchemaName, quoteIdent} from '../../src/lib/identifiers.js'

describe('schema names', () => {
  it('accepts PostgreSQL identifiers in lower case', () => {
    for (const name of ['graphile_worker', '_private', 'jobs2', 'a'.repeat(63)])
      expect(parseSchemaName(name)).to.equal(name)
  })

  it('rejects anything that could break out of an identifier, with a usage error', () => {
    const bad = [
      'x; drop table y',
      'x"y',
      'Upper',
      '1abc',
      '',
      'a'.repeat(64),
      'pg_catalog',
      'information_schema',
      'with space',
      'dash-ed',
      'é',
    ]
    for (const name of bad) {
      expect(() => parseSchemaName(name), name)
        .to.throw(UsageError)
        .with.property('exitCode', 2)
    }
  })

  it('quotes identifiers, doubling embedded quotes', () => {
    expect(quoteIdent('graphile_worker')).to.equal('"graphile_worker"')
    expect(quoteIdent('a"b')).to.equal('"a""b"')
  })
})
