import {expect} from 'chai'

import {decodeCursor} from '../../src/lib/dlq/entries.js'
import type {BackfillError} from '../../src/lib/errors.js'
import {loadCrontab, loadTasks} from '../../src/lib/worker/tasks.js'

async function failure(fn: () => unknown): Promise<BackfillError> {
  try {
    await fn()
  } catch (error) {
    return error as BackfillError
  }
  throw new Error('expected an error')
}

const text = (error: BackfillError): string => [error.message, ...error.suggestions].join('\n')

/** Library errors name inputs the way the caller does (the CLI passes its flags), never CLI flags of their own. */
describe('library errors and the caller’s labels', () => {
  it('a bad DLQ cursor names no flag', async () => {
    const error = await failure(() => decodeCursor('not-a-cursor'))
    expect(error.code).to.equal('E_BAD_CURSOR')
    expect(text(error)).to.not.match(/--[a-z]/)
  })

  it('tasks and crontab errors use the labels they are given, neutral words otherwise', async () => {
    const missing = '/nonexistent/backfill-tasks'
    expect(text(await failure(() => loadTasks({directory: missing})))).to.not.match(/--[a-z]/)
    expect(
      text(
        await failure(() =>
          loadTasks({directory: missing, labels: {directory: '--tasks DIR', module: '--task-module FILE'}}),
        ),
      ),
    ).to.contain('--tasks DIR / --task-module FILE')
    expect(text(await failure(() => loadCrontab(missing)))).to.contain('check the crontab path')
    expect(text(await failure(() => loadCrontab(missing, '--crontab / BACKFILL_CRONTAB')))).to.contain(
      'check --crontab / BACKFILL_CRONTAB',
    )
  })
})
