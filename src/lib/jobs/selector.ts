import {parsePriority, SMALLINT_MAX, SMALLINT_MIN} from '../client/spec.js'
import {UsageError} from '../errors.js'
import {
  buildCommonSelector,
  describeCommonSelector,
  finishDescription,
  isEmptyCommonSelector,
  listParam,
  parseId,
  type BuildOptions,
  type CommonSelector,
  type CommonSelectorInput,
  type SelectorLabels,
} from '../selector.js'
import {isJobState, JOB_STATES, type JobState} from './states.js'

/** An inclusive priority range (lower runs first). */
export interface PriorityRange {
  min: number
  max: number
}

/** What --since/--until/--older-than compare: when the job was created, or when it is due. */
export type JobTimeField = 'created' | 'run_at'

/**
 * Which jobs of the live queue a command acts on: the selector grammar shared with the DLQ
 * (src/lib/selector.ts) plus the jobs' own fields. Every field narrows (AND); values within a
 * field are alternatives (OR).
 */
export interface JobSelector extends CommonSelector {
  /** Job ids (_private_jobs.id). */
  ids?: readonly string[]
  /** Serial queue names; '' selects parallel jobs (no queue). */
  queues?: readonly string[]
  /** Case-insensitive substring of last_error. */
  error?: string
  states?: readonly JobState[]
  /** Jobs carrying any of these flags. */
  flags?: readonly string[]
  /** Jobs whose priority is in any of these ranges. */
  priorities?: readonly PriorityRange[]
  /** What since/until compare (default 'created'). */
  timeField?: JobTimeField
  /** At most this many jobs (list: the page size; actions: the first N in id order). */
  limit?: number
}

export interface JobSelectorInput extends CommonSelectorInput {
  states?: readonly string[]
  flags?: readonly string[]
  /** "5", "fast", "-10..-1", "0..", "..5" (names as enqueue --priority). */
  priorities?: readonly string[]
  timeField?: string
}

export interface JobSelectorLabels extends SelectorLabels {
  states: string
  flags: string
  priorities: string
  timeField: string
}

const RANGE = /^\s*([^.]*?)\s*\.\.\s*([^.]*?)\s*$/

/** "5" or a name: that priority; "A..B", "A..", "..B": inclusive ranges. */
export function parsePriorityRange(text: string, label = 'priority'): PriorityRange {
  const range = RANGE.exec(text)
  if (!range) {
    const value = parsePriority(text, label)
    return {min: value, max: value}
  }
  const [, low = '', high = ''] = range
  if (low === '' && high === '')
    throw new UsageError(`invalid ${label} "${text}": a range needs at least one end (e.g. 0.. or ..-1)`, {
      code: 'E_BAD_PRIORITY',
    })
  const min = low === '' ? SMALLINT_MIN : parsePriority(low, label)
  const max = high === '' ? SMALLINT_MAX : parsePriority(high, label)
  if (min > max)
    throw new UsageError(`invalid ${label} "${text}": ${min} is above ${max}`, {
      code: 'E_BAD_PRIORITY',
      suggestions: [`lower runs first; write the lower number first: ${max}..${min}`],
    })
  return {min, max}
}

/** A positive bigint job id as a decimal string. */
export function parseJobId(text: string, hint?: string): string {
  return parseId(text, 'job id', hint)
}

/** Validates raw values into a job selector; UsageError (exit 2) naming the input by the caller's labels. */
export function buildJobSelector(input: JobSelectorInput, options: BuildOptions<JobSelectorLabels> = {}): JobSelector {
  const labels = {states: 'state', flags: 'flag', priorities: 'priority', timeField: 'time field', ...options.labels}
  const timeVerb = input.timeField === 'run_at' || input.timeField === 'run-at' ? 'are due' : 'were created'
  const selector: JobSelector = buildCommonSelector(input, {idNoun: 'job id', timeVerb, ...options})
  if (input.states?.length) {
    const states = new Set<JobState>()
    for (const raw of input.states) {
      const state = raw.trim().toLowerCase()
      if (!isJobState(state))
        throw new UsageError(`invalid ${labels.states} "${raw}": expected one of ${JOB_STATES.join(', ')}`, {
          code: 'E_BAD_STATE',
        })
      states.add(state)
    }
    selector.states = [...states]
  }
  if (input.flags?.length) {
    if (input.flags.some((flag) => flag.trim() === ''))
      throw new UsageError(`${labels.flags} needs a flag name`, {code: 'E_USAGE'})
    selector.flags = [...new Set(input.flags)]
  }
  if (input.priorities?.length)
    selector.priorities = input.priorities.map((p) => parsePriorityRange(p, labels.priorities))
  if (input.timeField !== undefined) {
    const field = input.timeField.trim().toLowerCase().replace('-', '_')
    if (field !== 'created' && field !== 'run_at')
      throw new UsageError(`invalid ${labels.timeField} "${input.timeField}": expected created or run-at`, {
        code: 'E_USAGE',
      })
    selector.timeField = field
  }
  return selector
}

/** True when nothing narrows the selection (a destructive command then needs --all). */
export function isEmptyJobSelector(selector: JobSelector): boolean {
  return (
    isEmptyCommonSelector(selector) &&
    (selector.states?.length ?? 0) === 0 &&
    (selector.flags?.length ?? 0) === 0 &&
    (selector.priorities?.length ?? 0) === 0
  )
}

/** The selection as recorded in the audit trail and shown in --json. */
export function describeJobSelector(selector: JobSelector): Record<string, unknown> {
  const out = describeCommonSelector(selector)
  if ((selector.since || selector.until) && selector.timeField === 'run_at') out.timeField = 'run_at'
  if (selector.states?.length) out.states = selector.states
  if (selector.flags?.length) out.flags = selector.flags
  if (selector.priorities?.length)
    out.priorities = selector.priorities.map((r) =>
      r.min === r.max
        ? String(r.min)
        : `${r.min === SMALLINT_MIN ? '' : r.min}..${r.max === SMALLINT_MAX ? '' : r.max}`,
    )
  return finishDescription(out, selector.limit)
}

/** Positional parameters $1..$12 of every statement that takes a job selector (sql/jobs-select.ts). */
export type JobSelectorParams = [
  ids: string[] | null,
  tasks: string[] | null,
  queues: string[] | null,
  jobKeys: string[] | null,
  since: Date | null,
  until: Date | null,
  byRunAt: boolean,
  error: string | null,
  states: string[] | null,
  flags: string[] | null,
  priorityMins: number[] | null,
  priorityMaxes: number[] | null,
]

export function jobSelectorParams(selector: JobSelector): JobSelectorParams {
  const ranges = selector.priorities?.length ? selector.priorities : null
  return [
    listParam(selector.ids),
    listParam(selector.tasks),
    listParam(selector.queues),
    listParam(selector.jobKeys),
    selector.since ?? null,
    selector.until ?? null,
    selector.timeField === 'run_at',
    selector.error === undefined || selector.error === '' ? null : selector.error,
    listParam(selector.states),
    listParam(selector.flags),
    ranges ? ranges.map((r) => r.min) : null,
    ranges ? ranges.map((r) => r.max) : null,
  ]
}
