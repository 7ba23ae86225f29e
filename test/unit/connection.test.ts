import {expect} from 'chai'

import {redactUrl, resolveConnection, scrubSecrets} from '../../src/lib/connection.js'
import {ConfigError} from '../../src/lib/errors.js'

describe('connection resolution', () => {
  it('prefers --database-url / DATABASE_URL over PG* variables', () => {
    const target = resolveConnection({databaseUrl: 'postgres://app:s3cret@db:6543/appdb', env: {PGHOST: 'other'}})
    expect(target).to.include({host: 'db', port: 6543, database: 'appdb', user: 'app', source: 'flag-or-env'})
    expect(target.display).to.equal('postgres://app:***@db:6543/appdb')
    expect(target.secrets).to.include('s3cret')
  })

  it('falls back to the libpq PG* variables as pg reads them', () => {
    const target = resolveConnection({
      env: {PGHOST: '/var/run/postgresql', PGDATABASE: 'jobs', PGUSER: 'ops', PGPASSWORD: 'pw123'},
    })
    expect(target.connectionString).to.equal(undefined)
    expect(target).to.include({host: '/var/run/postgresql', database: 'jobs', user: 'ops', source: 'pg-env'})
    expect(target.display).not.to.contain('pw123')
    expect(target.secrets).to.deep.equal(['pw123'])
  })

  it('refuses to guess when nothing is configured, naming every option', () => {
    try {
      resolveConnection({env: {}})
      expect.fail('should throw')
    } catch (error) {
      expect(error).to.be.instanceOf(ConfigError)
      const text = [(error as ConfigError).message, ...(error as ConfigError).suggestions].join('\n')
      expect(text)
        .to.contain('--database-url')
        .and.contain('DATABASE_URL')
        .and.contain('PGHOST')
        .and.contain('--embedded')
      expect((error as ConfigError).exitCode).to.equal(3)
    }
  })

  it('rejects URLs that are not postgres URLs without echoing the password', () => {
    expect(() => resolveConnection({databaseUrl: 'mysql://u:hunter22@h/db', env: {}})).to.throw(
      ConfigError,
      /mysql:\/\/u:\*\*\*@h\/db/,
    )
  })

  it('redacts passwords in URLs and query strings, and scrubs known secrets', () => {
    expect(redactUrl('postgresql://u:p%40ss@h:1/d')).to.equal('postgresql://u:***@h:1/d')
    expect(redactUrl('postgres://h/d?user=u&password=zz&x=1')).to.equal('postgres://h/d?user=u&password=***&x=1')
    expect(redactUrl('postgres://u@h/d')).to.equal('postgres://u@h/d')
    expect(scrubSecrets('failed for p@ss at p@ss', ['p@ss'])).to.equal('failed for *** at ***')
  })

  it('redacts passwords containing @, / or # (valid for libpq, broken for URL parsers)', () => {
    expect(redactUrl('postgres://bob:abc@TopSecret99@127.0.0.1:1/app')).to.equal('postgres://bob:***@127.0.0.1:1/app')
    expect(redactUrl('postgres://bob:abc/Tail99@127.0.0.1:1/app')).to.equal('postgres://bob:***@127.0.0.1:1/app')
    expect(redactUrl('postgres://bob:abc#Tail99@127.0.0.1:1/app')).to.equal('postgres://bob:***@127.0.0.1:1/app')
    for (const url of [
      'postgres://bob:abc/Tail99@127.0.0.1:1/app',
      'postgres://bob:abc#Tail99@h/app',
      'mysql://bob:abc@Tail99@h/app',
    ]) {
      try {
        resolveConnection({databaseUrl: url, env: {}})
      } catch (error) {
        expect((error as Error).message, url).not.to.contain('Tail99')
      }
    }
    const target = resolveConnection({databaseUrl: 'postgres://bob:abc@TopSecret99@127.0.0.1:1/app', env: {}})
    expect(target.display).not.to.contain('TopSecret99')
    expect(target.secrets).to.include('abc@TopSecret99')
  })

  it('parses socket URLs', () => {
    const target = resolveConnection({databaseUrl: 'postgres://postgres@/postgres?host=%2Ftmp%2Fpg', env: {}})
    expect(target).to.include({host: '/tmp/pg', database: 'postgres', user: 'postgres'})
  })
})
