import {Flags, type Command} from '@oclif/core'

import {UsageError} from '../lib/errors.js'
import type {SelectorLabels} from '../lib/selector.js'
import {DbCommand} from './base-command.js'
import {duration, since} from './flags.js'

/**
 * The selector grammar on the command line, shared by the dlq and jobs commands: the same
 * flags, the same labels in error messages, the same refusal of an empty selection.
 * `one`/`many` name what is selected ("entry"/"entries"); `time` says what the time flags compare.
 */
export function commonSelectorFlags(words: {one: string; many: string; time: string; queue: string; error?: string}) {
  const {one, many: noun, time} = words
  return {
    task: Flags.string({
      multiple: true,
      helpGroup: 'SELECTION',
      summary: `Only ${noun} of this task identifier (repeatable).`,
    }),
    queue: Flags.string({multiple: true, helpGroup: 'SELECTION', summary: words.queue}),
    'job-key': Flags.string({
      multiple: true,
      helpGroup: 'SELECTION',
      summary: `Only the ${one} with this job key (repeatable).`,
    }),
    since: since({
      helpGroup: 'SELECTION',
      summary: `Only ${noun} that ${time} at or after this time (ISO 8601, or a duration ago: 2h, 7d).`,
    }),
    until: since({
      helpGroup: 'SELECTION',
      summary: `Only ${noun} that ${time} before this time (ISO 8601, or a duration ago).`,
    }),
    'older-than': duration({
      helpGroup: 'SELECTION',
      summary: `Only ${noun} that ${time} more than this long ago (e.g. 30d).`,
    }),
    error: Flags.string({
      helpGroup: 'SELECTION',
      summary: words.error ?? `Only ${noun} whose last error contains this text (case-insensitive).`,
    }),
  }
}

/** The flag names the library's selector errors should use. */
export const CLI_SELECTOR_LABELS: SelectorLabels = {
  ids: 'id',
  since: '--since',
  until: '--until',
  olderThan: '--older-than',
  error: '--error',
  limit: '--limit',
}

export interface CommonSelectorFlagValues {
  task?: string[]
  queue?: string[]
  'job-key'?: string[]
  since?: Date
  until?: Date
  /** Milliseconds. */
  'older-than'?: number
  error?: string
  limit?: number
}

/** The common selector input from parsed flags and positional ids. */
export function commonSelectorInput(flags: CommonSelectorFlagValues, ids: string[]) {
  return {
    ids,
    tasks: flags.task,
    queues: flags.queue,
    jobKeys: flags['job-key'],
    since: flags.since,
    until: flags.until,
    olderThan: flags['older-than'],
    error: flags.error,
    limit: flags.limit,
  }
}

/** Base of commands that take a selection: positional ids of any count (the commands are not strict). */
export abstract class SelectorCommand<T extends typeof Command> extends DbCommand<T> {
  protected async positionalArgs(): Promise<string[]> {
    const ctor = this.ctor as typeof SelectorCommand & typeof Command
    const {argv} = await this.parse({
      args: ctor.args,
      baseFlags: ctor.baseFlags,
      enableJsonFlag: ctor.enableJsonFlag,
      flags: ctor.flags,
      strict: false,
    })
    return argv as string[]
  }
}

/** Destructive commands never treat "no selector" as "everything". */
export function refuseEmptySelection(options: {
  empty: boolean
  all: boolean
  /** The verb, e.g. "purge". */
  action: string
  /** What to select, e.g. "entries by id, --task, …". */
  how: string
  /** What --all covers, e.g. "every entry". */
  everything: string
}): void {
  if (options.all || !options.empty) return
  throw new UsageError(`refusing to ${options.action} without a selection`, {
    code: 'E_EMPTY_SELECTION',
    suggestions: [
      `select ${options.how}`,
      `or pass --all to ${options.action} ${options.everything} (add --dry-run first to see what that is)`,
    ],
  })
}
