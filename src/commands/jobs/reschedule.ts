import {Flags} from '@oclif/core'

import {
  jobActionFlags,
  jobIdsArg,
  JobsActionCommand,
  jobSelectorFlags,
  type JobActionCommandResult,
} from '../../cli/jobs.js'
import {duration, maxAttempts, priority, PRIORITY_SUMMARY, timestamp} from '../../cli/flags.js'

export default class JobsReschedule extends JobsActionCommand<typeof JobsReschedule> {
  static override summary = 'Move jobs to another time (--run-at, --delay), or change their priority or max attempts.'
  static override description = `Changes the selected jobs through graphile-worker's reschedule_jobs(): run_at (--run-at, or --delay from now), priority, max attempts, and with --reset-attempts attempts = 0. Running jobs are never touched; exhausted jobs are left out unless --reset-attempts or a --max-attempts above their attempts revives them. --delay is counted from the moment the selection is read (the database's clock), the same for every job. Acts on the selection it showed (see jobs remove); audited (dlq history). Requires a selection or --all; asks for confirmation unless --yes.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> --task send_email --state retrying --delay 1h --dry-run',
    '<%= config.bin %> <%= command.id %> --task send_email --state retrying --delay 1h --yes --reason "provider down"',
    '<%= config.bin %> <%= command.id %> 4242 --run-at 2030-01-01T09:00:00Z --priority fast --yes',
    '<%= config.bin %> <%= command.id %> --queue account:42 --max-attempts 20 --yes',
  ]

  static override strict = false
  static override args = jobIdsArg
  static override flags = {
    ...jobSelectorFlags,
    ...jobActionFlags,
    'run-at': timestamp({summary: 'New run_at (ISO 8601 with a time zone).', exclusive: ['delay']}),
    delay: duration({summary: 'New run_at: this long from now (e.g. 30m, 2h).', exclusive: ['run-at']}),
    'set-priority': priority({summary: `New priority: ${PRIORITY_SUMMARY}.`}),
    'max-attempts': maxAttempts({summary: 'New max attempts (1 to 32767).'}),
    'reset-attempts': Flags.boolean({summary: 'Also set attempts to 0.'}),
  }

  async run(): Promise<JobActionCommandResult> {
    const {flags} = this
    return this.runAction(
      {
        action: 'reschedule',
        runAt: flags['run-at'],
        delayMs: flags.delay,
        priority: flags['set-priority'],
        maxAttempts: flags['max-attempts'],
        resetAttempts: flags['reset-attempts'],
      },
      {verb: 'reschedule', did: (n) => `rescheduled ${n}`, prompt: (n) => `Reschedule ${n}`},
      flags,
    )
  }
}
