/**
 * What a job is before it reaches graphile-worker's add_job/add_jobs, and every check on it.
 * Everything is validated here, in JavaScript, so bad input never reaches the database:
 * a failed check is a UsageError (exit 2) and nothing is written.
 */
import {parse as parseLossless, stringify as stringifyLossless} from 'lossless-json'
import {UsageError} from '../errors.js'
export {parseDuration} from '../duration.js'
import {DEFAULT_MAX_ATTEMPTS, flagsForPriority, Priority} from '../jobs/priority.js'

/** graphile-worker's job_key modes (add_job's job_key_mode argument). */
export const JOB_KEY_MODES = ['replace', 'preserve_run_at', 'unsafe_dedupe'] as const
export type JobKeyMode = (typeof JOB_KEY_MODES)[number]

/** graphile-worker's column checks: _private_tasks.identifier, _private_job_queues.queue_name, _private_jobs.key. */
export const MAX_TASK_LENGTH = 128
export const MAX_QUEUE_LENGTH = 128
export const MAX_JOB_KEY_LENGTH = 512
/** priority, attempts and max_attempts are smallint columns. */
export const SMALLINT_MIN = -32768
export const SMALLINT_MAX = 32767

/** Priority names accepted by the CLI and in NDJSON lines (the crate's constants). */
export const PRIORITY_NAMES: Readonly<Record<string, number>> = {
  emergency: Priority.EMERGENCY,
  critical: Priority.FAST_HIGH,
  fast: Priority.FAST_DEFAULT,
  bulk: Priority.BULK_DEFAULT,
  'bulk-low': Priority.BULK_LOW,
  'bulk-lowest': Priority.BULK_LOWEST,
}

/** How a job runs; every field is optional (the crate's JobSpec). */
export interface JobSpec {
  /** Lower runs first (default 0, Priority.BULK_DEFAULT). Any smallint. */
  priority?: number
  /**
   * undefined/null: parallel (no graphile queue, jobs run concurrently). A name: a serial
   * graphile queue, one job at a time per name across every worker (see serialFor()).
   */
  queue?: string | null
  /** Not before this time (default: the database's now()). */
  runAt?: Date | null
  /** Unique across all tasks; an existing unlocked job with this key is replaced (see jobKeyMode). */
  jobKey?: string | null
  jobKeyMode?: JobKeyMode
  /** 1..32767, default 8 as the crate (graphile's own default is 25). */
  maxAttempts?: number
  /** Extra graphile flags; backfill adds BULK_FLAG for priority >= 0. */
  flags?: readonly string[]
}

/** One job for enqueueMany / a parsed NDJSON line. */
export interface JobInput extends JobSpec {
  task: string
  /** Any JSON value; undefined means {} (as graphile). */
  payload?: unknown
}

/** A validated job, ready for add_job/add_jobs. */
export interface PreparedJob {
  task: string
  /** JSON text. */
  payload: string
  queue: string | null
  runAt: Date | null
  maxAttempts: number
  jobKey: string | null
  jobKeyMode: JobKeyMode
  priority: number
  /** flagsForPriority(priority, flags): includes BULK_FLAG for bulk priorities. */
  flags: string[] | null
}

/** Length in characters as PostgreSQL's length() counts them (code points, not UTF-16 units). */
function charLength(text: string): number {
  let n = 0
  for (const _ of text) n += 1
  return n
}

function invalid(message: string, suggestions: string[] = [], code = 'E_INVALID_JOB'): UsageError {
  return new UsageError(message, {code, suggestions})
}

// Characters PostgreSQL text cannot hold (U+0000) or that are not Unicode at all (a lone
// UTF-16 surrogate, which JSON can spell as \ud800): add_jobs would fail with 22P05/22P02.
const UNSTORABLE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/

/** Refuses a string PostgreSQL cannot store as text, naming the field. */
function storable(text: string, label: string): string {
  const match = UNSTORABLE.exec(text)
  if (match) {
    const what = match[0] === '\u0000' ? 'the character U+0000' : 'a lone UTF-16 surrogate (not a Unicode character)'
    throw invalid(`${label} contains ${what}, which PostgreSQL text cannot store`, ['remove it'])
  }
  return text
}

export function validateTask(task: unknown, label = 'task'): string {
  if (typeof task !== 'string') throw invalid(`${label} must be a string, got ${describe(task)}`)
  storable(task, label)
  if (task.trim() === '')
    throw invalid(`${label} is empty`, ['give the task identifier your workers register, e.g. send_email'])
  // UTF-16 length bounds the character count from above: only long strings need counting.
  const length = task.length <= MAX_TASK_LENGTH ? task.length : charLength(task)
  if (length > MAX_TASK_LENGTH)
    throw invalid(`${label} is ${length} characters long; graphile-worker allows at most ${MAX_TASK_LENGTH}`)
  return task
}

export function validateQueue(queue: unknown, label = 'queue'): string | null {
  if (queue === undefined || queue === null) return null
  if (typeof queue !== 'string') throw invalid(`${label} must be a string, got ${describe(queue)}`)
  storable(queue, label)
  // '' is how the crate's DLQ spells "parallel"; as a graphile queue it would serialise jobs.
  if (queue === '')
    throw invalid(`${label} is empty`, ['leave it out for parallel jobs; give a name for a serial queue, e.g. user:42'])
  // UTF-16 length bounds the character count from above: only long strings need counting.
  const length = queue.length <= MAX_QUEUE_LENGTH ? queue.length : charLength(queue)
  if (length > MAX_QUEUE_LENGTH)
    throw invalid(`${label} is ${length} characters long; graphile-worker allows at most ${MAX_QUEUE_LENGTH}`)
  return queue
}

export function validateJobKey(key: unknown, label = 'job key'): string | null {
  if (key === undefined || key === null) return null
  if (typeof key !== 'string') throw invalid(`${label} must be a string, got ${describe(key)}`)
  storable(key, label)
  if (key === '')
    throw invalid(`${label} is empty`, ['leave it out, or give a key unique across all tasks, e.g. send_email:user-42'])
  // UTF-16 length bounds the character count from above: only long strings need counting.
  const length = key.length <= MAX_JOB_KEY_LENGTH ? key.length : charLength(key)
  if (length > MAX_JOB_KEY_LENGTH)
    throw invalid(`${label} is ${length} characters long; graphile-worker allows at most ${MAX_JOB_KEY_LENGTH}`)
  return key
}

export function validateJobKeyMode(mode: unknown, label = 'job key mode'): JobKeyMode {
  if (mode === undefined || mode === null) return 'replace'
  if (typeof mode === 'string' && (JOB_KEY_MODES as readonly string[]).includes(mode)) return mode as JobKeyMode
  throw invalid(`${label} ${describe(mode)} is not one of ${JOB_KEY_MODES.join(', ')}`)
}

const PRIORITY_HELP = `use a name (${Object.keys(PRIORITY_NAMES).join(', ')}) or an integer from ${SMALLINT_MIN} to ${SMALLINT_MAX} (lower runs first)`

/** A priority name or an integer in smallint range (numbers, or strings of digits). */
export function parsePriority(value: unknown, label = 'priority'): number {
  if (value === undefined || value === null) return Priority.BULK_DEFAULT
  let number: number
  if (typeof value === 'number') number = value
  else if (typeof value === 'string') {
    const name = value.trim().toLowerCase()
    const named = PRIORITY_NAMES[name]
    if (named !== undefined) return named
    if (!/^[+-]?\d+$/.test(name))
      throw invalid(`${label} ${JSON.stringify(value)} is not a priority name or an integer`, [PRIORITY_HELP])
    number = Number(name)
  } else throw invalid(`${label} must be a name or an integer, got ${describe(value)}`, [PRIORITY_HELP])
  if (!Number.isInteger(number)) throw invalid(`${label} ${value} is not an integer`, [PRIORITY_HELP])
  if (number < SMALLINT_MIN || number > SMALLINT_MAX)
    throw invalid(`${label} ${value} is outside ${SMALLINT_MIN}..${SMALLINT_MAX} (PostgreSQL smallint)`, [
      PRIORITY_HELP,
    ])
  return number
}

export function parseMaxAttempts(value: unknown, label = 'max attempts'): number {
  if (value === undefined || value === null) return DEFAULT_MAX_ATTEMPTS
  const number = typeof value === 'string' && /^\s*[+-]?\d+\s*$/.test(value) ? Number(value) : value
  const help = [`use an integer from 1 to ${SMALLINT_MAX} (default ${DEFAULT_MAX_ATTEMPTS}; 1 = no retry)`]
  if (typeof number !== 'number' || !Number.isInteger(number))
    throw invalid(`${label} ${describe(value)} is not an integer`, help)
  if (number < 1 || number > SMALLINT_MAX) throw invalid(`${label} ${number} is outside 1..${SMALLINT_MAX}`, help)
  return number
}

export function validateFlags(flags: unknown, label = 'flags'): string[] {
  if (flags === undefined || flags === null) return []
  if (!Array.isArray(flags)) throw invalid(`${label} must be an array of strings, got ${describe(flags)}`)
  for (const flag of flags) {
    if (typeof flag !== 'string' || flag === '')
      throw invalid(`${label} must be non-empty strings, got ${describe(flag)}`)
    storable(flag, label)
  }
  return flags as string[]
}

// Date-time with an explicit offset: a bare local time would mean different instants on
// the operator's laptop and on the server.
const ISO_DATE_TIME =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?([Zz]|[+-]\d{2}(?::?\d{2})?)$/
const RUN_AT_HELP = 'use an ISO 8601 date-time with a time zone, e.g. 2030-01-31T09:00:00Z or 2030-01-31T10:00:00+01:00'

export function parseRunAt(value: unknown, label = 'run at'): Date | null {
  if (value === undefined || value === null) return null
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) throw invalid(`${label} is an invalid Date`, [RUN_AT_HELP])
    return value
  }
  if (typeof value !== 'string')
    throw invalid(`${label} must be an ISO 8601 string, got ${describe(value)}`, [RUN_AT_HELP])
  const match = ISO_DATE_TIME.exec(value.trim())
  if (!match)
    throw invalid(`${label} ${JSON.stringify(value)} is not an ISO 8601 date-time with a time zone`, [RUN_AT_HELP])
  const [, y, mo, d, h, mi, s] = match.map(Number) as number[]
  const daysInMonth = new Date(Date.UTC(y!, mo!, 0)).getUTCDate()
  if (mo! < 1 || mo! > 12 || d! < 1 || d! > daysInMonth || h! > 23 || mi! > 59 || (s ?? 0) > 59) {
    throw invalid(`${label} ${JSON.stringify(value)} is not a valid date-time`, [RUN_AT_HELP])
  }
  const offset = match[8]!
  const normalized = value
    .trim()
    .replace(/^(.{10})[t ]/i, '$1T')
    .replace(',', '.')
  const withOffset = /^[+-]\d{4}$/.test(offset)
    ? normalized.replace(/([+-]\d{2})(\d{2})$/, '$1:$2')
    : /^[+-]\d{2}$/.test(offset)
      ? `${normalized}:00`
      : normalized
  const date = new Date(withOffset)
  if (Number.isNaN(date.getTime()))
    throw invalid(`${label} ${JSON.stringify(value)} is not a valid date-time`, [RUN_AT_HELP])
  return date
}

// PostgreSQL's jsonb (the DLQ's payload column) rejects \u0000; a job carrying it could never be dead-lettered.
const NUL_ESCAPE = /(?:^|[^\\])(?:\\\\)*\\u0000/

/** Serialises a payload to JSON text; undefined and null mean {} as in graphile-worker's addJob. */
export function payloadText(payload: unknown, label = 'payload'): string {
  if (payload === undefined || payload === null) return '{}'
  let text: string | undefined
  try {
    text = JSON.stringify(payload)
  } catch (error) {
    throw invalid(`${label} cannot be serialised as JSON: ${(error as Error).message}`)
  }
  if (text === undefined) throw invalid(`${label} cannot be serialised as JSON (${typeof payload})`)
  return checkPayloadText(text, label)
}

function checkPayloadText(text: string, label: string): string {
  if (text.includes('\\u0000') && NUL_ESCAPE.test(text))
    throw invalid(
      `${label} contains the character U+0000, which PostgreSQL jsonb cannot store (the DLQ keeps payloads as jsonb)`,
      ['remove or escape the NUL character'],
    )
  if (/\\u[dD][89a-fA-F]/.test(text) && LONE_SURROGATE_ESCAPE.test(text))
    throw invalid(`${label} contains a lone UTF-16 surrogate (\\ud800-\\udfff), which PostgreSQL json rejects`, [
      'a character outside the Basic Multilingual Plane is a high surrogate followed by a low one, e.g. \\ud83d\\ude00',
    ])
  return text
}

// An escaped high surrogate not followed by an escaped low one, or a low one not preceded by a
// high one (each escape not itself escaped: an even run of backslashes before it).
const LONE_SURROGATE_ESCAPE =
  /(?:^|[^\\])(?:\\\\)*(?:\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2})/

/**
 * Number lexemes that JSON.parse + JSON.stringify may not give back as written: an exponent,
 * 16 or more digits, a fraction ending in 0 or starting with six zeros, -0. Numbers without
 * these (at most 15 significant digits, canonical form) survive a double exactly. A match
 * inside a string only costs the slower exact path.
 */
const INEXACT_NUMBER = /\d[eE][+-]?\d|(?:\d\.?){16}|\.\d*0(?![\d.])|\.0{6}|-0(?![\d.])/

/**
 * The JSON text of a payload parsed from `source` (JSON.parse already accepted it), with every
 * number exactly as the user wrote it: 9007199254740993 stays so, 1e999 does not become null.
 * `pick` finds the payload in the parsed document (an NDJSON line's "payload" field).
 */
export function exactPayloadText(
  source: string,
  parsed: unknown,
  label: string,
  pick: (document: unknown) => unknown = (d) => d,
): string {
  const value = pick(parsed)
  if (value === undefined || value === null || !INEXACT_NUMBER.test(source)) return payloadText(value, label)
  let exact: unknown
  try {
    exact = pick(parseLossless(source))
  } catch (error) {
    // lossless-json refuses duplicate keys with different values, which JSON.parse lets pass.
    throw invalid(`${label} is ambiguous: ${(error as Error).message}`, ['give each key once'], 'E_INVALID_PAYLOAD')
  }
  return checkPayloadText(stringifyLossless(exact) ?? '{}', label)
}

/** Parses a payload given as JSON text (the CLI's --payload, a payload file). */
export function parsePayloadJson(text: string, label = 'payload'): string {
  if (text.trim() === '')
    throw invalid(
      `${label} is empty`,
      ['give a JSON value, e.g. \'{"to":"ada@example.com"}\' (default {})'],
      'E_INVALID_PAYLOAD',
    )
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    throw new UsageError(`${label} is not valid JSON: ${(error as Error).message}`, {
      code: 'E_INVALID_PAYLOAD',
      suggestions: ['quote the JSON for the shell, e.g. --payload \'{"to":"ada@example.com"}\''],
    })
  }
  return exactPayloadText(text, value, label)
}

/** Validates a job and resolves its defaults and flags (BULK_FLAG for priority >= 0). */
export function prepareJob(task: unknown, payload: unknown, spec: JobSpec = {}): PreparedJob {
  return prepareJobText(task, payloadText(payload), spec)
}

/** As prepareJob, with the payload already serialised (and checked) by payloadText/parsePayloadJson. */
export function prepareJobText(task: unknown, payloadJson: string, spec: JobSpec = {}): PreparedJob {
  const validTask = validateTask(task)
  const priority = parsePriority(spec.priority)
  const jobKey = validateJobKey(spec.jobKey)
  return {
    task: validTask,
    payload: payloadJson,
    queue: validateQueue(spec.queue),
    runAt: parseRunAt(spec.runAt),
    maxAttempts: parseMaxAttempts(spec.maxAttempts),
    jobKey,
    jobKeyMode: validateJobKeyMode(spec.jobKeyMode),
    priority,
    flags: flagsForPriority(priority, validateFlags(spec.flags)),
  }
}

export function describe(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value)
  if (typeof value === 'object') return 'an object'
  return `${typeof value} ${String(value)}`
}
