import {expect} from 'chai'

import {parseJson, runCli, type CliResult} from '../support/cli.js'
import {TestSchema} from '../support/db.js'

/** The task name of issue 12 item 5: $(printf 'evil\033[2J\033]0;pwned\007'). */
const EVIL = 'evil\u001B[2J\u001B]0;pwned\u0007'
const EVIL_SHOWN = 'evil\\x1b[2J\\x1b]0;pwned\\x07'
/** A last error with OSC (hyperlink, title), CSI (cursor up, erase line), an 8-bit CSI and a carriage return. */
const EVIL_ERROR =
  'boom \u001B]8;;http://evil.example\u0007click\u001B]8;;\u0007 \u001B[1A\u001B[2K\u009B2J\rhidden\n    at task (evil.js:1:1)'
const EVIL_ERROR_SHOWN = 'boom \\x1b]8;;http://evil.example\\x07click\\x1b]8;;\\x07 \\x1b[1A\\x1b[2K\\x9b2J\\rhidden'

/** Our own colours (FORCE_COLOR) are the only escape sequences allowed; no other control character but \n. */
function expectInert(result: CliResult, what: string): void {
  for (const [stream, text] of [
    ['stdout', result.stdout],
    ['stderr', result.stderr],
  ] as const) {
    const withoutOurColours = text.replace(/\u001B\[[0-9;]*m/g, '')
    const bad = /[\u0000-\u0009\u000B-\u001F\u007F-\u009F]/.exec(withoutOurColours)
    expect(
      bad,
      `${what} ${stream} has a raw control character ${JSON.stringify(bad?.[0])} near ${JSON.stringify(withoutOurColours.slice(Math.max(0, (bad?.index ?? 0) - 30), (bad?.index ?? 0) + 30))}`,
    ).to.equal(null)
  }
}

describe('terminal safety: job data cannot control the terminal (real binary)', function () {
  this.timeout(180_000)
  let t: TestSchema
  const cli = (args: string[], env: Record<string, string> = {}): Promise<CliResult> =>
    runCli([...args, '--schema', t.schema], {env})

  before(async () => {
    t = await TestSchema.create({migrated: true, prefix: 'tsafe'})
  })
  after(async () => {
    await t.drop()
  })

  it('the exact inputs of issue 12 item 5 render inert in status, dlq list/show/stats and jobs list/show; --json stays exact', async () => {
    const enqueued = await cli(['enqueue', EVIL, '--payload', JSON.stringify({note: EVIL}), '--json'])
    expect(enqueued.code, enqueued.stderr).to.equal(0)
    const plainEnqueue = await cli(['enqueue', EVIL, '--payload', JSON.stringify({note: EVIL})])
    expect(plainEnqueue.code, plainEnqueue.stderr).to.equal(0)
    expectInert(plainEnqueue, 'enqueue')
    const ids = (await t.query<{id: string}>(`select id::text from ${t.quoted}._private_jobs order by id`)).map(
      (r) => r.id,
    )
    expect(ids).to.have.length(2)
    const [retrying, exhausted] = ids as [string, string]
    // One job failed once (still in the jobs table), the other used every attempt and goes to the DLQ.
    await t.query(`update ${t.quoted}._private_jobs set attempts = 1, last_error = $1 where id = $2`, [
      EVIL_ERROR,
      retrying,
    ])
    await t.query(`update ${t.quoted}._private_jobs set attempts = max_attempts, last_error = $1 where id = $2`, [
      EVIL_ERROR,
      exhausted,
    ])
    const captured = await cli(['dlq', 'capture', '--yes'])
    expect(captured.code, captured.stderr).to.equal(0)
    expectInert(captured, 'dlq capture')
    const [{id: entry}] = (await t.query<{id: string}>(`select id::text from ${t.quoted}.backfill_dlq`)) as [
      {id: string},
    ]

    const commands: [string, string[], string[]][] = [
      // what, args, texts that must be shown (escaped) on stdout
      ['status', ['status'], [EVIL_SHOWN]],
      ['dlq list', ['dlq', 'list'], [EVIL_SHOWN, 'boom \\x1b]8;;http://evil.example\\x07click']],
      ['dlq show', ['dlq', 'show', entry], [EVIL_SHOWN, EVIL_ERROR_SHOWN, '"note": "evil\\u001b[2J']],
      ['dlq stats', ['dlq', 'stats'], [EVIL_SHOWN]],
      ['jobs list', ['jobs', 'list'], [EVIL_SHOWN, 'boom \\x1b]8;;http://evil']],
      ['jobs show', ['jobs', 'show', retrying], [EVIL_SHOWN, EVIL_ERROR_SHOWN, '"note": "evil\\u001b[2J']],
    ]
    for (const env of [{}, {FORCE_COLOR: '1'}] as Record<string, string>[]) {
      for (const [what, args, shown] of commands) {
        const result = await cli(args, env)
        const label = `${what}${env.FORCE_COLOR ? ' (FORCE_COLOR)' : ''}`
        expect(result.code, `${label}: ${result.stderr}`).to.equal(0)
        expectInert(result, label)
        for (const text of shown) expect(result.stdout, `${label} shows ${text}`).to.contain(text)
      }
    }

    // --json keeps the data exact (JSON escapes the control characters itself).
    const job = parseJson<{job: {taskIdentifier: string; lastError: string}}>(
      await cli(['jobs', 'show', retrying, '--json']),
    )
    expect(job.job.taskIdentifier).to.equal(EVIL)
    expect(job.job.lastError).to.equal(EVIL_ERROR)
    const shownEntry = parseJson<{entry: {taskIdentifier: string; lastError: unknown; payload: unknown}}>(
      await cli(['dlq', 'show', entry, '--json']),
    )
    expect(shownEntry.entry.taskIdentifier).to.equal(EVIL)
    expect(shownEntry.entry.payload).to.deep.equal({note: EVIL})
    expect(JSON.stringify(shownEntry.entry.lastError)).to.contain(JSON.stringify(EVIL_ERROR).slice(1, -1))
    const status = parseJson<{tasks: {task: string}[]}>(await cli(['status', '--json']))
    expect(status.tasks.map((x) => x.task)).to.include(EVIL)
  })

  it('an error message quoting hostile input is inert too', async () => {
    const result = await cli(['jobs', 'show', '--job-key', EVIL])
    expect(result.code).to.equal(4)
    expectInert(result, 'jobs show --job-key')
  })
})
