import {Flags} from '@oclif/core'

import type {DlqEntry} from '../../lib/dlq/entries.js'
import {selectionAsOfNow} from '../../lib/dlq/selector.js'
import {
  DlqCommand,
  ENTRY_COLUMNS,
  entryJson,
  idsArg,
  renderStats,
  requireSelection,
  selectorFlags,
} from '../../cli/dlq.js'
import {previewSelection} from '../../lib/dlq/preview.js'
import {DEFAULT_PURGE_BATCH, purgeDlq} from '../../lib/dlq/purge.js'
import {countSelection} from '../../lib/dlq/scan.js'
import {EXIT_CODES} from '../../lib/errors.js'
import type {DlqPurgeDocument} from '../../lib/console/operations.js'

/** The document is the library's, so the console's API answers with the very same shape. */
export type PurgeCommandResult = DlqPurgeDocument

export default class DlqPurge extends DlqCommand<typeof DlqPurge> {
  static override summary = 'Delete DLQ entries for good, in batches.'
  static override description = `Deletes the selected entries in batches (default ${DEFAULT_PURGE_BATCH} per transaction, progress on stderr), so even a million rows never become one long statement that blocks the table. Each batch is recorded in the audit trail (dlq history). Entries a concurrent retry is moving are left to it. Requires a selection or --all; asks for confirmation unless --yes; Ctrl-C stops after the current batch.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> --older-than 30d --dry-run',
    '<%= config.bin %> <%= command.id %> --older-than 30d --yes --reason "monthly cleanup"',
    '<%= config.bin %> <%= command.id %> --group 3f9a1c0b7d2e --yes',
    '<%= config.bin %> <%= command.id %> 42 43',
  ]

  static override strict = false
  static override args = idsArg
  static override flags = {
    ...selectorFlags,
    all: Flags.boolean({summary: 'Allow an empty selection: purge every entry.'}),
    limit: Flags.integer({summary: 'Purge at most N entries (in id order).', min: 1}),
    'dry-run': Flags.boolean({summary: 'Show what would be deleted (count, groups, sample); change nothing.'}),
    yes: Flags.boolean({char: 'y', summary: 'Do not ask for confirmation.'}),
    reason: Flags.string({summary: 'Why, recorded in the audit trail (dlq history).'}),
    'batch-size': Flags.integer({
      summary: `Entries per transaction (default ${DEFAULT_PURGE_BATCH}; wide selections go by ranges of pages: about this many, estimated from the table's statistics, and sized by time without this flag).`,
      min: 1,
      max: 100_000,
    }),
  }

  async run(): Promise<PurgeCommandResult> {
    const {flags} = this
    const selection = await this.selector(flags)
    requireSelection(selection, flags.all, 'purge')
    await this.requireDlq()
    const db = this.db()

    if (flags['dry-run']) {
      const preview = await previewSelection(db, {selector: selection})
      if (preview.stats.total === 0) this.out.result('nothing to purge: no DLQ entries match the selection')
      else {
        this.out.result(
          `dry run: would delete ${preview.stats.total} entr${preview.stats.total === 1 ? 'y' : 'ies'} for good`,
        )
        this.out.result('')
        renderStats(this.out, preview.stats, 10)
        this.out.result('')
        this.out.result(this.out.color.bold(`First ${preview.sample.length}:`))
        this.out.table(preview.sample, ENTRY_COLUMNS)
        this.out.info('\nnothing was changed')
      }
      return {dryRun: true, selection, ...preview, sample: preview.sample.map(entryJson) as unknown as DlqEntry[]}
    }

    // Act on what is selected now: entries landing while the prompt is open are left alone.
    const asOfNow = await selectionAsOfNow(db, selection)
    const count = asOfNow.group !== undefined && flags.yes ? null : await countSelection(db, asOfNow)
    if (count === 0) {
      this.out.result('nothing to purge: no DLQ entries match the selection')
      return {dryRun: false, selection, run: '', purged: 0, batches: 0, interrupted: false, durationMs: 0}
    }
    await this.confirm({
      yes: flags.yes,
      message: `Delete ${count} DLQ entr${count === 1 ? 'y' : 'ies'} for good (schema "${this.schema}")?`,
      action: 'purge DLQ entries',
    })
    this.handlesInterrupt = true
    const result = await purgeDlq(db, {
      selector: asOfNow,
      batchSize: flags['batch-size'],
      reason: flags.reason,
      signal: this.interrupt.signal,
      onBatch: (p) => this.out.info(`batch ${p.batch}: ${p.purged}${count === null ? '' : `/${count}`} deleted`),
    })
    if (result.purged > 0)
      this.out.result(
        `deleted ${result.purged} entr${result.purged === 1 ? 'y' : 'ies'} in ${result.batches} batch(es), ${(result.durationMs / 1000).toFixed(1)} s; audit run ${result.run}`,
      )
    else if (!result.interrupted)
      this.out.result('nothing to purge: no DLQ entries match the selection (another run may have taken them)')
    if (result.interrupted) {
      this.out.warn(
        `interrupted after batch ${result.batches}: ${result.purged} deleted; the rest are still in the DLQ`,
      )
      process.exitCode = EXIT_CODES.interrupted
    }
    return {dryRun: false, selection, ...result}
  }
}
