import {expect} from 'chai'

import {redactUrl, resolveConnection, scrubSecrets} from '../../src/lib/connection.js'
import {conninfoToUrl, parseKeyValueConninfo} from '../../src/lib/conninfo.js'
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

  describe("libpq's key=value form", () => {
    it('parses quoted values, backslash escapes and spaces around "=" as libpq does', () => {
      const pairs = parseKeyValueConninfo(
        " host = db.internal port=6543\tuser=o\\'neil password='a b\\\\c\\'d' dbname='' options='-c search_path=x'",
      )
      expect(Object.fromEntries(pairs)).to.deep.equal({
        host: 'db.internal',
        port: '6543',
        user: "o'neil",
        password: "a b\\c'd",
        dbname: '',
        options: '-c search_path=x',
      })
      // A later keyword wins; an unquoted value ends at whitespace.
      expect(parseKeyValueConninfo('user=a user=b').get('user')).to.equal('b')
    })

    it('gives pg the URL that reaches the same server as the same user', () => {
      const target = resolveConnection({
        databaseUrl: "host=127.0.0.1 port=5433 user=app password='p@ss w/rd#?' dbname=my_db sslmode=disable",
        env: {},
      })
      expect(target).to.include({host: '127.0.0.1', port: 5433, user: 'app', database: 'my_db'})
      expect(target.display).to.equal('postgres://app:***@127.0.0.1:5433/my_db?sslmode=disable')
      expect(target.secrets).to.include('p@ss w/rd#?')
      const socket = resolveConnection({databaseUrl: 'host=/var/run/postgresql dbname=jobs user=ops', env: {}})
      expect(socket).to.include({host: '/var/run/postgresql', database: 'jobs', user: 'ops', port: 5432})
      const v6 = resolveConnection({databaseUrl: 'hostaddr=::1 host=db port=1 dbname=x', env: {}})
      expect(v6).to.include({host: '::1', port: 1})
      expect(conninfoToUrl(parseKeyValueConninfo("dbname='a b' application_name=x"))).to.equal(
        'postgres:///a%20b?application_name=x',
      )
    })

    it('refuses what libpq refuses (or pg cannot do) without quoting the input', () => {
      for (const text of [
        'host=db password=secret1 secret2', // missing "=" after an item
        "host=db password='secret1", // unterminated quote
        'host=db pasword=secret1', // unknown keyword
        'service=prod', // pg_service.conf
        'host=a,b port=1,2', // several hosts
        'host=db port=secret1',
      ]) {
        try {
          resolveConnection({databaseUrl: text, env: {}})
          expect.fail(`should refuse ${text}`)
        } catch (error) {
          expect(error, text).to.be.instanceOf(ConfigError)
          const all = [(error as ConfigError).message, ...(error as ConfigError).suggestions].join('\n')
          expect(all, text).not.to.contain('secret')
        }
      }
    })
  })

  it('never shows a scheme-less URL, nor a password the URL parser would split', () => {
    for (const url of ['app:hunter2@db/x', 'postgres://app:hunter@2b/cd@127.0.0.1:1/x']) {
      expect(() => resolveConnection({databaseUrl: url, env: {}})).to.throw(ConfigError, /^(?!.*(hunter|2b)).*$/)
    }
    expect(redactUrl('app:hunter2@db/x')).to.equal('***@db/x')
    expect(redactUrl("host=db password='a b' sslpassword=c dbname=x")).to.equal(
      'host=db password=*** sslpassword=*** dbname=x',
    )
    // An "@" in a query parameter is not the end of the user-info.
    const target = resolveConnection({databaseUrl: 'postgres://app:pw1@db/x?application_name=me@host', env: {}})
    expect(target).to.include({host: 'db', display: 'postgres://app:***@db/x?application_name=me@host'})
  })
})
