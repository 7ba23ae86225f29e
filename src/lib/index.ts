/**
 * backfill's core library: no CLI concerns (no oclif, no console output, no process exits),
 * so applications can embed it.
 */
export * from './errors.js'
export {DEFAULT_SCHEMA, parseSchemaName, quoteIdent, type SchemaName} from './identifiers.js'
export {redactUrl, resolveConnection, scrubSecrets, targetFromUrl, type ConnectionTarget} from './connection.js'
export {
  createPool,
  Database,
  opsSessionLimits,
  WORKER_SESSION_LIMITS,
  type DatabaseOptions,
  type PoolOptions,
  type SessionLimits,
  type SettingLabels,
} from './db.js'
export {mapPgError} from './pg-errors.js'
export {
  migrate,
  initDlq,
  type MigrateOptions,
  type MigrateResult,
  type InitDlqOptions,
  type InitDlqResult,
} from './schema/migrate.js'
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
export {serveMetrics, type MetricsServer, type ServeMetricsOptions} from './worker/metrics-server.js'
export {
  EventLoopWatch,
  workerProbes,
  type HealthProbes,
  type ProbeResult,
  type WorkerHealthState,
} from './worker/health.js'
export {
  collectQueueMetrics,
  QueueMetricsRegistry,
  METRIC_STATES,
  OTHER_LABEL,
  PARALLEL_LABEL,
  type QueueMetricsOptions,
  type QueueMetricsSnapshot,
} from './metrics/queue-metrics.js'
export {QueueMetricsExporter, type QueueMetricsExporterOptions} from './metrics/exporter.js'
export {AdvisoryLeader, type LeaderOptions} from './metrics/leader.js'
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
export {recountGroupCounts, type GroupCountsRecount} from './dlq/group-counts.js'
export {
  retryDlq,
  type DefaultQueueMode,
  type KeyConflictMode,
  type RetryOptions,
  type RetryResult,
} from './dlq/retry.js'
export {purgeDlq, type PurgeOptions, type PurgeResult} from './dlq/purge.js'
export {previewSelection, type SelectionPreview} from './dlq/preview.js'
export {
  AUDIT_ACTIONS,
  dlqHistory,
  type AuditAction,
  type HistoryOptions,
  type HistoryRun,
  type Actor,
} from './dlq/audit.js'
export {buildSelector, isEmptySelector, type DlqSelector, type SelectorInput} from './dlq/selector.js'
export {fingerprint, normalizeErrorMessage, type Fingerprint} from './dlq/fingerprint.js'
export {
  buildCommonSelector,
  parseTimeAgo,
  DEFAULT_LABELS,
  type CommonSelector,
  type CommonSelectorInput,
  type SelectorLabels,
  type BuildOptions,
} from './selector.js'
// Live-queue operations (jobs list/show/run-now/reschedule/remove/fail; the console calls these).
export {
  JOB_STATES,
  WAITING_STATES,
  STATE_DESCRIPTIONS,
  deriveState,
  isJobState,
  type JobState,
  type StateFacts,
} from './jobs/states.js'
export {
  buildJobSelector,
  describeJobSelector,
  isEmptyJobSelector,
  parseJobId,
  parsePriorityRange,
  type JobSelector,
  type JobSelectorInput,
  type JobSelectorLabels,
  type JobTimeField,
  type PriorityRange,
} from './jobs/selector.js'
export type {JobEntry, JobOwner} from './jobs/entries.js'
export {
  listJobs,
  JOB_SORTS,
  DEFAULT_JOB_PAGE_SIZE,
  MAX_JOB_PAGE_SIZE,
  type JobSort,
  type ListJobsOptions,
  type ListJobsResult,
} from './jobs/list.js'
export {
  showJob,
  explainState,
  type ShowJobOptions,
  type ShowJobResult,
  type SerialQueueInfo,
  type JobDlqHistory,
} from './jobs/show.js'
export {
  JOB_ACTIONS,
  DEFAULT_JOB_ACTION_BATCH,
  selectJobs,
  performJobAction,
  requireJobActions,
  removeJobs,
  failJobs,
  runJobsNow,
  rescheduleJobs,
  auditAction,
  type JobAction,
  type JobActionSpec,
  type RemoveSpec,
  type FailSpec,
  type RunNowSpec,
  type RescheduleSpec,
  type SelectJobsOptions,
  type JobSelection,
  type TaskCount,
  type PerformOptions,
  type JobActionOptions,
  type JobActionResult,
  type JobActionProgress,
  type ActedJob,
  type SkippedJob,
  type SkipReason,
} from './jobs/actions.js'
// Web console and admin HTTP API (backfill ui; embeddable handler).
export * from './console/index.js'
