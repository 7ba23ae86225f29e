import {expect} from 'chai'

import {authFromEnv, checkToken, checkUser} from '../../src/lib/console/auth.js'
import {ConfigError} from '../../src/lib/errors.js'

describe('console credentials from the environment', () => {
  it('refuses a BACKFILL_UI_USERS user named "token": the audit could not tell it from the bearer token', () => {
    const token = 'a-token-of-24-characters'
    const error = (() => {
      try {
        authFromEnv({BACKFILL_UI_TOKEN: token, BACKFILL_UI_USERS: 'token:hunter2-but-longer'})
      } catch (e) {
        return e
      }
      return undefined
    })()
    expect(error).to.be.instanceOf(ConfigError)
    expect((error as ConfigError).code).to.equal('E_BAD_USERS')
    // The value holds passwords: never echoed.
    expect((error as ConfigError).message).to.not.include('hunter2')
  })

  it('reads the token and users; each identity is named apart', () => {
    const auth = authFromEnv({BACKFILL_UI_TOKEN: 'a-token-of-24-characters', BACKFILL_UI_USERS: 'alice:x1,bob:y2'})
    expect(checkToken(auth, 'a-token-of-24-characters')).to.deep.equal({name: 'token', method: 'token'})
    expect(checkUser(auth, 'alice', 'x1')).to.deep.equal({name: 'alice', method: 'basic'})
    expect(checkUser(auth, 'alice', 'y2')).to.equal(undefined)
    expect(checkUser(auth, 'carol', '')).to.equal(undefined)
  })
})
