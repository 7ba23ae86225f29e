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
