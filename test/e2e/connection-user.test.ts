import {expect} from 'chai'

import {parseJson, runCli} from '../support/cli.js'
import {testUrl} from '../support/db.js'

/** node-postgres reads USER when it loads, so this needs a process of its own (real binary). */
describe('no user configured anywhere (real binary)', function () {
  this.timeout(60_000)

  it('says that no user name was sent, instead of naming one that was not', async () => {
    const url = testUrl().replace('postgres://postgres@', 'postgres://')
    expect(url).not.to.contain('postgres@')
    for (const json of [false, true]) {
      const result = await runCli(['status', ...(json ? ['--json'] : [])], {
        databaseUrl: url,
        env: {USER: undefined, LOGNAME: 'somebody_else', PGUSER: undefined},
      })
      expect(result.code, result.stderr).to.equal(3)
      const message = json ? parseJson<{error: {message: string}}>(result).error.message : result.stderr
      expect(message).to.contain('no user name was sent').and.not.contain('somebody_else')
      expect(message).not.to.match(/for user "/)
    }
  })
})
