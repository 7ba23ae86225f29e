import {Flags} from '@oclif/core'

import {age, DlqCommand, idsArg, queueLabel, schemaFlag, selectorFlags, shortTime} from '../../cli/dlq.js'
import type {Output} from '../../cli/output.js'
import type {DlqSelector} from '../../lib/dlq/selector.js'
import {dlqStats, type DlqStats} from '../../lib/dlq/stats.js'

export type StatsResult = DlqStats & {selection: DlqSelector}

export default class DlqStatsCommand extends DlqCommand<typeof DlqStatsCommand> {
  static override summary = 'Triage the DLQ: totals, counts per task and queue, and failure groups.'
  static override description = `Failure groups gather entries of one task whose errors differ only in volatile parts: numbers, UUIDs, hex ids, quoted values, timestamps, e-mail addresses, URLs and IP addresses are replaced by placeholders in the first line of the error. Each group has a fingerprint: pass it to --group of list, retry or purge to act on exactly that group. One streaming pass over the selection, in bounded memory.`

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --task send_email --since 1d',
    '<%= config.bin %> <%= command.id %> --top 5 --json',
  ]

  static override strict = false
  static override args = idsArg
  static override flags = {
    ...selectorFlags,
    limit: Flags.integer({
      summary: 'Only the first N selected entries (in id order, as retry --limit N would take them).',
      min: 1,
    }),
    top: Flags.integer({summary: 'Rows shown per table (default 20; --json has every group).', min: 1, default: 20}),
  }

  async run(): Promise<StatsResult> {
    await this.requireDlq()
    const selection = await this.selector(this.flags)
    const stats = await dlqStats(this.db(), {selector: selection})
    renderStats(this.out, stats, this.flags.top)
    if (stats.groups.length > 0) {
      const first = stats.groups[0]
      this.out.info(
        `\nnext: backfill dlq list${schemaFlag(this.schema)} --group ${first?.fingerprint}   or   backfill dlq retry${schemaFlag(this.schema)} --group ${first?.fingerprint} --dry-run`,
      )
    }
    return {...stats, selection}
  }
}

/** The stats tables (also the body of retry and purge dry runs). */
export function renderStats(out: Output, stats: DlqStats, top: number): void {
  if (stats.total === 0) {
    out.result('no DLQ entries match the selection')
    return
  }
  out.result(
    `${stats.total} entr${stats.total === 1 ? 'y' : 'ies'}, oldest ${shortTime(stats.oldest)} (${age(stats.oldest)} ago), newest ${shortTime(stats.newest)} (${age(stats.newest)} ago)`,
  )
  out.result('')
  out.table(stats.byTask.slice(0, top), [
    {header: 'TASK', get: (t) => t.taskIdentifier},
    {header: 'ENTRIES', get: (t) => String(t.count), align: 'right'},
  ])
  if (stats.byTask.length > top) out.result(`… and ${stats.byTask.length - top} more tasks`)
  out.result('')
  out.table(stats.byQueue.slice(0, top), [
    {header: 'QUEUE', get: (q) => queueLabel(q.queueName)},
    {header: 'ENTRIES', get: (q) => String(q.count), align: 'right'},
  ])
  if (stats.byQueue.length > top) out.result(`… and ${stats.byQueue.length - top} more queues`)
  out.result('')
  out.result(out.color.bold('Failure groups (largest first):'))
  out.table(stats.groups.slice(0, top), [
    {header: 'GROUP', get: (g) => g.fingerprint},
    {header: 'TASK', get: (g) => g.taskIdentifier, max: 28},
    {header: 'ENTRIES', get: (g) => String(g.count), align: 'right'},
    {header: 'FIRST', get: (g) => `${age(g.firstSeen)} ago`, align: 'right'},
    {header: 'LAST', get: (g) => `${age(g.lastSeen)} ago`, align: 'right'},
    {header: 'ERROR (sample)', get: (g) => g.sampleError, max: 70},
  ])
  if (stats.groups.length > top) out.result(`… and ${stats.groups.length - top} more groups`)
  if (stats.groupsTruncated)
    out.warn(
      `${stats.ungrouped} entries fell outside the ${stats.groups.length} groups tracked (too many distinct errors)`,
    )
}
