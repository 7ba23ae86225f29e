import {expect} from 'chai'

import {type CliResult} from '../support/cli.js'
import {TestSchema, testUrl} from '../support/db.js'
import {runInProcess} from '../support/in-process.js'

/** Human output details of the dlq commands, in process (no build, no child process). */
describe('dlq output for people (in process)', function () {
  this.timeout(60_000)
  let t: TestSchema
  const cli = (args: string[]): Promise<CliResult> =>
    runInProcess([...args, '--schema', t.schema], {env: {DATABASE_URL: testUrl()}})

  beforeEach(async () => {
    t = await TestSchema.create({migrated: true, prefix: 'cliout'})
  })
  afterEach(async () => {
    await t.drop()
  })

  /** Two jobs moved by the real capture: one out of attempts, one failed by a permanent error. */
  async function captureTwo(): Promise<{permanent: string; exhausted: string}> {
    await t.query(`select ${t.quoted}.add_job('charge', '{"card": 1}', max_attempts => 8)`)
    await t.query(`select ${t.quoted}.add_job('mail', '{"to": 2}', max_attempts => 3)`)
    // As the worker (and the Rust crate's PermanentFailurePlugin) leave them: attempts used up.
    await t.query(
      `update ${t.quoted}._private_jobs j set attempts = max_attempts, last_error = case t.identifier
         when 'charge' then 'Permanent failure (non-retryable error): card declined' else 'SMTP 421' end
       from ${t.quoted}._private_tasks t where t.id = j.task_id`,
    )
    const captured = await cli(['dlq', 'capture', '--yes'])
    expect(captured.code, captured.stderr).to.equal(0)
    const rows = await t.query<{id: string; task_identifier: string}>(
      `select id::text, task_identifier from ${t.quoted}.backfill_dlq`,
    )
    const id = (task: string): string => rows.find((r) => r.task_identifier === task)!.id
    return {permanent: id('charge'), exhausted: id('mail')}
  }

  it('dlq list and show say "permanent" for an entry captured through a permanent error, not "?/8"', async () => {
    const {permanent, exhausted} = await captureTwo()
    const list = await cli(['dlq', 'list'])
    expect(list.code, list.stderr).to.equal(0)
    expect(list.stdout).to.not.contain('?')
    const line = (id: string): string => list.stdout.split('\n').find((l) => l.trimStart().startsWith(`${id} `))!
    expect(line(permanent)).to.match(/charge\s+\(parallel\)\s+permanent\s/)
    expect(line(exhausted)).to.match(/mail\s+\(parallel\)\s+3\/3\s/)
    const show = await cli(['dlq', 'show', permanent])
    expect(show.stdout).to.match(/Attempts:\s+failed permanently \(no retries; max 8\)\n/)
    expect((await cli(['dlq', 'show', exhausted])).stdout).to.match(/Attempts:\s+3\/3\n/)
  })

  it('dlq stats prints its "next:" hint after the failure-group table it refers to, on the same stream', async () => {
    await captureTwo()
    const stats = await cli(['dlq', 'stats'])
    expect(stats.code, stats.stderr).to.equal(0)
    expect(stats.stderr).to.not.contain('next:')
    const lines = stats.stdout.trimEnd().split('\n')
    const groupsAt = lines.findIndex((l) => l.startsWith('Failure groups'))
    const nextAt = lines.findIndex((l) => l.startsWith('next: '))
    expect(groupsAt).to.be.greaterThan(0)
    expect(nextAt, stats.stdout).to.equal(lines.length - 1)
    // It names the first (largest) group of the table above it.
    const firstGroup = /^([0-9a-f]{6,})\s/.exec(lines[groupsAt + 2] ?? '')?.[1]
    expect(firstGroup, lines[groupsAt + 2]).to.be.a('string')
    expect(lines[nextAt]).to.contain(`--group ${firstGroup}`)
    // --quiet hides hints; --json has only the document.
    expect((await cli(['dlq', 'stats', '--quiet'])).stdout).to.not.contain('next:')
    expect(JSON.parse((await cli(['dlq', 'stats', '--json'])).stdout)).to.have.property('groups')
  })
})
