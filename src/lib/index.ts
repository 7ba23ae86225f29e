/**
 * backfill's core library: no CLI concerns (no oclif, no console output, no process exits),
 * so applications can embed it.
 */
export * from './errors.js'
export {DEFAULT_SCHEMA, parseSchemaName, quoteIdent, type SchemaName} from './identifiers.js'
export {redactUrl, resolveConnection, scrubSecrets, targetFromUrl, type ConnectionTarget} from './connection.js'
export {createPool, Database, type DatabaseOptions, type PoolOptions} from './db.js'
export {mapPgError} from './pg-errors.js'
export {migrate, initDlq, type MigrateOptions, type MigrateResult, type InitDlqResult} from './schema/migrate.js'
export {inspectSchema, requireMigrated, type SchemaInspection} from './schema/inspect.js'
export {printSchemaSql, type PrintSchemaOptions} from './schema/print.js'
export {EmbeddedPostgres, locatePostgresBinaries, type EmbeddedPostgresOptions, type EmbeddedStatus} from './embedded/postgres.js'
export {listLocks, type ListLocksOptions, type LockEntry, type LockListing, type LockOwner, type WorkerSeen} from './locks/list.js'
export {
  cleanLocks,
  DEFAULT_STALE_JOB_LOCK_TIMEOUT_MS,
  DEFAULT_STALE_QUEUE_LOCK_TIMEOUT_MS,
  timeoutWarnings,
  type CleanLocksOptions,
  type CleanLocksResult,
  type PlannedLock,
} from './locks/clean.js'
export {judgeOwner, ownerFamily, type Liveness, type LivenessOptions, type OwnerFamily} from './locks/owners.js'
export {queueStatus, type StatusOptions, type StatusResult} from './health/status.js'
export {runChecks, type CheckResult, type CheckThresholds} from './health/check.js'
export {schemaStatus, type Finding, type SchemaStatus} from './schema/doctor.js'
