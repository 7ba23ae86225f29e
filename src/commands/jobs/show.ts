import {Args, Flags} from '@oclif/core'

import {age, shortTime} from '../../cli/dlq.js'
import {jobJson, JobsCommand, relative, stateLabel} from '../../cli/jobs.js'
import {prettyPayload} from '../../cli/json.js'
import type {Column} from '../../cli/output.js'
import {safeField, terminalSafe} from '../../cli/terminal-safe.js'
import type {DlqEvent} from '../../lib/dlq/entries.js'
import {UsageError} from '../../lib/errors.js'
import {parseJobId} from '../../lib/jobs/selector.js'
import {showJob, type ShowJobResult} from '../../lib/jobs/show.js'

export default class JobsShow extends JobsCommand<typeof JobsShow> {
  static override summary =
    'Show everything about one job: state and why, payload, full error, lock owner, queue position.'
  static override description = `Prints the job's state and the reason for it (when it runs next, what blocks it, who runs it and whether that worker is alive), its attempts, the full last error, the payload as pretty JSON (numbers exactly as stored), its place in its serial queue, and its DLQ history: the DLQ entries of the same job key and, for a job retried out of the DLQ, the story of its case. Exit 4 when the job is not in the jobs table (completed, removed, or moved to the DLQ).`

  static override examples = [
    '<%= config.bin %> <%= command.id %> 4242',
    '<%= config.bin %> <%= command.id %> --job-key invoice:42',
    '<%= config.bin %> <%= command.id %> 4242 --json',
  ]

  static override args = {
    id: Args.string({description: 'Job id (first column of jobs list).', required: false}),
  }

  static override flags = {
    'job-key': Flags.string({summary: 'Show the job with this job key instead of an id.'}),
  }

  async run(): Promise<ShowJobResult> {
    const {id} = this.args
    const jobKey = this.flags['job-key']
    if ((id === undefined) === (jobKey === undefined))
      throw new UsageError('give a job id or --job-key (one of them)', {
        code: 'E_USAGE',
        suggestions: ['backfill jobs show 4242, or backfill jobs show --job-key invoice:42'],
      })
    const result = await showJob(this.db(), {
      id: id === undefined ? undefined : parseJobId(id, 'job ids are the first column of: backfill jobs list'),
      jobKey,
    })
    this.render(result)
    return {...result, job: jobJson(result.job)} as unknown as ShowJobResult
  }

  private render(result: ShowJobResult): void {
    const {out} = this
    const {job, queue, dlq} = result
    const c = out.color
    const line = (label: string, value: string | number | null | undefined): void => {
      out.result(`${c.bold(`${label}:`.padEnd(14))}${safeField(value) || '–'}`)
    }
    line('Job', job.id)
    line('Task', job.taskIdentifier)
    line('Queue', job.queueName ?? '(parallel)')
    line('State', stateLabel(job))
    line('Why', result.why)
    line('Priority', job.priority)
    line('Attempts', `${job.attempts}/${job.maxAttempts}`)
    line('Run at', `${shortTime(job.runAt)} (${relative(job.runAt)})`)
    line('Created', `${shortTime(job.createdAt)} (${age(job.createdAt)} ago)`)
    line('Updated', shortTime(job.updatedAt))
    line('Job key', job.key)
    line('Flags', job.flags.join(', '))
    line('Revision', job.revision)
    if (job.lockedAt)
      line(
        'Locked by',
        `${job.lockedBy ?? '(no owner id)'} since ${shortTime(job.lockedAt)} (${age(job.lockedAt)})${result.owner ? `: ${result.owner.liveness}, ${result.owner.reason}` : ''}`,
      )
    if (queue) {
      const holder = queue.runningJobId
        ? `held by job ${queue.runningJobId} (${queue.lockedBy ?? 'no owner id'})`
        : queue.lockedBy
          ? `locked by ${queue.lockedBy} with no running job`
          : 'not locked'
      const position = job.state === 'running' ? 'running' : `${queue.ahead} job(s) ahead`
      line('Serial queue', `${queue.name}: ${position}, ${queue.waiting} waiting, ${holder}`)
    }
    out.result('')
    out.result(c.bold('Last error:'))
    out.result(job.lastError === null ? '–' : terminalSafe(job.lastError, {multiline: true}))
    out.result('')
    out.result(c.bold('Payload:'))
    out.result(terminalSafe(prettyPayload(result.payloadText), {multiline: true}))
    out.result('')
    if (!dlq) {
      out.result(`${c.bold('DLQ history:')} – (no DLQ in this schema)`)
      return
    }
    if (dlq.retriedFrom)
      out.result(
        `${c.bold('DLQ history:')} retried from DLQ entry ${dlq.retriedFrom.dlqId ?? '?'} (case ${dlq.retriedFrom.caseId}) ${shortTime(dlq.retriedFrom.retriedAt)}; retried ${dlq.retriedFrom.requeuedCount} time(s), failed ${dlq.retriedFrom.failureCount} time(s) before`,
      )
    for (const e of dlq.entries)
      out.result(
        `${c.bold('In the DLQ:')} entry ${e.id} with the same job key, failed ${shortTime(e.failedAt)} (${e.failureCount} time(s)): ${terminalSafe(e.errorText.split('\n')[0] ?? '')}`,
      )
    if (!dlq.retriedFrom && dlq.entries.length === 0) out.result(`${c.bold('DLQ history:')} none`)
    if (dlq.events.length > 0) {
      const columns: Column<DlqEvent>[] = [
        {header: 'AT', get: (h) => shortTime(h.at)},
        {header: 'EVENT', get: (h) => h.event},
        {header: 'ENTRY', get: (h) => h.dlqId ?? '', align: 'right'},
        {header: 'JOB', get: (h) => h.jobId ?? '', align: 'right'},
        {header: 'REASON', get: (h) => h.reason ?? '', max: 50},
      ]
      out.table(dlq.events, columns)
    }
  }
}
