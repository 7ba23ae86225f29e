import {Flags} from '@oclif/core'

import {
  jobActionFlags,
  jobIdsArg,
  JobsActionCommand,
  jobSelectorFlags,
  type JobActionCommandResult,
} from '../../cli/jobs.js'

export default class JobsRemove extends JobsActionCommand<typeof JobsRemove> {
  static override summary = 'Delete jobs from the queue (never running ones), or park them in the DLQ with --to-dlq.'
  static override description = `Deletes the selected jobs through graphile-worker's complete_jobs(), in batches (progress on stderr). Running jobs are never touched: they are left out and counted. With --to-dlq the jobs move into backfill_dlq instead (failure reason "Removed by an operator: <reason>"), with the same single-statement move as DLQ capture, so each job is either still in the queue or in the DLQ, never both and never neither; dlq retry brings them back. The command acts on the selection it showed: jobs enqueued afterwards, and jobs that changed afterwards (a retry, a replace, another operator), are left alone and reported. Every batch writes an audit row (dlq history). Requires a selection or --all; asks for confirmation unless --yes.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> --task send_email --state scheduled --dry-run',
    '<%= config.bin %> <%= command.id %> --job-key invoice:42 --yes --reason "customer cancelled"',
    '<%= config.bin %> <%= command.id %> --task broken_task --to-dlq --yes --reason "fails in a loop, see INC-123"',
    '<%= config.bin %> <%= command.id %> 4242 4243',
  ]

  static override strict = false
  static override args = jobIdsArg
  static override flags = {
    ...jobSelectorFlags,
    ...jobActionFlags,
    'to-dlq': Flags.boolean({summary: 'Move the jobs into the DLQ (backfill_dlq) instead of deleting them.'}),
  }

  async run(): Promise<JobActionCommandResult> {
    const toDlq = this.flags['to-dlq']
    return this.runAction(
      {action: 'remove', toDlq},
      toDlq
        ? {verb: 'move to the DLQ', did: (n) => `moved ${n} into the DLQ`, prompt: (n) => `Move ${n} into the DLQ`}
        : {verb: 'remove', did: (n) => `removed ${n}`, prompt: (n) => `Delete ${n}`},
      this.flags,
    )
  }
}
