import {expect} from 'chai'

import {runCli} from '../support/cli.js'
import {TestSchema} from '../support/db.js'
import {TASKS_DIR} from '../support/worker.js'

/**
 * A 63-byte schema name (the longest PostgreSQL allows): prepared statement names built
 * from it must stay within 63 bytes, or node-postgres prints a warning on stderr at every
 * use, even under --quiet --json.
 */
describe('a schema name of 63 bytes keeps stderr clean (real binary)', function () {
  this.timeout(120_000)
  let t: TestSchema
  before(async () => {
    t = await TestSchema.create({prefix: `long_${'s'.repeat(47)}`})
    expect(Buffer.byteLength(t.schema)).to.equal(63)
  })
  after(async () => {
    await t.drop()
  })

  it('migrate, enqueue, status, check, locks list, dlq list and worker --once print no warning', async () => {
    const s = ['--schema', t.schema]
    const quietJson = async (args: string[], expectedCode = 0): Promise<void> => {
      const result = await runCli([...args, ...s, '--quiet', '--json'])
      expect(result.code, `${args.join(' ')}: ${result.stderr}`).to.equal(expectedCode)
      expect(result.stderr, args.join(' ')).to.equal('')
    }
    await quietJson(['migrate'])
    await quietJson(['enqueue', 'work', '--payload', '{"ms":1}'])
    await quietJson(['status'])
    await quietJson(['check', '--max-ready', '5', '--max-dead-locks', '0', '--min-workers', '0'])
    await quietJson(['locks', 'list'])
    await quietJson(['dlq', 'list'])
    const worker = await runCli(['worker', ...s, '--tasks', TASKS_DIR, '--once', '--quiet', '--json'])
    expect(worker.code, worker.stderr).to.equal(0)
    expect(worker.stderr).not.to.match(/Warning|63 characters/)
    const [{n} = {n: -1}] = await t.query<{n: number}>(`select count(*)::int as n from ${t.quoted}._private_jobs`)
    expect(n, 'the job ran').to.equal(0)
  })
})
