import {createReadStream, readFileSync, statSync} from 'node:fs'

import {Args, Flags} from '@oclif/core'

import {DbCommand} from '../cli/base-command.js'
import {RawJson} from '../cli/json.js'
import {duration, maxAttempts, priority, PRIORITY_SUMMARY, timestamp} from '../cli/flags.js'
import {ProgressLine} from '../cli/progress.js'
import {DEFAULT_BATCH_SIZE} from '../lib/client/batch.js'
import {BackfillClient, type EnqueueOutcome} from '../lib/client/client.js'
import {validateNdjson, type NdjsonDefaults, type NdjsonResult} from '../lib/client/ndjson.js'
import {
  JOB_KEY_MODES,
  type JobKeyMode,
  type JobSpec,
  type PreparedJob,
  parsePayloadJson,
  prepareJobText,
  validateFlags,
  validateJobKey,
  validateQueue,
  validateTask,
} from '../lib/client/spec.js'
import {UsageError} from '../lib/errors.js'
import {DEFAULT_MAX_ATTEMPTS, Priority, priorityBand} from '../lib/jobs/priority.js'

export type EnqueueCommandResult =
  | EnqueueOutcome
  | {status: 'dry-run'; job: Omit<PreparedJob, 'payload'> & {payload: unknown}}
  | (NdjsonResult & {source: string})

export default class Enqueue extends DbCommand<typeof Enqueue> {
  static override summary = 'Enqueue a job, or many from NDJSON (one job per line).'
  static override description = `Adds jobs through graphile-worker's own add_job/add_jobs SQL functions, with the Rust backfill crate's defaults: parallel (no graphile queue) unless --queue names a serial queue, priority 0 (bulk), 8 attempts. Jobs with a priority >= 0 also carry the flag backfill:bulk, which lets workers keep reserved fast capacity free of bulk work. Prints the job id (the whole job with --json).
With --ndjson FILE (or - for stdin) every line is one job: {"task":…, "payload":…, "priority":…, "queue":…, "runAt":…, "jobKey":…, "jobKeyMode":…, "maxAttempts":…, "flags":[…]}. Flags on the command line, and TASK, give the defaults for fields a line leaves out. The input is streamed in batches inside one transaction: either every line is enqueued or, when a line is invalid, none is (the error names the line); --skip-invalid enqueues the valid lines and reports each invalid one. Never creates the schema: run backfill migrate first.`

  static override examples = [
    `<%= config.bin %> <%= command.id %> send_email --payload '{"to":"ada@example.com"}'`,
    '<%= config.bin %> <%= command.id %> rebuild_index --priority emergency --job-key rebuild_index:users',
    '<%= config.bin %> <%= command.id %> charge_card --payload-file charge.json --queue user:42 --delay 10m --max-attempts 3',
    '<%= config.bin %> <%= command.id %> --ndjson jobs.ndjson',
    `jq -c '{task: "reindex", payload: {id: .id}}' ids.json | <%= config.bin %> <%= command.id %> --ndjson - --priority bulk-low --skip-invalid`,
  ]

  static override args = {
    // ignoreStdin: otherwise oclif fills a missing argument from piped stdin, swallowing --ndjson - input.
    task: Args.string({
      description: 'Task identifier (as your workers register it). With --ndjson: the task of lines without "task".',
      ignoreStdin: true,
    }),
  }

  static override flags = {
    payload: Flags.string({
      helpValue: 'JSON',
      summary: 'Job payload as JSON (default {}).',
      exclusive: ['payload-file', 'ndjson'],
    }),
    'payload-file': Flags.string({
      helpValue: 'FILE|-',
      summary: 'Read the payload JSON from FILE (- for stdin).',
      exclusive: ['payload', 'ndjson'],
    }),
    priority: priority({summary: `${PRIORITY_SUMMARY} (default bulk).`}),
    queue: Flags.string({
      helpValue: 'NAME',
      summary: 'Serial queue name: one job at a time per name (default: parallel, no queue).',
    }),
    'run-at': timestamp({
      summary: 'Run at or after this ISO 8601 date-time with a time zone, e.g. 2030-01-31T09:00:00Z.',
      exclusive: ['delay'],
    }),
    delay: duration({
      summary: 'Run after this delay from now, e.g. 30s, 10m, 2h, 1h30m.',
      exclusive: ['run-at'],
    }),
    'job-key': Flags.string({
      helpValue: 'KEY',
      summary: 'Unique key (at most 512 characters): an unlocked job with the same key is replaced.',
      exclusive: ['ndjson'],
    }),
    'job-key-mode': Flags.option({
      options: JOB_KEY_MODES,
      summary:
        'replace (default), preserve_run_at (keep the existing run time), or unsafe_dedupe (keep the existing job).',
    })(),
    'max-attempts': maxAttempts({
      summary: 'Attempts before the job counts as failed, 1..32767 (default 8).',
    }),
    flag: Flags.string({helpValue: 'FLAG', multiple: true, summary: 'A graphile-worker job flag (repeatable).'}),
    ndjson: Flags.string({helpValue: 'FILE|-', summary: 'Bulk: read one job per line from FILE (- for stdin).'}),
    'skip-invalid': Flags.boolean({
      summary: 'With --ndjson: enqueue the valid lines and report the invalid ones, instead of enqueuing nothing.',
      dependsOn: ['ndjson'],
    }),
    'batch-size': Flags.integer({
      helpValue: 'N',
      summary: `With --ndjson: jobs per add_jobs call (default ${DEFAULT_BATCH_SIZE}).`,
      min: 1,
      max: 100_000,
      dependsOn: ['ndjson'],
    }),
    'dry-run': Flags.boolean({
      summary: 'Validate the input and show what would be enqueued; the database is not touched.',
    }),
  }

  async run(): Promise<EnqueueCommandResult> {
    if (this.flags.ndjson !== undefined) return this.bulk(this.flags.ndjson)
    if (this.args.task === undefined) {
      throw new UsageError('missing TASK (or --ndjson FILE for bulk enqueue)', {
        suggestions: ['e.g. backfill enqueue send_email --payload \'{"to":"ada@example.com"}\''],
      })
    }
    return this.single(this.args.task)
  }

  /** Every flag checked before connecting: bad input is exit 2 and never reaches the database. */
  private spec(): JobSpec & {flags: string[]} {
    const {flags} = this
    if (flags['job-key-mode'] !== undefined && flags['job-key'] === undefined && flags.ndjson === undefined) {
      throw new UsageError('--job-key-mode needs --job-key', {
        suggestions: ['add --job-key KEY, or leave out --job-key-mode'],
      })
    }
    return {
      priority: flags.priority ?? Priority.BULK_DEFAULT,
      queue: validateQueue(flags.queue, '--queue'),
      runAt: flags.delay !== undefined ? new Date(Date.now() + flags.delay) : (flags['run-at'] ?? null),
      jobKey: validateJobKey(flags['job-key'], '--job-key'),
      jobKeyMode: (flags['job-key-mode'] ?? 'replace') as JobKeyMode,
      maxAttempts: flags['max-attempts'] ?? DEFAULT_MAX_ATTEMPTS,
      flags: validateFlags(flags.flag ?? [], '--flag'),
    }
  }

  private async single(task: string): Promise<EnqueueCommandResult> {
    validateTask(task, 'TASK')
    const spec = this.spec()
    const payload = parsePayloadJson(
      await this.payloadText(),
      this.flags['payload-file'] === undefined ? '--payload' : `payload file ${this.flags['payload-file']}`,
    )
    const job = prepareJobText(task, payload, spec)
    if (this.flags['dry-run']) {
      this.out.result(`would enqueue ${describeJob(job)}, payload ${job.payload}`)
      // The payload as JSON in the document (as a real enqueue reports it), not as its text.
      return {status: 'dry-run', job: {...job, payload: new RawJson(job.payload)}}
    }
    const client = await BackfillClient.fromDatabase(this.db(), {ensureSchema: false})
    const outcome = await client.enqueueJson(task, payload, spec)
    if (outcome.status === 'already-in-progress') {
      this.out.warn(
        `the job with key "${outcome.jobKey}" is running (locked by a worker); nothing was enqueued and this payload was discarded`,
      )
      return outcome
    }
    const verb = {created: 'enqueued', updated: 'replaced', deduplicated: 'kept existing'}[outcome.action]
    this.out.success(
      `${verb} job ${outcome.job.id}: ${describeJob(job)}${outcome.job.revision > 0 ? ` (revision ${outcome.job.revision})` : ''}`,
    )
    this.out.result(outcome.job.id)
    // The payload exactly as sent and stored (json keeps the text); pg's JSON.parse would round it.
    return outcome.action === 'deduplicated'
      ? outcome
      : {...outcome, job: {...outcome.job, payload: new RawJson(payload)}}
  }

  private async payloadText(): Promise<string> {
    const file = this.flags['payload-file']
    if (file === undefined) return this.flags.payload ?? '{}'
    let bytes: Buffer
    if (file === '-') {
      const chunks: Buffer[] = []
      for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
      bytes = Buffer.concat(chunks)
    } else {
      checkFile(file, '--payload-file')
      bytes = readFileSync(file)
    }
    return decodeUtf8(bytes, `payload file ${file === '-' ? 'stdin' : file}`)
  }

  private async bulk(source: string): Promise<EnqueueCommandResult> {
    const spec = this.spec()
    const defaults: NdjsonDefaults = {
      ...(this.args.task === undefined ? {} : {task: validateTask(this.args.task, 'TASK')}),
      priority: spec.priority,
      queue: spec.queue,
      runAt: spec.runAt,
      jobKeyMode: spec.jobKeyMode,
      maxAttempts: spec.maxAttempts,
      flags: spec.flags,
    }
    const size = source === '-' ? undefined : checkFile(source, '--ndjson')
    const name = source === '-' ? 'stdin' : source
    const client = this.flags['dry-run']
      ? undefined
      : await BackfillClient.fromDatabase(this.db(), {ensureSchema: false})
    if (source === '-' && process.stdin.isTTY)
      this.out.info('reading NDJSON from the terminal: one job per line, end with Ctrl-D')
    const input = source === '-' ? process.stdin : createReadStream(source, {highWaterMark: 256 * 1024})
    const progress = process.stderr.isTTY && !this.flags.quiet ? new ProgressLine(process.stderr, 'jobs') : undefined
    this.handlesInterrupt = true
    const options = {
      defaults,
      skipInvalid: this.flags['skip-invalid'],
      dryRun: this.flags['dry-run'],
      batchSize: this.flags['batch-size'],
      signal: this.interrupt.signal,
      onProgress: (p: {jobs: number; bytes: number; skipped: number}) =>
        progress?.update({
          count: p.jobs,
          bytes: p.bytes,
          totalBytes: size,
          note: p.skipped > 0 ? `${p.skipped} skipped` : undefined,
        }),
      onSkip: (s: {line: number; reason: string}) => {
        progress?.clear()
        this.out.warn(`line ${s.line} skipped: ${s.reason}`)
      },
    }
    let result: NdjsonResult
    try {
      result = client ? await client.enqueueNdjson(input, options) : await validateNdjson(input, options)
    } finally {
      progress?.clear()
      if (input !== process.stdin) input.destroy()
    }
    this.summarise(result, name)
    return {...result, source: name}
  }

  private summarise(result: NdjsonResult, name: string): void {
    const rate = Math.round(result.jobsPerSecond).toLocaleString('en-US')
    const time = `${result.seconds.toFixed(2)} s`
    if (result.dryRun) {
      if (result.skipped > 0 && !this.flags['skip-invalid']) {
        throw new UsageError(
          `${name}: ${result.skipped} of ${result.jobs + result.skipped} job lines are invalid (listed above); a real run would enqueue nothing`,
          {
            code: 'E_INVALID_NDJSON',
            details: {skipped: result.skipped, skippedLines: result.skippedLines},
            suggestions: ['fix the lines, or pass --skip-invalid to enqueue only the valid ones'],
          },
        )
      }
      this.out.result(
        `${result.jobs} valid jobs in ${result.lines} lines of ${name} (dry run: nothing enqueued)${result.skipped > 0 ? `; ${result.skipped} invalid lines would be skipped` : ''}`,
      )
      return
    }
    this.out.result(`enqueued ${result.enqueued} jobs from ${name} in ${time} (${rate} jobs/s)`)
    if (result.skipped > 0)
      this.out.warn(`skipped ${result.skipped} invalid line${result.skipped === 1 ? '' : 's'} (listed above)`)
    if (result.alreadyInProgress > 0) {
      this.out.warn(
        `${result.alreadyInProgress} keyed job${result.alreadyInProgress === 1 ? ' was' : 's were'} running and kept their payload: ${result.alreadyInProgressKeys.slice(0, 5).join(', ')}${result.alreadyInProgress > 5 ? ', …' : ''}`,
      )
    }
  }
}

/**
 * JSON text is UTF-8 (RFC 8259): bytes that are not are refused rather than turned into U+FFFD,
 * and a leading byte-order mark is dropped, as --ndjson does.
 */
function decodeUtf8(bytes: Buffer, label: string): string {
  const bom = bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf
  try {
    return new TextDecoder('utf-8', {fatal: true, ignoreBOM: true}).decode(bom ? bytes.subarray(3) : bytes)
  } catch {
    throw new UsageError(`${label} is not valid UTF-8`, {
      code: 'E_INVALID_PAYLOAD',
      suggestions: ['convert it, e.g. iconv -f LATIN1 -t UTF-8 FILE'],
    })
  }
}

/** Size of a regular file; a missing or unreadable path is a usage error (exit 2). */
function checkFile(file: string, flag: string): number {
  let stats
  try {
    stats = statSync(file)
  } catch (error) {
    const code = (error as {code?: string}).code
    throw new UsageError(
      code === 'ENOENT' ? `${flag} ${file}: no such file` : `${flag} ${file}: ${(error as Error).message}`,
      {
        code: 'E_NO_SUCH_FILE',
        suggestions: ['check the path, or use - to read stdin'],
      },
    )
  }
  if (stats.isDirectory())
    throw new UsageError(`${flag} ${file} is a directory`, {
      code: 'E_NO_SUCH_FILE',
      suggestions: ['give a file, or - to read stdin'],
    })
  return stats.isFile() ? stats.size : 0
}

function describeJob(job: PreparedJob): string {
  const parts = [
    job.task,
    `priority ${job.priority} (${priorityBand(job.priority)})`,
    job.queue === null ? 'parallel' : `serial queue ${job.queue}`,
    `max attempts ${job.maxAttempts}`,
  ]
  if (job.runAt) parts.push(`run at ${job.runAt.toISOString()}`)
  if (job.jobKey) parts.push(`key ${job.jobKey}${job.jobKeyMode === 'replace' ? '' : ` (${job.jobKeyMode})`}`)
  if (job.flags) parts.push(`flags ${job.flags.join(',')}`)
  return parts.join(', ')
}
