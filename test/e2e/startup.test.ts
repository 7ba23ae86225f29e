import {expect} from 'chai'

import {Config} from '@oclif/core'

import {ROOT, runCli} from '../support/cli.js'

describe('start-up fast paths', () => {
  it("--version answers without oclif, with oclif's exact text (config.userAgent), also with more arguments", async () => {
    const config = await Config.load(ROOT)
    for (const args of [['--version'], ['--version', 'dlq']]) {
      const result = await runCli(args)
      expect(result.code).to.equal(0)
      expect(result.stdout).to.equal(`${config.userAgent}\n`)
      expect(result.stderr).to.equal('')
    }
    // Anywhere else it is a flag like any other (oclif's rule): the command's own parser sees it.
    const late = await runCli(['dlq', 'list', '--version'])
    expect(late.code).to.not.equal(0)
  })
})
