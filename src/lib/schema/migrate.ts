import type {Database} from '../db.js'
import {backfillFingerprints} from '../dlq/fingerprint-store.js'
import {type GroupCountsRecount, recountGroupCounts} from '../dlq/group-counts.js'
import {PreconditionError, isBackfillError} from '../errors.js'
import {mapPgError} from '../pg-errors.js'
import {requireSession} from '../pooler.js'
import {advisoryLock, advisoryUnlock, duplicateDlqJobKeys, rustLockOwners} from '../sql/schema.js'
import {
  BACKFILL_OBJECTS,
  type BackfillObject,
  GROUP_COUNTS_TABLE,
  metaVersionSql,
  missingObjects,
} from './backfill-objects.js'
import {
  graphileBootstrapSql,
  graphileMigrationSql,
  graphileObjectNames,
  graphilePackage,
} from './graphile-migrations.js'
import {inspectSchema, pending19BlocksOldRust, type SchemaInspection} from './inspect.js'
import {RUST_ADD_JOBS_ACTION, RUST_ADD_JOBS_MESSAGE, rustAddJobsFixMissing} from './rust-add-jobs.js'

export interface InitDlqResult {
  schema: string
  dryRun: boolean
  /** The table existed before (ours, or created by the Rust crate or its SQL file). */
  tableExisted: boolean
  /** Objects created or completed (or, with dryRun, that would be). */
  created: string[]
  upToDate: boolean
  /** SQL that was (or would be) run. */
  sql: string
  /** Entries given their failure-group fingerprint (0 for a dry run): see backfillFingerprints. */
  fingerprinted: number
  /**
   * With `recount`: how far the failure-group counts were from a fresh count, corrected (or,
   * with dryRun, only measured; null when the counts table does not exist yet).
   */
  recount?: GroupCountsRecount | null
}

export interface MigrateResult {
  schema: string
  dryRun: boolean
  graphileWorkerVersion: string
  revisionBefore: number | null
  revisionAfter: number | null
  highestKnown: number
  /** graphile-worker migrations applied (or, with dryRun, pending). */
  applied: number[]
  /** Applied migration ids graphile-worker does not know, e.g. the Rust port's 20. */
  unknownMigrations: number[]
  /** What we found that an operator should know (foreign runtimes, warnings). */
  notes: string[]
  dlq: InitDlqResult
  upToDate: boolean
  /** Pending SQL (dryRun only): graphile migrations then backfill objects. */
  sql?: string
}

export interface MigrateOptions {
  dryRun?: boolean
  /** Called with progress lines (human text). */
  onProgress?: (message: string) => void
}

const LOCK_PREFIX = 'backfill:migrate:'
const VACUUM_AFTER_FINGERPRINTS = 10_000

/**
 * Installs or upgrades graphile-worker's schema with graphile-worker's own migrator, then
 * creates or completes the DLQ objects. Concurrent runs are serialised by an advisory lock,
 * so two installers on an empty database both succeed and leave one schema.
 */
export async function migrate(db: Database, options: MigrateOptions = {}): Promise<MigrateResult> {
  const before = await inspectSchema(db)
  checkCompatible(before)
  await checkRustWorkersAccept19(db, before)
  const notes = describeForeignState(before)
  if (await rustAddJobsFixMissing(db, before)) notes.push(`${RUST_ADD_JOBS_MESSAGE}; to fix: ${RUST_ADD_JOBS_ACTION}`)
  if (options.dryRun) {
    const pkg = graphilePackage()
    const pending = pkg.migrations.filter((m) => before.graphile.pending.includes(m.id))
    // Objects that wait for graphile's tables (our indexes on _private_jobs) are planned too
    // when graphile's migrations are pending: the printed SQL creates those tables first.
    const dlq = planDlq(db, before, true, before.graphile.pending.length > 0 ? ['_private_jobs'] : [])
    const graphileSql =
      pending.length > 0
        ? (before.graphile.migrationsTable && before.graphile.breakingColumn
            ? ''
            : graphileBootstrapSql(db.quotedSchema)) +
          pending.map((m) => graphileMigrationSql(db.quotedSchema, m)).join('')
        : ''
    return {
      schema: db.schema,
      dryRun: true,
      graphileWorkerVersion: before.graphile.packageVersion,
      revisionBefore: before.graphile.revision,
      revisionAfter: before.graphile.revision,
      highestKnown: before.graphile.highestKnown,
      applied: before.graphile.pending,
      unknownMigrations: before.graphile.unknown,
      notes,
      dlq,
      upToDate: before.graphile.pending.length === 0 && dlq.upToDate,
      sql: graphileSql + dlq.sql,
    }
  }

  if (before.graphile.pending.length === 0 && missingObjects(before.backfill.catalog).length === 0) {
    // Up to date: no lock, no second look (every worker start and app-managed client gets here).
    return {
      schema: db.schema,
      dryRun: false,
      graphileWorkerVersion: before.graphile.packageVersion,
      revisionBefore: before.graphile.revision,
      revisionAfter: before.graphile.revision,
      highestKnown: before.graphile.highestKnown,
      applied: [],
      unknownMigrations: before.graphile.unknown,
      notes,
      dlq: await fingerprintDlq(db, planDlq(db, before, false), options),
      upToDate: true,
    }
  }

  return withInstallLock(db, async (locked) => {
    // Re-read under the lock: another installer may have finished meanwhile.
    const current = await inspectSchema(locked)
    checkCompatible(current)
    await checkRustWorkersAccept19(locked, current)
    if (current.graphile.pending.length > 0) {
      options.onProgress?.(
        `applying graphile-worker migrations ${rangeText(current.graphile.pending)} to schema "${db.schema}"`,
      )
      await runGraphileMigrations(locked, notes)
    }
    const after = await inspectSchema(locked)
    const dlq = await fingerprintDlq(locked, await applyDlq(locked, after, options), options)
    const applied = after.graphile.migrations
      .map((m) => m.id)
      .filter((id) => !current.graphile.migrations.some((m) => m.id === id))
    return {
      schema: db.schema,
      dryRun: false,
      graphileWorkerVersion: after.graphile.packageVersion,
      // As found under the lock: a run that waited for another installer starts from its result.
      revisionBefore: current.graphile.revision,
      revisionAfter: after.graphile.revision,
      highestKnown: after.graphile.highestKnown,
      applied,
      unknownMigrations: after.graphile.unknown,
      notes,
      dlq,
      upToDate: applied.length === 0 && dlq.upToDate,
    }
  })
}

export interface InitDlqOptions extends MigrateOptions {
  /**
   * Then compare the failure-group counts with a fresh count of the entries and correct them
   * (see recountGroupCounts): the repair after writes the triggers did not see.
   */
  recount?: boolean
}

/** Creates `<schema>.backfill_dlq` (and the schema) or completes an existing one. */
export async function initDlq(db: Database, options: InitDlqOptions = {}): Promise<InitDlqResult> {
  const before = await inspectSchema(db)
  if (options.dryRun) {
    const plan = planDlq(db, before, true)
    if (!options.recount) return plan
    const measurable = before.backfill.catalog.relations.has(GROUP_COUNTS_TABLE)
    return {...plan, recount: measurable ? await recountGroupCounts(db, {dryRun: true}) : null}
  }
  return withInstallLock(db, async (locked) => {
    const result = await fingerprintDlq(locked, await applyDlq(locked, await inspectSchema(locked), options), options)
    if (!options.recount) return result
    options.onProgress?.('recounting DLQ failure groups')
    return {...result, recount: await recountGroupCounts(locked)}
  })
}

/**
 * After the DDL: fingerprints the entries that have none (batched, idempotent; one index
 * probe when there are none), so `dlq stats` groups them from the index.
 */
async function fingerprintDlq(db: Database, result: InitDlqResult, options: MigrateOptions): Promise<InitDlqResult> {
  let reported = 0
  const backfill = await backfillFingerprints(db, {
    onBatch: (done) => {
      if (done - reported >= 100_000) {
        reported = done
        options.onProgress?.(`fingerprinting DLQ entries: ${done} done`)
      }
    },
  })
  if (backfill.fingerprinted > 0)
    options.onProgress?.(`fingerprinted ${backfill.fingerprinted} DLQ entries for failure grouping`)
  // Many rewritten rows: mark the pages all-visible now (what the index-only scan of stats
  // needs) rather than when autovacuum gets to it. VACUUM does not block readers or writers.
  if (backfill.fingerprinted >= VACUUM_AFTER_FINGERPRINTS)
    await db.execScript(`vacuum (analyze) ${db.quotedSchema}.backfill_dlq`)
  return {...result, fingerprinted: backfill.fingerprinted}
}

function planDlq(
  db: Database,
  inspection: SchemaInspection,
  dryRun: boolean,
  willExist: readonly string[] = [],
): InitDlqResult {
  const {catalog} = inspection.backfill
  const missing = missingObjects(
    willExist.length > 0 ? {...catalog, relations: new Set([...catalog.relations, ...willExist])} : catalog,
  )
  return {
    schema: db.schema,
    dryRun,
    tableExisted: inspection.backfill.dlqExists,
    created: missing.map((o) => o.name),
    upToDate: missing.length === 0,
    sql: missing.length > 0 ? dlqSql(db, missing) : '',
    fingerprinted: 0,
  }
}

function dlqSql(db: Database, objects: readonly BackfillObject[]): string {
  return `begin;\n${objects.map((o) => o.ensureSql(db.quotedSchema, db.schema)).join('')}${metaVersionSql(db.quotedSchema)}commit;\n`
}

async function applyDlq(db: Database, inspection: SchemaInspection, _options: MigrateOptions): Promise<InitDlqResult> {
  const plan = planDlq(db, inspection, false)
  if (plan.upToDate) return plan
  try {
    await db.execScript(plan.sql)
  } catch (error) {
    await db.execScript('rollback').catch(() => undefined)
    const cause = (error as {cause?: {code?: string; message?: string}}).cause
    // Only the unique index over duplicate keys; a 23505 from a concurrent CREATE … IF NOT EXISTS
    // (the Rust crate's init_dlq racing us) is not about the data.
    if (
      cause?.code === '23505' &&
      /could not create unique index "idx_backfill_dlq_job_key_unique"/.test(cause.message ?? '')
    ) {
      const duplicates = await db.rows(duplicateDlqJobKeys, [])
      throw new PreconditionError(
        `cannot add the unique index on backfill_dlq.job_key: ${duplicates.length > 0 ? duplicates.map((d) => `"${d.job_key}" ×${d.count}`).join(', ') : 'duplicate job keys'} (the table was probably created from the crate's docs/dlq_schema.sql, which lacks the index)`,
        {
          code: 'E_DLQ_DUPLICATE_KEYS',
          cause: error,
          suggestions: [
            `keep the newest row per key: delete from "${db.schema}".backfill_dlq d using "${db.schema}".backfill_dlq n where d.job_key = n.job_key and d.id < n.id;`,
            'then rerun: backfill init-dlq',
          ],
        },
      )
    }
    throw error
  }
  return plan
}

async function runGraphileMigrations(db: Database, notes: string[]): Promise<void> {
  const {runMigrations, Logger} = await import('graphile-worker')
  const logger = new Logger(() => (level: string, message: string) => {
    if (level === 'warning' || level === 'error') notes.push(message)
  })
  try {
    await runMigrations({pgPool: db.pool, schema: db.schema, logger})
  } catch (error) {
    if (isBackfillError(error)) throw error
    const message = (error as Error)?.message ?? String(error)
    if (/migration 11 cannot complete/.test(message)) {
      throw new PreconditionError(`graphile-worker migration 11 refuses to run while jobs are locked: ${message}`, {
        code: 'E_LOCKED_JOBS',
        cause: error,
        suggestions: [
          'stop every worker, then release the locks: backfill locks clean',
          'then rerun: backfill migrate',
        ],
      })
    }
    throw mapPgError(error, db.errorContext())
  }
}

async function withInstallLock<T>(db: Database, fn: (locked: Database) => Promise<T>): Promise<T> {
  // Through transaction pooling the session lock below would stay behind on a shared server connection.
  await requireSession(db.target, 'installing the schema', 'a session advisory lock serialises installers')
  return db.withClient(async (client) => {
    const key = `${LOCK_PREFIX}${db.schema}`
    await client.rows(advisoryLock, [key])
    try {
      // graphile's migrator borrows its own pool connection; the session lock above still serialises installers.
      return await fn(client)
    } finally {
      await client.rows(advisoryUnlock, [key]).catch(() => undefined)
    }
  })
}

function checkCompatible(inspection: SchemaInspection): void {
  const {latestBreaking, highestKnown, revision, packageVersion, functions} = inspection.graphile
  checkNoForeignObjects(inspection)
  if (latestBreaking !== null && latestBreaking > highestKnown) {
    throw new PreconditionError(
      `schema "${inspection.schema}" is at revision ${revision} with breaking migration ${latestBreaking}, but the bundled graphile-worker ${packageVersion} only knows up to ${highestKnown}; refusing to touch it`,
      {
        code: 'E_SCHEMA_TOO_NEW',
        suggestions: ['upgrade backfill (and every Node worker) to a graphile-worker that knows this revision'],
      },
    )
  }
  if (revision !== null && revision >= 11 && revision <= 15 && !functions.includes('permanently_fail_jobs')) {
    throw new PreconditionError(
      `schema "${inspection.schema}" was built by the Rust graphile_worker at revision ${revision} without permanently_fail_jobs; graphile-worker's migration 16 would fail on it`,
      {
        code: 'E_RUST_REVISION_GAP',
        suggestions: [
          'let a Rust graphile_worker (>= 0.4) migrate it past revision 16 first, then rerun backfill migrate',
        ],
      },
    )
  }
}

/**
 * graphile-worker 0.17's migration 19 is a breaking marker only. The Rust graphile_worker
 * <= 0.11.2 (the backfill crate 1.1.x) knows 18 migrations and refuses to start on a schema
 * whose latest breaking migration is above that (IncompatbleRevision); >= 0.11.3 applies its
 * own, non-breaking 19 when it starts. So Rust workers holding locks on a schema still at 18
 * are old ones, which would all fail at their next start: refuse, change nothing.
 */
async function checkRustWorkersAccept19(db: Database, inspection: SchemaInspection): Promise<void> {
  const {revision, packageVersion} = inspection.graphile
  if (!pending19BlocksOldRust(inspection.graphile)) return
  const owners = await db.rows(rustLockOwners, [])
  if (owners.length === 0) return
  throw new PreconditionError(
    `schema "${inspection.schema}" is at revision ${revision} and Rust graphile_worker workers hold locks in it (${owners.map((o) => o.locked_by).join(', ')}): a Rust graphile_worker at this revision is 0.11.2 or older, and after graphile-worker ${packageVersion}'s breaking migration 19 it refuses to start (incompatible revision); nothing was changed`,
    {
      code: 'E_RUST_WORKERS_TOO_OLD',
      details: {schema: inspection.schema, revision, rustLockOwners: owners.map((o) => o.locked_by)},
      suggestions: [
        'upgrade the Rust services to graphile_worker >= 0.11.3 first: the first one to start applies the Rust migration 19 (non-breaking), and backfill migrate then has nothing to apply',
        'if those Rust workers are gone for good, release their locks (backfill locks clean; --force for locks younger than its timeouts) and rerun backfill migrate',
      ],
    },
  )
}

/**
 * A fresh install (no graphile ledger rows) into a schema that already holds another
 * tool's `migrations` or `jobs` (typically `--schema public`) would fail half-way with a
 * raw SQL error, leave graphile's empty ledger behind, or alter or replace the other
 * tool's objects. Refuse before changing anything.
 */
function checkNoForeignObjects(inspection: SchemaInspection): void {
  const g = inspection.graphile
  const conflicts: string[] = []
  const described: string[] = []
  if (g.foreignLedger !== null) {
    conflicts.push('migrations')
    described.push(`migrations (not graphile-worker's ledger: ${g.foreignLedger})`)
  }
  if (g.revision === null) {
    const names = graphileObjectNames()
    const relations = inspection.backfill.catalog.relations
    for (const name of names.relations.filter((n) => relations.has(n))) {
      conflicts.push(name)
      described.push(name)
    }
    for (const name of names.functions.filter((n) => g.functions.includes(n))) {
      conflicts.push(`${name}()`)
      described.push(`function ${name}()`)
    }
  }
  if (conflicts.length === 0) return
  throw new PreconditionError(
    `schema "${inspection.schema}" already holds objects graphile-worker would create: ${described.join(', ')}; refusing to install over another tool's objects (nothing was changed)`,
    {
      code: 'E_SCHEMA_CONFLICT',
      suggestions: [
        'install the job queue in a schema of its own: backfill migrate --schema graphile_worker (the default), and give every command and worker the same --schema / GRAPHILE_WORKER_SCHEMA',
        `or move the other tool's objects out of "${inspection.schema}" first`,
      ],
      details: {schema: inspection.schema, conflicts},
    },
  )
}

function describeForeignState(inspection: SchemaInspection): string[] {
  const notes: string[] = []
  const {unknown, rustWorkersTable, highestKnown, packageVersion, migrations} = inspection.graphile
  if (unknown.length > 0) {
    const rust = rustWorkersTable
      ? " (the Rust graphile_worker crate's worker-recovery migration: _private_workers exists)"
      : ''
    notes.push(
      `schema has migration${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')} unknown to graphile-worker ${packageVersion} (knows up to ${highestKnown})${rust}; none is breaking, so it is left as is`,
    )
  }
  const m19 = migrations.find((m) => m.id === 19)
  if (m19 && !m19.breaking)
    notes.push('migration 19 was applied by the Rust graphile_worker (recorded as non-breaking)')
  return notes
}

function rangeText(ids: number[]): string {
  if (ids.length === 0) return 'none'
  return ids.length === 1 ? `${ids[0]}` : `${ids[0]}..${ids[ids.length - 1]}`
}

/** Everything BACKFILL_OBJECTS would create, for reference by callers. */
export const BACKFILL_OBJECT_NAMES = BACKFILL_OBJECTS.map((o) => o.name)
