import {expect} from 'chai'

import {targetFromUrl} from '../../src/lib/connection.js'
import {EXIT_CODES, TimeoutError} from '../../src/lib/errors.js'
import {mapPgError} from '../../src/lib/pg-errors.js'

const target = targetFromUrl('postgres://app:secret@db.example:5432/app', 'flag-or-env')
const pgError = (code: string, message: string): Error & {code: string} => Object.assign(new Error(message), {code})
const cases = [
  pgError('ECONNREFUSED', 'connect ECONNREFUSED'),
  pgError('28P01', 'password authentication failed'),
  pgError('3D000', 'database "app" does not exist'),
  pgError('57014', 'canceling statement due to statement timeout'),
  pgError('55P03', 'canceling statement due to lock timeout'),
]

describe('PostgreSQL errors', () => {
  it('the library names no CLI flag unless the caller passes its labels', () => {
    for (const raw of cases) {
      const error = mapPgError(raw, {target})
      const text = [error.message, ...error.suggestions].join('\n')
      expect(text, raw.code).to.not.match(/--[a-z]/)
      const labelled = mapPgError(raw, {
        target,
        labels: {connection: '--database-url / DATABASE_URL', statementTimeout: '--statement-timeout'},
      })
      expect([labelled.message, ...labelled.suggestions].join('\n'), raw.code).to.match(
        /--database-url \/ DATABASE_URL|--statement-timeout/,
      )
    }
  })

  it('a statement or lock timeout is a TimeoutError (exit 7) quoting the limit; a cancel by hand is not', () => {
    const limits = {statementTimeoutMs: 30_000, lockTimeoutMs: 5_000}
    const labels = {statementTimeout: '--statement-timeout'}
    const statement = mapPgError(cases[3], {target, limits, labels})
    expect(statement).to.be.instanceOf(TimeoutError)
    expect(statement.exitCode).to.equal(EXIT_CODES.timeout).and.equal(7)
    expect(statement.code).to.equal('E_TIMEOUT')
    expect(statement.message).to.equal(
      'the query ran longer than the 30s statement timeout and was cancelled; raise it with --statement-timeout (0 for no limit)',
    )
    const lock = mapPgError(cases[4], {target, limits, labels})
    expect(lock.message).to.equal(
      'gave up waiting 5s for a lock another session holds (lock timeout); retry later, or lift the limits with --statement-timeout 0',
    )
    const byHand = mapPgError(pgError('57014', 'canceling statement due to user request'), {target, limits, labels})
    expect(byHand).to.not.be.instanceOf(TimeoutError)
    expect(byHand.code).to.equal('E_INTERNAL')
  })
})
