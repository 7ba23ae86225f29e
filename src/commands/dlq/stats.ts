import {Flags} from '@oclif/core'

import {DlqCommand, idsArg, renderStats, schemaFlag, selectorFlags} from '../../cli/dlq.js'
import {dlqStats} from '../../lib/dlq/stats.js'
import type {DlqStatsDocument} from '../../lib/console/operations.js'

export type StatsResult = DlqStatsDocument

export default class DlqStatsCommand extends DlqCommand<typeof DlqStatsCommand> {
  static override summary = 'Triage the DLQ: totals, counts per task and queue, and failure groups.'
  static override description = `Failure groups gather entries of one task whose errors differ only in volatile parts: numbers, UUIDs, hex ids, quoted values, timestamps, e-mail addresses, URLs and IP addresses are replaced by placeholders in the first line of the error. Each group has a fingerprint: pass it to --group of list, retry or purge to act on exactly that group. The whole DLQ, or a selection by task, queue or group, is read from per-group counts kept by triggers (no scan); other selections are one streaming pass over the selected entries, in bounded memory.`

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
    // On stdout after the tables: the hint names the first group of the table above it, and
    // text on stderr can overtake stdout on its way to the screen (a pager, a relaying script).
    const first = stats.groups[0]
    if (first && !this.out.quiet) {
      this.out.result('')
      this.out.result(
        `next: backfill dlq list${schemaFlag(this.schema)} --group ${first.fingerprint}   or   backfill dlq retry${schemaFlag(this.schema)} --group ${first.fingerprint} --dry-run`,
      )
    }
    return {...stats, selection}
  }
}
