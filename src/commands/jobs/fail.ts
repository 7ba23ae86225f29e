import {Flags} from '@oclif/core'

import {
  jobActionFlags,
  jobIdsArg,
  JobsActionCommand,
  jobSelectorFlags,
  type JobActionCommandResult,
} from '../../cli/jobs.js'

export default class JobsFail extends JobsActionCommand<typeof JobsFail> {
  static override summary =
    'Stop retrying jobs: mark them permanently failed (and park them in the DLQ with --capture).'
  static override description = `Marks the selected jobs as permanently failed through graphile-worker's permanently_fail_jobs() (attempts = max_attempts, last_error = --message, else --reason, else "Manually marked as failed"), so no worker runs them again. Exhausted jobs then go to the DLQ at the next capture (a backfill worker's capture loop, or dlq capture); --capture moves them at once, in the same transaction. Running and already exhausted jobs are left out. Acts on the selection it showed (see jobs remove); audited (dlq history). Requires a selection or --all; asks for confirmation unless --yes.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> --task send_email --error "mailbox does not exist" --dry-run',
    '<%= config.bin %> <%= command.id %> --task send_email --state retrying --capture --yes --reason "bad template, INC-123"',
    '<%= config.bin %> <%= command.id %> 4242 --message "duplicate order" --yes',
  ]

  static override strict = false
  static override args = jobIdsArg
  static override flags = {
    ...jobSelectorFlags,
    ...jobActionFlags,
    message: Flags.string({summary: 'The last_error to record on each job (default: --reason).'}),
    capture: Flags.boolean({summary: 'Move the failed jobs into the DLQ at once (same transaction).'}),
  }

  async run(): Promise<JobActionCommandResult> {
    const {message, capture} = this.flags
    return this.runAction(
      {action: 'fail', message, capture},
      capture
        ? {
            verb: 'fail',
            did: (n) => `failed ${n} and moved them into the DLQ`,
            prompt: (n) => `Fail ${n} and move them into the DLQ`,
          }
        : {verb: 'fail', did: (n) => `failed ${n} for good`, prompt: (n) => `Permanently fail ${n}`},
      this.flags,
    )
  }
}
