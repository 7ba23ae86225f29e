import {expect} from 'chai'

import {parseJson, type CliResult} from '../support/cli.js'
import {TestSchema, testUrl, uniqueName} from '../support/db.js'
import {runInProcess} from '../support/in-process.js'
import {craftStates} from '../support/jobs.js'

/** The jobs commands' argument and safety contract, in process (no build, no child process). */
describe('backfill jobs: refusals and bad input (in process)', function () {
  this.timeout(60_000)
  let t: TestSchema
  const cli = (args: string[]): Promise<CliResult> =>
    runInProcess(['jobs', ...args, '--schema', t.schema], {env: {DATABASE_URL: testUrl()}})
  const snapshot = async (): Promise<unknown> => ({
    jobs: await t.jobs(),
    dlq: await t.query(`select * from ${t.quoted}.backfill_dlq order by id`),
    audit: await t.query(`select id from ${t.quoted}.backfill_dlq_audit`),
  })

  beforeEach(async () => {
    t = await TestSchema.create({migrated: true, prefix: 'jobsc'})
  })
  afterEach(async () => {
    await t.drop()
  })

  it('destructive commands refuse an empty selection (exit 2) and run without a TTY only with --yes', async () => {
    await craftStates(t)
    const before = await snapshot()
    for (const command of [['remove'], ['fail'], ['run-now'], ['reschedule', '--delay', '1h']]) {
      const empty = await cli(command)
      expect(empty.code, `${command[0]}: ${empty.stderr}`).to.equal(2)
      expect(empty.stderr).to.contain('without a selection').and.contain('--all')
      const noTty = await cli([...command, '--task', 'send_email'])
      expect(noTty.code, noTty.stderr).to.equal(2)
      expect(noTty.stderr).to.contain('without --yes in a non-interactive session')
      const json = parseJson<{error: {code: string}}>(await cli([...command, '--all', '--json']))
      expect(json.error.code).to.equal('E_CONFIRMATION_REQUIRED')
    }
    expect(await snapshot()).to.deep.equal(before)
  })

  it('bad input is refused with exit 2 before anything changes; an un-migrated schema is exit 4', async () => {
    for (const args of [
      ['list', '--state', 'stuck'],
      ['list', '--priority', '5..1'],
      ['list', '--since', 'yesterday'],
      ['list', 'abc'],
      ['reschedule', '1', '--yes'],
      ['reschedule', '1', '--run-at', '2030-01-01T00:00:00', '--yes'],
      ['reschedule', '1', '--delay', 'soon', '--yes'],
    ]) {
      const result = await cli(args)
      expect(result.code, `${args.join(' ')}: ${result.stderr}`).to.equal(2)
    }
    const missing = await runInProcess(['jobs', 'list', '--schema', uniqueName('nojobs')], {
      env: {DATABASE_URL: testUrl()},
    })
    expect(missing.code).to.equal(4)
    expect(missing.stderr).to.contain('backfill migrate')
  })
})
