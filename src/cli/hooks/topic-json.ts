import type {Hook} from '@oclif/core'

import {commandList, wantsJson} from './command-list.js'

/**
 * `backfill dlq --json` names a topic, not a command: oclif would print the topic's help,
 * which breaks the --json contract (one JSON document on stdout). Answer with the usage-error
 * envelope (exit 2) listing the topic's commands instead. Without --json, the help stays.
 */
const hook: Hook.Init = async function ({id, argv, config}) {
  if (id === undefined || !wantsJson(argv) || config.findCommand(id) || !config.findTopic(id)) return
  const [{UsageError}, {errorEnvelope}] = await Promise.all([import('../../lib/errors.js'), import('../errors.js')])
  const topic = id.replaceAll(':', ' ')
  const commands = commandList(config, id)
  const error = new UsageError(
    `\`backfill ${topic}\` needs a command: ${commands.map((c) => c.command.split(' ').pop()).join(', ')}`,
    {
      code: 'E_MISSING_COMMAND',
      suggestions: [`see: backfill ${topic} --help`],
      details: {topic, commands},
    },
  )
  process.stdout.write(`${JSON.stringify(errorEnvelope(error, []), null, 2)}\n`)
  this.exit(error.exitCode)
}

export default hook
