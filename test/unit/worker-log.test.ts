import {Chalk} from 'chalk'
import {expect} from 'chai'

import {formatText} from '../../src/cli/worker-log.js'

const plain = new Chalk({level: 0})
const now = new Date('2026-01-01T00:00:00.000Z')

describe('worker log lines', () => {
  it("a retried failure shows graphile's real backoff and the next run time, not the job's duration", () => {
    const line = formatText(
      {
        type: 'job:failure',
        durationMs: 0.4,
        error: 'boom',
        outcome: 'retry',
        retryInMs: 2718,
        pool: 'shared',
        task: 'work',
        jobId: '7',
        attempt: 1,
        maxAttempts: 8,
      },
      plain,
      now,
    )
    expect(line).to.equal(
      '2026-01-01T00:00:00.000Z warn  work#7 failed after 0ms, will retry in 2.7s (at 2026-01-01T00:00:02.718Z) (attempt 1/8): boom',
    )
  })

  it('an exhausted failure names the DLQ and no retry', () => {
    const line = formatText(
      {
        type: 'job:failure',
        durationMs: 12,
        error: 'boom',
        outcome: 'exhausted',
        pool: 'shared',
        task: 'work',
        jobId: '7',
        attempt: 8,
        maxAttempts: 8,
      },
      plain,
      now,
    )
    expect(line).to.contain('work#7 failed, attempts exhausted → DLQ after 12ms (attempt 8/8): boom')
    expect(line).not.to.contain('retry in')
  })

  it('the stop line says what is still locked, or that it could not be checked (never a guessed 0)', () => {
    const base = {
      type: 'worker:stop',
      durationMs: 1200,
      forced: true,
      releasedJobLocks: 0,
      releasedQueueLocks: 0,
    } as const
    expect(formatText({...base, lockedAfter: 3}, plain, now)).to.match(/still locked by this worker: 3$/)
    expect(
      formatText({...base, lockedAfter: null, lockCheckError: 'too many connections for role "app"'}, plain, now),
    ).to.match(/still locked by this worker: unknown \(could not check: too many connections for role "app"\)$/)
  })
})

describe('worker log lines on a terminal', () => {
  it('task names, errors and capture counts from jobs cannot control the terminal (only our colours pass)', () => {
    const colour = new Chalk({level: 1})
    const lines = [
      formatText(
        {
          type: 'job:failure',
          durationMs: 3,
          error: 'boom \u001B]0;pwned\u0007 \u001B[2J\u009B1A\rX\n    at task (t.js:1)',
          outcome: 'permanent',
          pool: 'shared',
          task: 'evil\u001B[2J',
          jobId: '7',
          attempt: 1,
          maxAttempts: 8,
        },
        colour,
        now,
      ),
      formatText(
        {type: 'dlq:capture', captured: 1, durationMs: 1, reason: 'interval', byTask: {'evil\u001B[2J': 1}},
        colour,
        now,
      ),
      formatText({type: 'log', level: 'info', message: 'task said \u001B]0;pwned\u0007'}, colour, now),
    ]
    for (const line of lines) {
      expect(line.replace(/\u001B\[[0-9;]*m/g, '')).to.not.match(/[\u0000-\u0009\u000B-\u001F\u007F-\u009F]/)
    }
    expect(lines[0])
      .to.contain('evil\\x1b[2J#7')
      .and.contain('boom \\x1b]0;pwned\\x07 \\x1b[2J\\x9b1A\\rX\n    at task')
    expect(lines[1]).to.contain('evil\\x1b[2J ×1')
    expect(lines[2]).to.contain('task said \\x1b]0;pwned\\x07')
  })
})
