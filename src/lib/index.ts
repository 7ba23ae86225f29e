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
export {
  EmbeddedPostgres,
  locatePostgresBinaries,
  type EmbeddedPostgresOptions,
  type EmbeddedStatus,
} from './embedded/postgres.js'
export {parseDuration, formatDuration} from './duration.js'
export {
  Priority,
  DEFAULT_MAX_ATTEMPTS,
  BULK_FLAG,
  flagsForPriority,
  isBulkPriority,
  priorityBand,
} from './jobs/priority.js'
export {
  captureExhausted,
  countUncaptured,
  type CaptureOptions,
  type CaptureResult,
  type UncapturedSummary,
} from './dlq/capture.js'
export {
  WorkerRunner,
  requiredPoolSize,
  type WorkerRunnerOptions,
  type WorkerHandle,
  type WorkerSummary,
} from './worker/runner.js'
export {
  resolveWorkerConfig,
  planPools,
  WORKER_DEFAULTS,
  type WorkerConfig,
  type WorkerConfigInput,
  type PoolPlan,
} from './worker/config.js'
export {PermanentError, isPermanentError} from './worker/permanent-error.js'
export {loadTasks, loadCrontab, type TaskSource, type LoadedTasks} from './worker/tasks.js'
export {createWorkerMetrics, type WorkerMetrics} from './worker/metrics.js'
export {serveMetrics, type MetricsServer} from './worker/metrics-server.js'
export type {WorkerEvent, JobRef} from './worker/events.js'
export {BACKFILL_VERSION} from './version.js'
export {
  BackfillClient,
  type BackfillClientOptions,
  type EnqueueOutcome,
  type EnqueueManyOptions,
  type EnqueueManyResult,
  type RemoveJobOutcome,
} from './client/client.js'
export type {Job} from './client/job.js'
export {
  JOB_KEY_MODES,
  MAX_JOB_KEY_LENGTH,
  MAX_QUEUE_LENGTH,
  MAX_TASK_LENGTH,
  PRIORITY_NAMES,
  parsePayloadJson,
  parsePriority,
  parseRunAt,
  prepareJob,
  type JobInput,
  type JobKeyMode,
  type JobSpec,
  type PreparedJob,
} from './client/spec.js'
export {
  RetryAttempts,
  enqueueBulk,
  enqueueBulkWithRetries,
  enqueueCritical,
  enqueueEmergency,
  enqueueFast,
  enqueueFastWithRetries,
  enqueueSerial,
  serialFor,
} from './client/helpers.js'
export {
  enqueueNdjson,
  validateNdjson,
  parseNdjsonLine,
  MAX_LINE_BYTES,
  type NdjsonDefaults,
  type NdjsonOptions,
  type NdjsonProgress,
  type NdjsonResult,
  type SkippedLine,
} from './client/ndjson.js'
export {
  listLocks,
  type ListLocksOptions,
  type LockEntry,
  type LockListing,
  type LockOwner,
  type WorkerSeen,
} from './locks/list.js'
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
export {schemaStatus, type Finding, type SchemaStatus} from './health/doctor.js'
export {captureNow, type CaptureRunOptions, type CaptureRunResult} from './dlq/capture-run.js'
export {
  listDlq,
  showDlqEntry,
  type DlqEntry,
  type DlqEvent,
  type ListOptions,
  type ListResult,
  type ShowResult,
} from './dlq/entries.js'
export {dlqStats, type DlqStats, type FailureGroup, type StatsOptions} from './dlq/stats.js'
export {
  retryDlq,
  type DefaultQueueMode,
  type KeyConflictMode,
  type RetryOptions,
  type RetryResult,
} from './dlq/retry.js'
export {purgeDlq, type PurgeOptions, type PurgeResult} from './dlq/purge.js'
export {previewSelection, type SelectionPreview} from './dlq/preview.js'
export {dlqHistory, type HistoryOptions, type HistoryRun, type Actor} from './dlq/audit.js'
export {buildSelector, isEmptySelector, type DlqSelector, type SelectorInput} from './dlq/selector.js'
export {fingerprint, normalizeErrorMessage, type Fingerprint} from './dlq/fingerprint.js'
