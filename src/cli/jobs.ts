import {Args, Flags, type Command} from '@oclif/core'

import type {JobActionDocument} from '../lib/console/operations.js'
import {emptyJobActionResult as emptyResult} from '../lib/jobs/actions.js'
import {jobDocument} from '../lib/json-document.js'
import {EXIT_CODES} from '../lib/errors.js'
import {
  DEFAULT_JOB_ACTION_BATCH,
  MAX_JOB_ACTION_BATCH,
  performJobAction,
  requireJobActions,
  selectJobs,
  type JobActionProgress,
  type JobActionResult,
  type JobActionSpec,
  type JobSelection,
  type SkipReason,
} from '../lib/jobs/actions.js'
import type {JobEntry} from '../lib/jobs/entries.js'
import {buildJobSelector, isEmptyJobSelector, type JobSelector} from '../lib/jobs/selector.js'
import {JOB_STATES} from '../lib/jobs/states.js'
import {age} from './dlq.js'
import type {Column} from './output.js'
import {ProgressLine} from './progress.js'
import {
  CLI_SELECTOR_LABELS,
  commonSelectorFlags,
  commonSelectorInput,
  refuseEmptySelection,
  SelectorCommand,
  type CommonSelectorFlagValues,
} from './selection.js'

/** The job selector on the command line: the DLQ's grammar plus state, flag, priority and the time field. */
export const jobSelectorFlags = {
  ...commonSelectorFlags({
    one: 'job',
    many: 'jobs',
    time: 'were created (or are due, with --time-field run-at)',
    queue: "Only jobs of this serial queue (repeatable; '' selects parallel jobs, which have no queue).",
  }),
  state: Flags.string({
    multiple: true,
    options: [...JOB_STATES],
    helpGroup: 'SELECTION',
    summary: 'Only jobs in this state (repeatable): ready, scheduled, running, retrying, exhausted, blocked.',
  }),
  flag: Flags.string({
    multiple: true,
    helpGroup: 'SELECTION',
    summary: 'Only jobs carrying this graphile flag (repeatable: any of them).',
  }),
  priority: Flags.string({
    multiple: true,
    helpGroup: 'SELECTION',
    summary: 'Only jobs with this priority or in this range (repeatable): 5, fast, -10..-1, 0.., ..-1.',
  }),
  'time-field': Flags.string({
    options: ['created', 'run-at'],
    helpGroup: 'SELECTION',
    summary: 'What --since/--until/--older-than compare: created_at (default) or run_at.',
  }),
}

export const jobIdsArg = {
  ids: Args.string({description: 'Job ids (repeatable: 12 13 14).', required: false}),
}

export interface JobSelectorFlagValues extends CommonSelectorFlagValues {
  state?: string[]
  flag?: string[]
  priority?: string[]
  'time-field'?: string
}

/** Base of the jobs commands: positional job ids and the selector flags. */
export abstract class JobsCommand<T extends typeof Command> extends SelectorCommand<T> {
  protected async selector(flags: JobSelectorFlagValues): Promise<JobSelector> {
    return buildJobSelector(
      {
        ...commonSelectorInput(flags, await this.positionalArgs()),
        states: flags.state,
        flags: flags.flag,
        priorities: flags.priority,
        timeField: flags['time-field'],
      },
      {
        labels: {
          ...CLI_SELECTOR_LABELS,
          states: '--state',
          flags: '--flag',
          priorities: '--priority',
          timeField: '--time-field',
        },
        idHint: 'job ids are the first column of: backfill jobs list',
      },
    )
  }
}

// --- rendering -------------------------------------------------------------------------------

/** "in 5m", "3h ago". */
export function relative(date: Date | null, now = Date.now()): string {
  if (!date) return '–'
  return date.getTime() > now ? `in ${age(new Date(now - (date.getTime() - now)), now)}` : `${age(date, now)} ago`
}

/** The state, with the lock owner's liveness for running jobs ("running (dead)"). */
export function stateLabel(job: JobEntry): string {
  return job.state === 'running' && job.owner ? `running (${job.owner.liveness})` : job.state
}

export const JOB_COLUMNS: Column<JobEntry>[] = [
  {header: 'ID', get: (j) => j.id, align: 'right'},
  {header: 'TASK', get: (j) => j.taskIdentifier, max: 28},
  {header: 'QUEUE', get: (j) => j.queueName ?? '(parallel)', max: 20},
  {header: 'STATE', get: stateLabel},
  {header: 'PRI', get: (j) => String(j.priority), align: 'right'},
  {header: 'ATTEMPTS', get: (j) => `${j.attempts}/${j.maxAttempts}`, align: 'right'},
  {header: 'RUN AT', get: (j) => relative(j.runAt)},
  {header: 'AGE', get: (j) => age(j.createdAt), align: 'right'},
  {header: 'LAST ERROR', get: (j) => j.lastError ?? '', max: 40},
  {header: 'PAYLOAD', get: (j) => j.payloadText, max: 32},
]

// --- actions ---------------------------------------------------------------------------------

/** Flags of every jobs action: selection safety, confirmation, audit, batching. */
export const jobActionFlags = {
  all: Flags.boolean({summary: 'Allow an empty selection: every job.'}),
  limit: Flags.integer({summary: 'Act on at most N jobs (in id order).', min: 1}),
  'dry-run': Flags.boolean({summary: 'Show what would change (count, per task, a sample); change nothing.'}),
  yes: Flags.boolean({char: 'y', summary: 'Do not ask for confirmation.'}),
  reason: Flags.string({summary: 'Why, recorded in the audit trail (dlq history).'}),
  'batch-size': Flags.integer({
    summary: `Jobs per transaction (default ${DEFAULT_JOB_ACTION_BATCH}).`,
    min: 1,
    max: MAX_JOB_ACTION_BATCH,
  }),
}

export interface ActionWords {
  /** "remove", for "refusing to remove …" and "nothing to remove" */
  verb: string
  /** What was done to n jobs: "removed 12 jobs", "made 12 jobs due now". */
  did: (jobs: string) => string
  /** The prompt's question, without the schema: "Delete 12 jobs". */
  prompt: (jobs: string) => string
}

/** "1 job", "12 jobs". */
export function jobs(n: number): string {
  return `${n} job${n === 1 ? '' : 's'}`
}

/** The document is the library's, so the console's API answers with the very same shape. */
export type JobActionCommandResult = JobActionDocument

interface ActionFlags {
  all: boolean
  'dry-run': boolean
  yes: boolean
  reason?: string
  'batch-size'?: number
}

const SKIP_TEXT: Record<SkipReason, string> = {
  running: 'a worker took them meanwhile (running jobs are never changed)',
  changed: 'they changed after the selection was confirmed (a retry, a replace, another operator)',
  gone: 'they left the jobs table meanwhile (completed, removed or captured)',
  not_applicable: 'the action no longer applies to them (e.g. already due)',
  busy: 'another transaction kept holding them',
}

/** Why matching jobs are left out of a selection, by state, for the dry run and the prompt. */
function excludedText(selection: JobSelection, action: JobActionSpec['action']): string {
  const parts = Object.entries(selection.excluded).map(([state, n]) => {
    const why =
      state === 'running'
        ? 'running'
        : action === 'fail'
          ? `${state}: failed already`
          : action === 'run_now' && state === 'exhausted'
            ? `${state}: add --reset-attempts`
            : action === 'run_now'
              ? `${state}: due already`
              : action === 'reschedule' && state === 'exhausted'
                ? `${state}: add --reset-attempts or a higher --max-attempts`
                : state
    return `${n} ${why}`
  })
  return parts.length > 0 ? ` (left out: ${parts.join(', ')})` : ''
}

/** Base of jobs run-now/reschedule/remove/fail: select, dry-run or confirm, act in batches, report. */
export abstract class JobsActionCommand<T extends typeof Command> extends JobsCommand<T> {
  protected async runAction(
    spec: JobActionSpec,
    words: ActionWords,
    flags: JobSelectorFlagValues & ActionFlags,
  ): Promise<JobActionCommandResult> {
    const selector = await this.selector(flags)
    refuseEmptySelection({
      empty: isEmptyJobSelector(selector),
      all: flags.all,
      action: words.verb,
      how: 'jobs by id, --task, --queue, --job-key, --state, --since/--until/--older-than, --error, --flag or --priority',
      everything: 'every job',
    })
    const db = this.db()
    const inspection = await requireJobActions(db, spec)
    const selection = await selectJobs(db, {...spec, selector, inspection})
    const {out} = this
    const left = excludedText(selection, spec.action)
    if (selection.count === 0) {
      out.result(
        selection.matched === 0
          ? `nothing to ${words.verb}: no job matches the selection`
          : `nothing to ${words.verb} among the ${jobs(selection.matched)} matching${left}`,
      )
      return flags['dry-run'] ? {dryRun: true, selection} : {dryRun: false, selection, ...emptyResult(spec)}
    }
    if (flags['dry-run']) {
      out.result(`dry run: ${jobs(selection.count)} to ${words.verb}${left}`)
      this.renderSelection(selection)
      out.info('\nnothing was changed')
      // The sample's payloads exactly as stored in the --json document.
      return {dryRun: true, selection: {...selection, sample: selection.sample.map(jobJson) as unknown as JobEntry[]}}
    }
    await this.confirm({
      yes: flags.yes,
      message: `${words.prompt(jobs(selection.count))} (schema "${this.schema}")?${left}`,
      action: `${words.verb} ${jobs(selection.count)}`,
    })
    this.handlesInterrupt = true
    const progress = !this.flags.quiet && process.stderr.isTTY ? new ProgressLine(process.stderr, 'jobs') : undefined
    const onBatch = (p: JobActionProgress): void => {
      if (progress) progress.update({count: p.done, note: `of ${p.total}${p.skipped ? `, ${p.skipped} skipped` : ''}`})
      else out.info(`batch ${p.batch}: ${p.done}/${p.total} done${p.skipped ? `, ${p.skipped} left alone` : ''}`)
    }
    let result: JobActionResult
    try {
      result = await performJobAction(db, {
        selection,
        reason: flags.reason,
        batchSize: flags['batch-size'],
        signal: this.interrupt.signal,
        onBatch,
      })
    } finally {
      progress?.clear()
    }
    this.renderResult(result, words, left)
    if (result.interrupted) process.exitCode = EXIT_CODES.interrupted
    return {dryRun: false, selection, ...result}
  }

  private renderSelection(selection: JobSelection): void {
    const {out} = this
    out.result('')
    out.table(selection.byTask, [
      {header: 'TASK', get: (t) => t.taskIdentifier, max: 40},
      {header: 'JOBS', get: (t) => String(t.count), align: 'right'},
    ])
    out.result('')
    out.result(out.color.bold(`First ${selection.sample.length} (in id order):`))
    out.table(selection.sample, JOB_COLUMNS)
  }

  private renderResult(result: JobActionResult, words: ActionWords, left: string): void {
    const {out} = this
    const tasks = Object.entries(result.byTask)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 5)
      .map(([task, n]) => `${task} ${n}`)
      .join(', ')
    if (result.done > 0)
      out.result(
        `${words.did(jobs(result.done))} in ${result.batches} batch(es), ${(result.durationMs / 1000).toFixed(1)} s (${tasks})${left}; audit run ${result.run}`,
      )
    else if (!result.interrupted) out.result(`nothing to ${words.verb}${left}`)
    for (const [reason, count] of Object.entries(result.skipped) as [SkipReason, number][]) {
      if (count === 0) continue
      const example = result.skippedSample.find((s) => s.reason === reason)
      out.warn(`${jobs(count)} left alone: ${SKIP_TEXT[reason]}${example ? ` (e.g. job ${example.jobId})` : ''}`)
    }
    if (result.interrupted)
      out.warn(
        `interrupted after batch ${result.batches}: ${words.did(jobs(result.done))}; the rest are unchanged (run the command again to continue)`,
      )
  }
}

/** A job as --json prints it: the payload exactly as stored, once. */
export const jobJson = jobDocument
