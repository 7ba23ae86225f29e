import {Flags} from '@oclif/core'

import {
  jobActionFlags,
  jobIdsArg,
  JobsActionCommand,
  jobSelectorFlags,
  type JobActionCommandResult,
} from '../../cli/jobs.js'

export default class JobsRunNow extends JobsActionCommand<typeof JobsRunNow> {
  static override summary = 'Make scheduled and retrying jobs due now (run_at = now).'
  static override description = `Sets run_at to now on the selected jobs that are not yet due (scheduled, retrying), through graphile-worker's reschedule_jobs(), without charging or resetting attempts. --reset-attempts also sets attempts to 0, which makes exhausted jobs runnable again. Jobs that are due already (ready, blocked) are left out, and running jobs are never touched. Acts on the selection it showed (see jobs remove); audited (dlq history). Requires a selection or --all; asks for confirmation unless --yes.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> --task send_email --state retrying --dry-run',
    '<%= config.bin %> <%= command.id %> 4242 --yes',
    '<%= config.bin %> <%= command.id %> --task send_email --state exhausted --reset-attempts --yes --reason "fix deployed"',
  ]

  static override strict = false
  static override args = jobIdsArg
  static override flags = {
    ...jobSelectorFlags,
    ...jobActionFlags,
    'reset-attempts': Flags.boolean({summary: 'Also set attempts to 0 (revives exhausted jobs).'}),
  }

  async run(): Promise<JobActionCommandResult> {
    return this.runAction(
      {action: 'run_now', resetAttempts: this.flags['reset-attempts']},
      {verb: 'run now', did: (n) => `made ${n} due now`, prompt: (n) => `Make ${n} due now`},
      this.flags,
    )
  }
}
