/**
 * Bulk enqueue from NDJSON (one job per line), streamed: the input is read chunk by chunk and
 * written in add_jobs batches inside ONE transaction, so memory does not grow with the input and
 * the whole input is enqueued or none of it (a pipe cannot be read twice, so validation cannot
 * be a separate first pass).
 */
import {isUtf8} from 'node:buffer'
import {StringDecoder} from 'node:string_decoder'

import type {Database} from '../db.js'
import {InterruptedError, UsageError} from '../errors.js'
import {flagsForPriority} from '../jobs/priority.js'
import {JobBatchWriter, MAX_LISTED, type BatchTotals} from './batch.js'
import {
  type JobKeyMode,
  type PreparedJob,
  describe,
  parseMaxAttempts,
  parsePriority,
  parseRunAt,
  exactPayloadText,
  validateFlags,
  validateJobKey,
  validateJobKeyMode,
  validateQueue,
  validateTask,
} from './spec.js'

/** Values for fields a line leaves out (the CLI's flags). Already validated. */
export interface NdjsonDefaults {
  task?: string
  priority?: number
  queue?: string | null
  runAt?: Date | null
  jobKeyMode?: JobKeyMode
  maxAttempts?: number
  flags?: readonly string[]
}

export interface NdjsonProgress {
  /** Lines read so far (blank lines included). */
  lines: number
  bytes: number
  /** Valid job lines so far. */
  jobs: number
  /** Rows written so far (batches the database finished). */
  enqueued: number
  skipped: number
}

export interface SkippedLine {
  line: number
  reason: string
}

export interface NdjsonOptions {
  defaults?: NdjsonDefaults
  /** Enqueue the valid lines and report the others, instead of enqueuing nothing. */
  skipInvalid?: boolean
  /** Validate every line; write nothing (the database is not touched). */
  dryRun?: boolean
  batchSize?: number
  signal?: AbortSignal
  onProgress?: (progress: NdjsonProgress) => void
  /** Called for each skipped line (with skipInvalid or dryRun), as it is found. */
  onSkip?: (skipped: SkippedLine) => void
}

export interface NdjsonResult {
  dryRun: boolean
  lines: number
  /** Valid job lines. */
  jobs: number
  /** Rows graphile-worker wrote (0 on a dry run). */
  enqueued: number
  skipped: number
  /** The skipped lines (the first MAX_LISTED; `skipped` is the exact count). */
  skippedLines: SkippedLine[]
  /** Keyed jobs not written because a worker held the existing job with that key. */
  alreadyInProgress: number
  alreadyInProgressKeys: string[]
  seconds: number
  jobsPerSecond: number
}

/** A single line may not exceed this (it is held in memory whole). */
export const MAX_LINE_BYTES = 16 * 1024 * 1024

const FIELDS = new Set([
  'task',
  'payload',
  'priority',
  'queue',
  'runAt',
  'jobKey',
  'jobKeyMode',
  'maxAttempts',
  'flags',
])
const ALIASES: Record<string, string> = {
  identifier: 'task',
  task_identifier: 'task',
  queue_name: 'queue',
  run_at: 'runAt',
  job_key: 'jobKey',
  key: 'jobKey',
  job_key_mode: 'jobKeyMode',
  max_attempts: 'maxAttempts',
}

/** Parses and validates one NDJSON line; throws UsageError with the reason (no line number). */
export function parseNdjsonLine(text: string, defaults: NdjsonDefaults = {}): PreparedJob {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    throw new UsageError(`invalid JSON (${(error as Error).message})`, {code: 'E_INVALID_NDJSON'})
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new UsageError(`expected a JSON object, got ${describe(value)}`, {code: 'E_INVALID_NDJSON'})
  }
  const line = value as Record<string, unknown>
  for (const key of Object.keys(line)) {
    if (!FIELDS.has(key)) {
      const alias = Object.hasOwn(ALIASES, key) ? ALIASES[key] : undefined
      throw new UsageError(`unknown field "${key}"${alias ? ` (did you mean "${alias}"?)` : ''}`, {
        code: 'E_INVALID_NDJSON',
      })
    }
  }
  const has = (key: string): boolean => line[key] !== undefined
  if (!has('task') && defaults.task === undefined) throw new UsageError('missing "task"', {code: 'E_INVALID_NDJSON'})
  const task = has('task') ? validateTask(line.task) : defaults.task!
  const priority = has('priority') ? parsePriority(line.priority) : (defaults.priority ?? 0)
  const flags = has('flags') ? validateFlags(line.flags) : (defaults.flags ?? [])
  return {
    task,
    payload: exactPayloadText(text, line, 'payload', (d) => (d as Record<string, unknown>).payload),
    // An explicit null queue means parallel even when a default queue is given.
    queue: 'queue' in line ? validateQueue(line.queue) : (defaults.queue ?? null),
    runAt: has('runAt') ? parseRunAt(line.runAt, 'runAt') : (defaults.runAt ?? null),
    maxAttempts: has('maxAttempts')
      ? parseMaxAttempts(line.maxAttempts, 'maxAttempts')
      : parseMaxAttempts(defaults.maxAttempts),
    jobKey: validateJobKey(line.jobKey, 'jobKey'),
    jobKeyMode: has('jobKeyMode')
      ? validateJobKeyMode(line.jobKeyMode, 'jobKeyMode')
      : (defaults.jobKeyMode ?? 'replace'),
    priority,
    flags: flagsForPriority(priority, flags),
  }
}

/**
 * Reads NDJSON from `input` (a file or stdin stream, or any async iterable of chunks) and
 * enqueues every line in one transaction. Without skipInvalid the first invalid line rolls
 * everything back and throws a UsageError naming the line.
 */
export async function enqueueNdjson(
  db: Database,
  input: AsyncIterable<string | Uint8Array>,
  options: NdjsonOptions = {},
): Promise<NdjsonResult> {
  if (options.dryRun) return validateNdjson(input, options)
  const started = performance.now()
  return db.transaction(async (tx) => {
    const writer = new JobBatchWriter(tx, {batchSize: options.batchSize})
    let counts: ReadCounts
    try {
      counts = await readNdjson(input, options, writer)
    } catch (error) {
      await writer.abandon()
      throw error
    }
    const totals = await writer.finish()
    // A signal that came while the last batch was written still means "nothing enqueued":
    // throwing here rolls the transaction back (only one after the COMMIT is sent is too late).
    if (options.signal?.aborted) throw interrupted(counts)
    return result(counts, totals, started, false)
  })
}

/** Parses and validates every line without a database (a dry run): invalid lines are all reported, none thrown. */
export async function validateNdjson(
  input: AsyncIterable<string | Uint8Array>,
  options: Omit<NdjsonOptions, 'dryRun'> = {},
): Promise<NdjsonResult> {
  const started = performance.now()
  const counts = await readNdjson(input, {...options, dryRun: true}, undefined)
  return result(counts, {enqueued: 0, alreadyInProgress: 0, alreadyInProgressKeys: []}, started, true)
}

interface ReadCounts {
  lines: number
  bytes: number
  jobs: number
  skipped: number
  skippedLines: SkippedLine[]
}

async function readNdjson(
  input: AsyncIterable<string | Uint8Array>,
  options: NdjsonOptions,
  writer: JobBatchWriter | undefined,
): Promise<ReadCounts> {
  const reader = new LineReader(options, writer)
  // A stream waiting for input (a quiet pipe) is destroyed on abort, which ends the loop.
  const onAbort = (): void => (input as {destroy?: (error?: Error) => void}).destroy?.(interrupted(reader.counts))
  options.signal?.addEventListener('abort', onAbort, {once: true})
  try {
    for await (const chunk of input) {
      if (options.signal?.aborted) throw interrupted(reader.counts)
      await reader.chunk(chunk)
    }
    await reader.end()
  } finally {
    options.signal?.removeEventListener('abort', onAbort)
  }
  if (options.signal?.aborted) throw interrupted(reader.counts)
  return reader.counts
}

/** Splits chunks into lines, parses each, and hands valid jobs to the writer. */
class LineReader {
  readonly counts: ReadCounts = {lines: 0, bytes: 0, jobs: 0, skipped: 0, skippedLines: []}
  private readonly decoder = new StringDecoder('utf8')
  private rest = ''
  private skippingLongLine = false
  /** The bytes of a character cut by the end of the last chunk (checked with the next one). */
  private carry: Buffer | undefined
  /** Lines whose bytes are not UTF-8 (the decoder would have made them U+FFFD silently). */
  private readonly notUtf8 = new Set<number>()
  private readonly defaults: NdjsonDefaults
  private readonly collectAll: boolean

  constructor(
    private readonly options: NdjsonOptions,
    private readonly writer: JobBatchWriter | undefined,
  ) {
    this.defaults = options.defaults ?? {}
    this.collectAll = Boolean(options.skipInvalid || options.dryRun)
  }

  async chunk(chunk: string | Uint8Array): Promise<void> {
    if (typeof chunk !== 'string') this.checkUtf8(chunk as Buffer)
    let text = typeof chunk === 'string' ? chunk : this.decoder.write(chunk as Buffer)
    this.counts.bytes += typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length
    if (this.skippingLongLine) {
      // The rest of a line over the limit (already reported): drop it up to its newline.
      const end = text.indexOf('\n')
      if (end === -1) return this.progress()
      this.skippingLongLine = false
      text = text.slice(end + 1)
    }
    let newline = text.indexOf('\n')
    if (newline === -1) {
      this.rest += text
    } else {
      let pending = this.line(this.rest + text.slice(0, newline))
      if (pending) await pending
      let start = newline + 1
      while ((newline = text.indexOf('\n', start)) !== -1) {
        pending = this.line(text.slice(start, newline))
        if (pending) await pending
        start = newline + 1
      }
      this.rest = text.slice(start)
    }
    if (this.rest.length > MAX_LINE_BYTES) this.lineTooLong()
    this.progress()
  }

  /** A line over the limit: refused (naming it), or with --skip-invalid reported and dropped unread. */
  private lineTooLong(): void {
    const reason = `longer than ${MAX_LINE_BYTES / 1024 / 1024} MiB`
    const suggestions = ['put one job per line; large payloads belong in storage the job can fetch']
    if (!this.collectAll) {
      throw new UsageError(`line ${this.counts.lines + 1} is ${reason}; nothing was enqueued`, {
        code: 'E_INVALID_NDJSON',
        details: {line: this.counts.lines + 1},
        suggestions,
      })
    }
    this.counts.lines += 1
    this.rest = ''
    this.skippingLongLine = true
    this.invalid(new UsageError(reason, {code: 'E_INVALID_NDJSON', suggestions}))
  }

  /**
   * JSON text is UTF-8: a chunk is checked as a whole (natively, fast); only when it fails are
   * its lines told apart, so each bad line is reported with its number (or skipped).
   */
  private checkUtf8(bytes: Buffer): void {
    const data = this.carry ? Buffer.concat([this.carry, bytes]) : bytes
    const cut = completeUtf8Length(data)
    this.carry = cut < data.length ? Buffer.from(data.subarray(cut)) : undefined
    const whole = data.subarray(0, cut)
    if (isUtf8(whole)) return
    // A newline byte is never part of a multi-byte character: each line can be checked alone.
    let line = this.skippingLongLine ? this.counts.lines : this.counts.lines + 1
    for (let start = 0; ; line += 1) {
      const newline = whole.indexOf(0x0a, start)
      if (!isUtf8(whole.subarray(start, newline === -1 ? whole.length : newline))) this.notUtf8.add(line)
      if (newline === -1) break
      start = newline + 1
    }
  }

  async end(): Promise<void> {
    // A character cut off by the end of the input.
    if (this.carry && !this.skippingLongLine) this.notUtf8.add(this.counts.lines + 1)
    const tail = this.decoder.end()
    // The end of a line over the limit that was being dropped is no line of its own.
    const last = this.skippingLongLine ? '' : this.rest + tail
    this.rest = ''
    if (last !== '') await this.line(last)
    this.progress()
  }

  /** Handles one line; returns a promise only when the writer has to wait (a batch is sent). */
  private line(raw: string): Promise<void> | undefined {
    const counts = this.counts
    counts.lines += 1
    if (this.notUtf8.size > 0 && this.notUtf8.delete(counts.lines)) {
      this.invalid(
        new UsageError('not valid UTF-8', {
          code: 'E_INVALID_NDJSON',
          suggestions: ['convert the input to UTF-8, e.g. iconv -f LATIN1 -t UTF-8'],
        }),
      )
      return undefined
    }
    let text = counts.lines === 1 && raw.charCodeAt(0) === 0xfeff ? raw.slice(1) : raw
    if (text.endsWith('\r')) text = text.slice(0, -1)
    if (text.trim() === '') return undefined
    let job: PreparedJob
    try {
      job = parseNdjsonLine(text, this.defaults)
    } catch (error) {
      if (!(error instanceof UsageError)) throw error
      this.invalid(error)
      return undefined
    }
    counts.jobs += 1
    return this.writer?.add(job)
  }

  private invalid(error: UsageError): void {
    const {counts} = this
    const reason = error.message
    if (!this.collectAll) {
      throw new UsageError(`line ${counts.lines}: ${reason}; nothing was enqueued`, {
        code: error.code,
        details: {line: counts.lines, reason},
        suggestions: [
          ...error.suggestions,
          'fix the line and rerun, or pass --skip-invalid to enqueue the valid lines and report the others',
        ],
      })
    }
    counts.skipped += 1
    const skipped = {line: counts.lines, reason}
    if (counts.skippedLines.length < MAX_LISTED) counts.skippedLines.push(skipped)
    this.options.onSkip?.(skipped)
  }

  private progress(): void {
    const {lines, bytes, jobs, skipped} = this.counts
    this.options.onProgress?.({lines, bytes, jobs, enqueued: this.writer?.enqueued ?? 0, skipped})
  }
}

/** Length of `data` without a multi-byte character cut off at its end (at most 3 bytes). */
function completeUtf8Length(data: Buffer): number {
  for (let i = data.length - 1; i >= Math.max(0, data.length - 3); i -= 1) {
    const byte = data[i]!
    if ((byte & 0xc0) === 0x80) continue
    if (byte < 0xc0) return data.length
    const needed = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : 2
    return data.length - i < needed ? i : data.length
  }
  return data.length
}

function interrupted(counts: ReadCounts): InterruptedError {
  return new InterruptedError(`interrupted after ${counts.lines} lines; nothing was enqueued`, {
    suggestions: ['rerun the whole input when ready'],
  })
}

function result(counts: ReadCounts, totals: BatchTotals, started: number, dryRun: boolean): NdjsonResult {
  const seconds = (performance.now() - started) / 1000
  return {
    dryRun,
    lines: counts.lines,
    jobs: counts.jobs,
    enqueued: totals.enqueued,
    skipped: counts.skipped,
    skippedLines: counts.skippedLines,
    alreadyInProgress: totals.alreadyInProgress,
    alreadyInProgressKeys: totals.alreadyInProgressKeys,
    seconds,
    jobsPerSecond: seconds > 0 ? (dryRun ? counts.jobs : totals.enqueued) / seconds : 0,
  }
}
