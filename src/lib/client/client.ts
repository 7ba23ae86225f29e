import type pg from 'pg'

import {redactUrl, targetFromUrl, type ConnectionTarget} from '../connection.js'
import {Database} from '../db.js'
import {isBackfillError, UsageError} from '../errors.js'
import {DEFAULT_SCHEMA, parseSchemaName} from '../identifiers.js'
import {requireMigrated, type SchemaInspection} from '../schema/inspect.js'
import {migrate} from '../schema/migrate.js'
import {addJob, getJob, getJobByKey, removeJob} from '../sql/jobs.js'
import {addJobParams, JobBatchWriter, type BatchTotals} from './batch.js'
import {rowToJob, type Job} from './job.js'
import {enqueueNdjson, type NdjsonOptions, type NdjsonResult} from './ndjson.js'
import {type JobInput, type JobSpec, type PreparedJob, prepareJob, prepareJobText, validateJobKey} from './spec.js'

export interface BackfillClientOptions {
  /** graphile-worker schema (default graphile_worker). */
  schema?: string
  /**
   * App-managed setup (default, as the crate): install or upgrade the schema on connect with
   * backfill's migrate (idempotent, advisory-locked). false for deployment-managed setups: the
   * schema must exist already, otherwise connect throws NotMigratedError and creates nothing.
   */
  ensureSchema?: boolean
  /** Named prepared statements (default true; false behind PgBouncer in transaction mode). */
  preparedStatements?: boolean
  /** Pool size when the client opens its own pool (default 10, as the crate). */
  maxConnections?: number
}

/**
 * What enqueue did. `enqueued`: add_job wrote the job: `created` a new row, `updated` an
 * unlocked job with the same key in place (replace / preserve_run_at), or `deduplicated`
 * (unsafe_dedupe found a job with the key and returned it unchanged, possibly running).
 * `already-in-progress`: add_job wrote nothing because a worker held the job with this key at
 * that instant; the payload was discarded (as the crate's EnqueueOutcome::AlreadyInProgress).
 */
export type EnqueueOutcome =
  | {status: 'enqueued'; action: 'created' | 'updated' | 'deduplicated'; job: Job}
  | {status: 'already-in-progress'; jobKey: string}

export interface EnqueueManyOptions {
  /** Jobs per add_jobs call (default 5000). */
  batchSize?: number
  /** Return the written jobs (default false: memory then stays flat for any number of jobs). */
  returnJobs?: boolean
  signal?: AbortSignal
}

export interface EnqueueManyResult extends BatchTotals {
  /** Jobs given. */
  count: number
  seconds: number
}

/**
 * What graphile's remove_job did: `removed` (the job was not locked and is deleted), `locked`
 * (a worker is running it: graphile cleared its key and set attempts = max_attempts, so it will
 * not be retried; the running attempt still finishes), or `not-found`.
 */
export type RemoveJobOutcome = {status: 'removed' | 'locked'; job: Job} | {status: 'not-found'; jobKey: string}

/**
 * Enqueues jobs into graphile-worker's schema exactly as the Rust backfill crate does, through
 * graphile's add_job/add_jobs. Every job gets its flags from flagsForPriority, so bulk jobs
 * (priority >= 0) carry BULK_FLAG and workers can keep them off reserved fast capacity.
 */
export class BackfillClient {
  readonly db: Database

  private constructor(db: Database) {
    this.db = db
  }

  /** From a connection string (the client owns its pool; end() closes it) or the caller's pg.Pool. */
  static async connect(connection: string | pg.Pool, options: BackfillClientOptions = {}): Promise<BackfillClient> {
    const schema = parseSchemaName(options.schema ?? DEFAULT_SCHEMA)
    const db =
      typeof connection === 'string'
        ? Database.connect({
            target: targetFromUrl(connection, 'flag-or-env'),
            schema,
            preparedStatements: options.preparedStatements,
            max: options.maxConnections ?? 10,
            applicationName: 'backfill client',
          })
        : Database.fromPool(connection, {
            target: targetFromPool(connection),
            schema,
            preparedStatements: options.preparedStatements,
          })
    try {
      return await BackfillClient.fromDatabase(db, options)
    } catch (error) {
      await db.end()
      throw error
    }
  }

  /**
   * On an existing Database handle (the CLI's); ensureSchema as in connect(). A caller that
   * has just checked the schema passes its inspection, and it is not read again.
   */
  static async fromDatabase(
    db: Database,
    options: Pick<BackfillClientOptions, 'ensureSchema'> & {inspection?: SchemaInspection} = {},
  ): Promise<BackfillClient> {
    if (options.ensureSchema ?? true) await migrate(db)
    else if (!options.inspection) await requireMigrated(db)
    return new BackfillClient(db)
  }

  get schema(): string {
    return this.db.schema
  }

  get pool(): pg.Pool {
    return this.db.pool
  }

  /** Enqueues one job with graphile's add_job. The payload is any JSON value (undefined/null = {}). */
  async enqueue(task: string, payload?: unknown, spec: JobSpec = {}): Promise<EnqueueOutcome> {
    return this.enqueuePrepared(prepareJob(task, payload, spec))
  }

  /** As enqueue, with the payload given as JSON text (validated by parsePayloadJson). */
  async enqueueJson(task: string, payloadJson: string, spec: JobSpec = {}): Promise<EnqueueOutcome> {
    return this.enqueuePrepared(prepareJobText(task, payloadJson, spec))
  }

  private async enqueuePrepared(job: PreparedJob): Promise<EnqueueOutcome> {
    const written = rowToJob(await this.db.maybeOne(addJob, addJobParams(job)))
    if (!written) {
      // add_job returns no job only for a keyed job whose row a worker locked meanwhile.
      return {status: 'already-in-progress', jobKey: job.jobKey ?? ''}
    }
    const action = written.revision === 0 ? 'created' : job.jobKeyMode === 'unsafe_dedupe' ? 'deduplicated' : 'updated'
    return {status: 'enqueued', action, job: written}
  }

  /**
   * Enqueues many jobs with graphile's add_jobs, in batches, in ONE transaction: every job is
   * validated as it goes and one invalid job (a UsageError naming its index) rolls back all.
   * Accepts arrays and (async) iterables, so a generator can feed millions of jobs.
   */
  async enqueueMany(
    jobs: Iterable<JobInput> | AsyncIterable<JobInput>,
    options: EnqueueManyOptions = {},
  ): Promise<EnqueueManyResult> {
    const started = performance.now()
    return this.db.transaction(async (tx) => {
      const writer = new JobBatchWriter(tx, {batchSize: options.batchSize, returnJobs: options.returnJobs})
      let count = 0
      const add = (input: JobInput): Promise<void> | undefined => {
        let job: PreparedJob
        try {
          job = prepareJob(input?.task, input?.payload, input ?? {})
        } catch (error) {
          if (!isBackfillError(error)) throw error
          throw new UsageError(`job at index ${count}: ${error.message}; nothing was enqueued`, {
            code: error.code,
            details: {index: count},
            suggestions: error.suggestions,
          })
        }
        count += 1
        return writer.add(job)
      }
      try {
        // A plain loop for arrays and other sync iterables: for await costs a promise per job.
        if (Symbol.iterator in jobs) {
          for (const input of jobs) {
            const pending = add(input)
            if (pending) {
              await pending
              options.signal?.throwIfAborted()
            }
          }
        } else {
          for await (const input of jobs) {
            options.signal?.throwIfAborted()
            const pending = add(input)
            if (pending) await pending
          }
        }
      } catch (error) {
        await writer.abandon()
        throw error
      }
      const totals = await writer.finish()
      // Aborted while the last batch was written: roll back, as for an earlier signal.
      options.signal?.throwIfAborted()
      return {...totals, count, seconds: (performance.now() - started) / 1000}
    })
  }

  /** Streams NDJSON (one job per line) into the queue in one transaction; see enqueueNdjson. */
  async enqueueNdjson(input: AsyncIterable<string | Uint8Array>, options: NdjsonOptions = {}): Promise<NdjsonResult> {
    return enqueueNdjson(this.db, input, options)
  }

  /** graphile's remove_job: delete the keyed job, or stop a running one from being retried. */
  async removeJob(jobKey: string): Promise<RemoveJobOutcome> {
    const key = validateJobKey(jobKey) ?? ''
    const job = rowToJob(await this.db.maybeOne(removeJob, [key]))
    if (!job) return {status: 'not-found', jobKey: key}
    // A deleted row still carries its key; a locked one had it cleared.
    return {status: job.key === null ? 'locked' : 'removed', job}
  }

  /** A job by id, from any runtime (Node, Rust, SQL); undefined when it is gone (done or removed). */
  async getJob(id: string | number | bigint): Promise<Job | undefined> {
    const text = String(id)
    if (!/^\d{1,19}$/.test(text))
      throw new UsageError(`job id ${JSON.stringify(text)} is not a positive integer`, {code: 'E_INVALID_JOB'})
    return rowToJob(await this.db.maybeOne(getJob, [text]))
  }

  async getJobByKey(jobKey: string): Promise<Job | undefined> {
    return rowToJob(await this.db.maybeOne(getJobByKey, [validateJobKey(jobKey) ?? '']))
  }

  /** Closes the pool if the client opened it (a caller's pool stays open). */
  async end(): Promise<void> {
    await this.db.end()
  }
}

/** A description of a caller's pool for error messages (never its password). */
function targetFromPool(pool: pg.Pool): ConnectionTarget {
  const options = (pool as unknown as {options: pg.PoolConfig}).options ?? {}
  if (
    typeof options.connectionString === 'string' &&
    /^(postgres|postgresql|socket):/i.test(options.connectionString)
  ) {
    const target = targetFromUrl(options.connectionString, 'pool')
    return typeof options.password === 'string' ? {...target, secrets: [...target.secrets, options.password]} : target
  }
  const host = options.host ?? process.env.PGHOST ?? 'localhost'
  const port = Number(options.port ?? process.env.PGPORT ?? 5432)
  const user = options.user ?? process.env.PGUSER ?? process.env.USER ?? 'postgres'
  const database = options.database ?? process.env.PGDATABASE ?? user
  return {
    connectionString: undefined,
    display: redactUrl(`postgres://${user}@${host}:${port}/${database} (caller's pool)`),
    host,
    port,
    database,
    user,
    secrets: typeof options.password === 'string' ? [options.password] : [],
    source: 'pool',
  }
}
