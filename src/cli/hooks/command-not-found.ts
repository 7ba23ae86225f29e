import type {Hook} from '@oclif/core'

import {UsageError} from '../../lib/errors.js'
import {errorEnvelope} from '../errors.js'
import {commandList, wantsJson} from './command-list.js'

/**
 * `backfill status extra` reaches oclif as the unknown command "status:extra". Report it in
 * our format (one Error line, or the JSON error envelope under --json) with exit code 2,
 * naming the stray argument when a known command precedes it.
 */
const hook: Hook.CommandNotFound = async function (options) {
  const argv = [options.id, ...(options.argv ?? [])]
  const json = wantsJson(argv)
  // `backfill --json` (flags, no command): oclif takes the first flag for the command's name.
  if (options.id.startsWith('-')) {
    const commands = commandList(options.config)
    report(
      new UsageError('`backfill` needs a command (flags come after it)', {
        code: 'E_MISSING_COMMAND',
        suggestions: ['see: backfill --help'],
        details: {commands},
      }),
      json,
    )
    return
  }
  const words = options.id.split(':')
  let known: string | undefined
  for (let n = words.length - 1; n > 0 && !known; n--) {
    const id = words.slice(0, n).join(':')
    if (options.config.findCommand(id)) known = id
  }
  const error = known
    ? new UsageError(
        `unexpected argument "${words.slice(known.split(':').length).join(' ')}" for \`backfill ${known.replaceAll(':', ' ')}\``,
        {
          suggestions: [`see: backfill ${known.replaceAll(':', ' ')} --help`],
        },
      )
    : new UsageError(`unknown command "${words.join(' ')}"`, {
        code: 'E_UNKNOWN_COMMAND',
        suggestions: ['see: backfill --help'],
      })
  report(error, json)
}

function report(error: UsageError, json: boolean): void {
  process.exitCode = error.exitCode
  if (json) process.stdout.write(`${JSON.stringify(errorEnvelope(error, []), null, 2)}\n`)
  else process.stderr.write(`Error: ${error.message}\n${error.suggestions.map((s) => `  → ${s}\n`).join('')}`)
}

export default hook
