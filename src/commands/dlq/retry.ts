import {Flags} from '@oclif/core'

import {duration, maxAttempts, priority, PRIORITY_SUMMARY, timestamp} from '../../cli/flags.js'
import {
  DlqCommand,
  ENTRY_COLUMNS,
  entryJson,
  idsArg,
  renderStats,
  requireSelection,
  schemaFlag,
  selectorFlags,
} from '../../cli/dlq.js'
import type {DlqEntry} from '../../lib/dlq/entries.js'
import {previewSelection, type SelectionPreview} from '../../lib/dlq/preview.js'
import {DEFAULT_RETRY_BATCH, retryDlq, type RetryResult} from '../../lib/dlq/retry.js'
import {countSelection} from '../../lib/dlq/scan.js'
import {selectionAsOfNow} from '../../lib/dlq/selector.js'
import {EXIT_CODES} from '../../lib/errors.js'
import type {DlqRetryDocument} from '../../lib/console/operations.js'
import {emptyRetryResult as emptyResult} from '../../lib/dlq/retry.js'

/** The document is the library's, so the console's API answers with the very same shape. */
export type RetryCommandResult = DlqRetryDocument

export default class DlqRetry extends DlqCommand<typeof DlqRetry> {
  static override summary = 'Put DLQ entries back in the jobs table, exactly once.'
  static override description = `Each selected entry becomes a job again with its task, payload, priority, queue (a serial queue keeps its name; '' and the crate's legacy 'default' become parallel), job key and max attempts, and leaves the DLQ in the same transaction. Entries are moved in batches (progress on stderr); a crash or Ctrl-C leaves every entry either still in the DLQ or enqueued, never both, never neither. Two retries started at once split the entries between them. If a retried job fails again, its new DLQ entry shows how often it had been retried. An entry whose job key is held by a job already in the jobs table stays in the DLQ unless --key-conflict replace. Requires a selection or --all; asks for confirmation unless --yes.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> --group 3f9a1c0b7d2e --dry-run',
    '<%= config.bin %> <%= command.id %> --task send_email --since 2h --limit 10 --yes --reason "canary after SMTP fix"',
    '<%= config.bin %> <%= command.id %> --all --yes --reason "provider outage over"',
    '<%= config.bin %> <%= command.id %> 42 43 --priority -10 --max-attempts 3',
  ]

  static override strict = false
  static override args = idsArg
  static override flags = {
    ...selectorFlags,
    all: Flags.boolean({summary: 'Allow an empty selection: retry every entry.'}),
    limit: Flags.integer({summary: 'Retry at most N entries (in id order): a canary batch.', min: 1}),
    'dry-run': Flags.boolean({summary: 'Show what would be retried (count, groups, sample); change nothing.'}),
    yes: Flags.boolean({char: 'y', summary: 'Do not ask for confirmation.'}),
    reason: Flags.string({summary: 'Why, recorded in the audit trail (dlq history).'}),
    priority: priority({summary: `Override each entry's priority: ${PRIORITY_SUMMARY}.`}),
    'max-attempts': maxAttempts({summary: "Override each entry's max attempts (1 to 32767)."}),
    'run-at': timestamp({
      summary: 'Run the jobs at this ISO 8601 date-time (with a time zone) instead of now.',
      exclusive: ['delay'],
    }),
    delay: duration({summary: 'Run the jobs after this delay (e.g. 10m) instead of now.', exclusive: ['run-at']}),
    'key-conflict': Flags.string({
      options: ['skip', 'replace'],
      default: 'skip',
      summary:
        "When a job with the entry's job key is in the jobs table: skip (leave the entry) or replace (graphile's job_key semantics).",
    }),
    'default-queue': Flags.string({
      options: ['parallel', 'serial'],
      default: 'parallel',
      summary:
        "How to read the crate's legacy queue_name 'default': parallel (no queue) or a serial queue named \"default\".",
    }),
    'batch-size': Flags.integer({
      summary: `Entries per transaction (default ${DEFAULT_RETRY_BATCH}).`,
      min: 1,
      max: 50_000,
    }),
  }

  async run(): Promise<RetryCommandResult> {
    const {flags} = this
    const selection = await this.selector(flags)
    requireSelection(selection, flags.all, 'retry')
    const runAt = flags.delay === undefined ? flags['run-at'] : new Date(Date.now() + flags.delay)
    await this.requireDlq()
    const db = this.db()

    if (flags['dry-run']) {
      const preview = await previewSelection(db, {
        selector: selection,
        checkKeyConflicts: flags['key-conflict'] === 'skip',
      })
      this.renderPreview(preview)
      return {dryRun: true, selection, ...preview, sample: preview.sample.map(entryJson) as unknown as DlqEntry[]}
    }

    // Act on what is selected now: entries landing while the prompt is open are left alone.
    const asOfNow = await selectionAsOfNow(db, selection)
    const count = asOfNow.group !== undefined && flags.yes ? null : await countSelection(db, asOfNow)
    if (count === 0) {
      this.out.result('nothing to retry: no DLQ entries match the selection')
      return {dryRun: false, selection, ...emptyResult()}
    }
    await this.confirm({
      yes: flags.yes,
      message: `Retry ${count} DLQ entr${count === 1 ? 'y' : 'ies'} (schema "${this.schema}")?`,
      action: 'retry DLQ entries',
    })
    this.handlesInterrupt = true
    const result = await retryDlq(db, {
      selector: asOfNow,
      priority: flags.priority,
      maxAttempts: flags['max-attempts'],
      runAt,
      keyConflict: flags['key-conflict'] as 'skip' | 'replace',
      defaultQueue: flags['default-queue'] as 'parallel' | 'serial',
      batchSize: flags['batch-size'],
      reason: flags.reason,
      signal: this.interrupt.signal,
      onBatch: (p) =>
        this.out.info(
          `batch ${p.batch}: ${p.retried}${count === null ? '' : `/${count}`} retried${p.skipped > 0 ? `, ${p.skipped} left in the DLQ` : ''}`,
        ),
    })
    this.renderSummary(result)
    if (result.interrupted) process.exitCode = EXIT_CODES.interrupted
    return {dryRun: false, selection, ...result}
  }

  private renderPreview(preview: SelectionPreview): void {
    const {out} = this
    if (preview.stats.total === 0) {
      out.result('nothing to retry: no DLQ entries match the selection')
      return
    }
    out.result(`dry run: would retry ${preview.stats.total} entr${preview.stats.total === 1 ? 'y' : 'ies'}`)
    if (preview.stats.keyConflicts)
      out.result(
        `${preview.stats.keyConflicts} of them would stay in the DLQ: a job with the same job key is in the jobs table (see --key-conflict)`,
      )
    out.result('')
    renderStats(out, preview.stats, 10)
    out.result('')
    out.result(out.color.bold(`First ${preview.sample.length} (in retry order):`))
    out.table(preview.sample, ENTRY_COLUMNS)
    out.info(
      `\nnothing was changed; run again without --dry-run to retry${schemaFlag(this.schema) ? ` (${schemaFlag(this.schema).trim()})` : ''}`,
    )
  }

  private renderSummary(result: RetryResult): void {
    const {out} = this
    const skipped = result.skipped.keyConflict + result.skipped.invalid
    const tasks = Object.entries(result.byTask)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 5)
      .map(([t, n]) => `${t} ${n}`)
      .join(', ')
    if (result.retried > 0)
      out.result(
        `retried ${result.retried} entr${result.retried === 1 ? 'y' : 'ies'} as new jobs in ${result.batches} batch(es), ${(result.durationMs / 1000).toFixed(1)} s (${tasks}); audit run ${result.run}`,
      )
    else if (skipped === 0 && !result.interrupted)
      out.result('nothing to retry: no DLQ entries match the selection (another run may have taken them)')
    if (result.skipped.keyConflict > 0) {
      out.warn(
        `${result.skipped.keyConflict} entr${result.skipped.keyConflict === 1 ? 'y' : 'ies'} left in the DLQ: a job with the same job key is already in the jobs table (e.g. entry ${result.skippedSample.find((s) => s.reason === 'key_conflict')?.dlqId}); the newer job was kept. Retry them with --key-conflict replace, or purge them.`,
      )
    }
    if (result.skipped.invalid > 0) {
      out.warn(
        `${result.skipped.invalid} entr${result.skipped.invalid === 1 ? 'y' : 'ies'} left in the DLQ: task or queue name longer than 128 characters, or an empty/over-long job key, which graphile-worker rejects`,
      )
    }
    if (result.interrupted)
      out.warn(
        `interrupted after batch ${result.batches}: ${result.retried} retried; the rest are still in the DLQ (rerun the same command to continue)`,
      )
  }
}
