import {Flags} from '@oclif/core'

import {JOB_COLUMNS, jobIdsArg, jobJson, JobsCommand, jobSelectorFlags} from '../../cli/jobs.js'
import {schemaFlag} from '../../cli/dlq.js'
import {
  DEFAULT_JOB_PAGE_SIZE,
  JOB_SORTS,
  listJobs,
  MAX_JOB_PAGE_SIZE,
  type ListJobsResult,
} from '../../lib/jobs/list.js'

export default class JobsList extends JobsCommand<typeof JobsList> {
  static override summary = 'List jobs in the queue with their state, newest or next-to-run first.'
  static override description = `Shows one page of the live queue (graphile-worker's jobs table) as a table, or full rows with --json. States: ready (due now), scheduled (future run_at, never attempted), running (locked by a worker, with the owner's liveness: live, dead or unknown), retrying (failed, waiting for its next attempt), exhausted (no attempts left, waiting for dlq capture), blocked (due, but its serial queue is held by another job). --sort next lists the waiting jobs in the order workers take them (priority, then run_at). Pages are keyset pages: pass the printed --cursor (with the same selection and sort) for the next one; every page costs what the first does.`

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --task send_email --state retrying --state exhausted',
    '<%= config.bin %> <%= command.id %> --sort next --queue account:42',
    '<%= config.bin %> <%= command.id %> --error timeout --since 1h --json',
  ]

  static override strict = false
  static override args = jobIdsArg
  static override flags = {
    ...jobSelectorFlags,
    sort: Flags.string({
      options: [...JOB_SORTS],
      default: 'newest',
      summary: 'newest: newest first, every state; next: waiting jobs in the order workers take them.',
    }),
    limit: Flags.integer({
      summary: `Jobs per page (default ${DEFAULT_JOB_PAGE_SIZE}, at most ${MAX_JOB_PAGE_SIZE}).`,
      min: 1,
      max: MAX_JOB_PAGE_SIZE,
    }),
    cursor: Flags.string({summary: 'Continue after the previous page (its nextCursor).'}),
  }

  async run(): Promise<ListJobsResult> {
    const selector = await this.selector(this.flags)
    const sort = this.flags.sort as (typeof JOB_SORTS)[number]
    const result = await listJobs(this.db(), {selector, sort, cursor: this.flags.cursor})
    this.out.table(result.jobs, JOB_COLUMNS, this.flags.cursor ? 'no more jobs' : 'no job matches the selection')
    if (result.nextCursor)
      this.out.info(
        `more: backfill jobs list${schemaFlag(this.schema)}${sort === 'next' ? ' --sort next' : ''} --cursor ${result.nextCursor} (with the same selectors)`,
      )
    return {...result, jobs: result.jobs.map(jobJson)} as unknown as ListJobsResult
  }
}
