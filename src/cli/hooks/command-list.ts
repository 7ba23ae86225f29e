import type {Interfaces} from '@oclif/core'

/** The command line asks for JSON (`--json` or `--json=…`). */
export function wantsJson(argv: readonly string[]): boolean {
  return argv.some((a) => a === '--json' || a.startsWith('--json='))
}

/** The visible commands (under `topic` when given), as `backfill a b` with their summaries, sorted. */
export function commandList(config: Interfaces.Config, topic?: string): {command: string; summary: string}[] {
  return config.commands
    .filter((c) => !c.hidden && (topic === undefined || c.id.startsWith(`${topic}:`)))
    .map((c) => ({command: `backfill ${c.id.replaceAll(':', ' ')}`, summary: c.summary ?? ''}))
    .sort((a, b) => a.command.localeCompare(b.command))
}
