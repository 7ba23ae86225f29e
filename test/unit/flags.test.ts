import {expect} from 'chai'

import {parseJson} from '../support/cli.js'
import {runInProcess} from '../support/in-process.js'

// No database anywhere: every case must fail (or finish) while parsing, before connecting.
const NO_DB = {DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none'}

async function usage(argv: string[], env: Record<string, string> = {}): Promise<string> {
  const result = await runInProcess(argv, {env: {...NO_DB, ...env}})
  expect(result.code, `${argv.join(' ')}: ${result.stderr}`).to.equal(2)
  expect(result.stdout).to.equal('')
  const lines = result.stderr.trimEnd().split('\n')
  expect(lines[0]).to.match(/^Error: /)
  // One line of reason, then suggestions only.
  for (const line of lines.slice(1)) expect(line).to.match(/^ {2}→ /)
  return lines[0] as string
}

describe('typed flags', () => {
  it('dlq retry --priority 99999 fails the same way with and without --dry-run (exit 2)', async () => {
    const dry = await usage(['dlq', 'retry', '--all', '--dry-run', '--priority', '99999'])
    const real = await usage(['dlq', 'retry', '--all', '--yes', '--priority', '99999'])
    expect(dry).to.equal('Error: --priority 99999 is outside -32768..32767 (PostgreSQL smallint)')
    expect(real).to.equal(dry)
  })

  it('priority names mean the same in enqueue and dlq retry (one validator)', async () => {
    const result = await runInProcess(['enqueue', 'x', '--priority', 'critical', '--dry-run', '--json'], {env: NO_DB})
    expect(result.code, result.stderr).to.equal(0)
    expect(parseJson<{job: {priority: number}}>(result).job.priority).to.equal(-10)
    // dlq retry used to take integers only; a name now parses (and the run then needs the database).
    expect(await usage(['dlq', 'retry', '--all', '--dry-run', '--priority', 'urgent'])).to.equal(
      'Error: --priority "urgent" is not a priority name or an integer',
    )
    expect(await usage(['enqueue', 'x', '--priority', 'urgent'])).to.equal(
      'Error: --priority "urgent" is not a priority name or an integer',
    )
  })

  it('durations, max attempts and timestamps are checked while parsing, naming the flag', async () => {
    expect(await usage(['enqueue', 'x', '--delay', '5'])).to.equal(
      'Error: --delay "5" is not a duration (a unit is required)',
    )
    expect(await usage(['enqueue', 'x', '--max-attempts', '0'])).to.equal('Error: --max-attempts 0 is outside 1..32767')
    expect(await usage(['dlq', 'retry', '1', '--max-attempts', 'many'])).to.equal(
      'Error: --max-attempts "many" is not an integer',
    )
    expect(await usage(['enqueue', 'x', '--run-at', '2030-01-01T10:00:00'])).to.match(
      /^Error: --run-at "2030-01-01T10:00:00" is not an ISO 8601 date-time with a time zone$/,
    )
    expect(await usage(['dlq', 'list', '--since', 'yesterday'])).to.match(/^Error: invalid --since "yesterday"/)
    expect(await usage(['dlq', 'purge', '--older-than', '30 days'])).to.equal(
      'Error: --older-than "30 days" is not a duration',
    )
    expect(await usage(['status', '--watch', '100ms'])).to.equal('Error: --watch "100ms" is shorter than 500ms')
    expect(await usage(['locks', 'clean', '--stale-job-lock-timeout', 'soon'])).to.equal(
      'Error: --stale-job-lock-timeout "soon" is not a duration',
    )
    expect(await usage(['check', '--heartbeat-timeout', '-1'])).to.match(/^Error: --heartbeat-timeout "-1"/)
  })

  it('a value from the environment is named by its variable', async () => {
    expect(await usage(['worker', '--once'], {POLL_INTERVAL_MS: 'fast'})).to.equal(
      'Error: POLL_INTERVAL_MS (--poll-interval) "fast" is not a duration',
    )
  })

  it('--json gets the error envelope with the same one-line message', async () => {
    const result = await runInProcess(['dlq', 'retry', '--all', '--dry-run', '--priority', '99999', '--json'], {
      env: NO_DB,
    })
    expect(result.code).to.equal(2)
    const {error} = parseJson<{error: {code: string; message: string; exitCode: number}}>(result)
    expect(error).to.include({message: '--priority 99999 is outside -32768..32767 (PostgreSQL smallint)', exitCode: 2})
  })

  it('delay and run-at reach the job as dates', async () => {
    const before = Date.now()
    const delayed = await runInProcess(['enqueue', 'x', '--delay', '1h30m', '--dry-run', '--json'], {env: NO_DB})
    const runAt = new Date(parseJson<{job: {runAt: string}}>(delayed).job.runAt).getTime()
    expect(runAt - before).to.be.within(5_400_000, 5_400_000 + 60_000)
    const fixed = await runInProcess(['enqueue', 'x', '--run-at', '2030-01-31T10:00:00+01:00', '--dry-run', '--json'], {
      env: NO_DB,
    })
    expect(parseJson<{job: {runAt: string}}>(fixed).job.runAt).to.equal('2030-01-31T09:00:00.000Z')
  })
})
