import {Flags} from '@oclif/core'

import {DlqCommand, queueLabel, schemaFlag} from '../../cli/dlq.js'
import {captureNow, type CaptureRunResult} from '../../lib/dlq/capture-run.js'
import {DEFAULT_CAPTURE_BATCH} from '../../lib/dlq/capture.js'
import {EXIT_CODES} from '../../lib/errors.js'

export default class DlqCapture extends DlqCommand<typeof DlqCapture> {
  static override summary = 'Move exhausted jobs from the jobs table into the DLQ now.'
  static override description = `For deployments whose workers do not capture failed jobs: moves every job that has used all its attempts (and is not locked) into the DLQ, with the same atomic statement backfill workers run: each job is either still in the jobs table or in the DLQ, never both. A job retried from the DLQ before keeps its retry count. Each batch is recorded in the audit trail. Safe to run while workers run, and from two terminals at once. Asks for confirmation unless --yes.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> --dry-run',
    '<%= config.bin %> <%= command.id %> --yes --reason "workers ran without DLQ"',
  ]

  static override flags = {
    'dry-run': Flags.boolean({summary: 'Show how many exhausted jobs are waiting, per task and queue; move nothing.'}),
    limit: Flags.integer({summary: 'Move at most N jobs.', min: 1}),
    yes: Flags.boolean({char: 'y', summary: 'Do not ask for confirmation.'}),
    reason: Flags.string({summary: 'Why, recorded in the audit trail (dlq history).'}),
    'batch-size': Flags.integer({
      summary: `Jobs per statement (default ${DEFAULT_CAPTURE_BATCH}).`,
      min: 1,
      max: 50_000,
    }),
  }

  async run(): Promise<CaptureRunResult> {
    const {flags} = this
    await this.requireDlq()
    const db = this.db()
    if (!flags['dry-run']) {
      const waiting = (await captureNow(db, {dryRun: true})).waiting.total
      if (waiting === 0) {
        this.out.info('no exhausted jobs are waiting in the jobs table')
        return {
          dryRun: false,
          run: null,
          waiting: {total: 0, groups: []},
          captured: 0,
          batches: 0,
          byTask: {},
          recaptured: 0,
          failed: [],
          interrupted: false,
          durationMs: 0,
        }
      }
      const count = flags.limit === undefined ? waiting : Math.min(waiting, flags.limit)
      await this.confirm({
        yes: flags.yes,
        message: `Move ${count} exhausted job(s) into the DLQ (schema "${this.schema}")?`,
        action: 'capture jobs',
      })
    }
    this.handlesInterrupt = true
    const result = await captureNow(db, {
      dryRun: flags['dry-run'],
      limit: flags.limit,
      batchSize: flags['batch-size'],
      reason: flags.reason,
      signal: this.interrupt.signal,
      onBatch: (moved, total) => this.out.info(`moved ${moved} (total ${total})`),
    })
    if (result.dryRun) {
      if (result.waiting.total === 0) this.out.result('no exhausted jobs are waiting in the jobs table')
      else {
        this.out.result(`dry run: would move ${result.waiting.total} exhausted job(s) into the DLQ`)
        this.out.table(result.waiting.groups, [
          {header: 'TASK', get: (g) => g.taskIdentifier},
          {header: 'QUEUE', get: (g) => queueLabel(g.queueName)},
          {header: 'JOBS', get: (g) => String(g.count), align: 'right'},
          {header: 'OLDEST UPDATE', get: (g) => g.oldest?.toISOString() ?? '–'},
        ])
      }
      return result
    }
    if (result.captured === 0) this.out.result('no exhausted jobs were waiting in the jobs table')
    else {
      this.out.result(
        `moved ${result.captured} job(s) into the DLQ${result.recaptured > 0 ? ` (${result.recaptured} had been retried before)` : ''}; audit run ${result.run}`,
      )
      this.out.info(`next: backfill dlq stats${schemaFlag(this.schema)}`)
    }
    for (const failed of result.failed) {
      this.out.warn(`job ${failed.jobId} cannot be moved into the DLQ and stays in the jobs table: ${failed.error}`)
    }
    if (result.interrupted) {
      this.out.warn('interrupted: the jobs not yet moved are still in the jobs table')
      process.exitCode = EXIT_CODES.interrupted
    }
    return result
  }
}
