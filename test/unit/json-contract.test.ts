import {expect} from 'chai'

import {runInProcess} from '../support/in-process.js'

/** Issue 12 item 20 (first two parts): --json always gets a JSON document, even for mistakes. No database needed. */
describe('the --json contract for mistakes (in process)', function () {
  this.timeout(30_000)
  // Nothing may be reached: a refused port (the errors come before any connection).
  const env = {DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none'}

  it('status --json=true (or =false) is a usage error in the JSON envelope (exit 2), not text', async () => {
    for (const flag of ['--json=true', '--json=false', '--json=']) {
      const result = await runInProcess(['status', flag], {env})
      expect(result.code, flag).to.equal(2)
      expect(result.stderr, flag).to.equal('')
      const envelope = JSON.parse(result.stdout) as {error: {code: string; message: string; exitCode: number}}
      expect(envelope.error).to.include({code: 'E_USAGE', exitCode: 2})
      expect(envelope.error.message).to.equal(`--json takes no value (got ${JSON.stringify(flag)}): pass --json alone`)
    }
    // Without --json the same mistake elsewhere stays a one-line text error.
    const quiet = await runInProcess(['status', '--quiet=true'], {env})
    expect(quiet.code).to.equal(2)
    expect(quiet.stdout).to.equal('')
    expect(quiet.stderr).to.match(/^Error: /)
  })

  it('backfill dlq --json (a topic, no command) is a JSON usage error listing the commands, exit 2', async () => {
    for (const argv of [
      ['dlq', '--json'],
      ['jobs', '--json'],
      ['dlq', '--json=true'],
    ]) {
      const result = await runInProcess(argv, {env})
      expect(result.code, argv.join(' ')).to.equal(2)
      const envelope = JSON.parse(result.stdout) as {
        error: {
          code: string
          exitCode: number
          message: string
          details: {topic: string; commands: {command: string}[]}
        }
      }
      expect(envelope.error).to.include({code: 'E_MISSING_COMMAND', exitCode: 2})
      expect(envelope.error.details.topic).to.equal(argv[0])
      expect(envelope.error.details.commands.map((c) => c.command)).to.include(
        argv[0] === 'dlq' ? 'backfill dlq list' : 'backfill jobs list',
      )
    }
    const dlq = JSON.parse((await runInProcess(['dlq', '--json'], {env})).stdout) as {error: {message: string}}
    expect(dlq.error.message).to.equal(
      '`backfill dlq` needs a command: capture, history, list, purge, retry, show, stats',
    )
    // Without --json a topic still shows its help (exit 0).
    const help = await runInProcess(['dlq'], {env})
    expect(help.code).to.equal(0)
    expect(help.stdout).to.contain('dlq list')
  })
  it('backfill --json (flags, no command) is a JSON usage error naming the commands, exit 2; without --json one Error line', async () => {
    for (const argv of [['--json'], ['--json', '--quiet'], ['--quiet', '--json']]) {
      const result = await runInProcess(argv, {env})
      expect(result.code, argv.join(' ')).to.equal(2)
      expect(result.stderr, argv.join(' ')).to.equal('')
      const envelope = JSON.parse(result.stdout) as {
        error: {code: string; exitCode: number; message: string; details: {commands: {command: string}[]}}
      }
      expect(envelope.error).to.include({code: 'E_MISSING_COMMAND', exitCode: 2})
      expect(envelope.error.message).to.equal('`backfill` needs a command (flags come after it)')
      expect(envelope.error.details.commands.map((c) => c.command)).to.include.members([
        'backfill status',
        'backfill dlq list',
      ])
    }
    const text = await runInProcess(['--quiet'], {env})
    expect(text.code).to.equal(2)
    expect(text.stdout).to.equal('')
    expect(text.stderr).to.match(
      /^Error: `backfill` needs a command \(flags come after it\)\n {2}→ see: backfill --help\n$/,
    )
  })
})
