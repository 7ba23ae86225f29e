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
export {captureNow, type CaptureRunOptions, type CaptureRunResult} from './dlq/capture-run.js'
export {listDlq, showDlqEntry, type DlqEntry, type DlqEvent, type ListOptions, type ListResult, type ShowResult} from './dlq/entries.js'
export {dlqStats, type DlqStats, type FailureGroup, type StatsOptions} from './dlq/stats.js'
export {retryDlq, type DefaultQueueMode, type KeyConflictMode, type RetryOptions, type RetryResult} from './dlq/retry.js'
export {purgeDlq, type PurgeOptions, type PurgeResult} from './dlq/purge.js'
export {previewSelection, type SelectionPreview} from './dlq/preview.js'
export {dlqHistory, type HistoryOptions, type HistoryRun, type Actor} from './dlq/audit.js'
export {buildSelector, isEmptySelector, type DlqSelector, type SelectorInput} from './dlq/selector.js'
export {fingerprint, normalizeErrorMessage, type Fingerprint} from './dlq/fingerprint.js'
