import {UsageError} from './errors.js'

declare const schemaBrand: unique symbol
/** A schema name that passed validation; only these reach SQL text. */
export type SchemaName = string & {readonly [schemaBrand]: true}

export const DEFAULT_SCHEMA = 'graphile_worker'

// Lower case only: the Rust crate pastes schema names unquoted, so PostgreSQL folds
// them to lower case; a mixed-case name would address a different schema there.
const SCHEMA_PATTERN = /^[a-z_][a-z0-9_]*$/
const MAX_IDENTIFIER_BYTES = 63

/** Validates a schema name against PostgreSQL identifier rules (and our stricter subset). */
export function parseSchemaName(raw: string): SchemaName {
  const problem = schemaNameProblem(raw)
  if (problem) {
    throw new UsageError(`invalid schema name ${JSON.stringify(raw)}: ${problem}`, {
      code: 'E_INVALID_SCHEMA',
      suggestions: [
        'use lower-case letters, digits and underscores, starting with a letter or underscore, e.g. --schema graphile_worker',
      ],
    })
  }
  return raw as SchemaName
}

function schemaNameProblem(raw: string): string | undefined {
  if (raw.length === 0) return 'it is empty'
  if (Buffer.byteLength(raw, 'utf8') > MAX_IDENTIFIER_BYTES) return `it is longer than ${MAX_IDENTIFIER_BYTES} bytes`
  if (!SCHEMA_PATTERN.test(raw)) {
    return 'only lower-case letters, digits and underscores are allowed, and it must not start with a digit'
  }
  if (raw.startsWith('pg_')) return 'names starting with "pg_" are reserved by PostgreSQL'
  if (raw === 'information_schema') return 'it is a system schema'
  return undefined
}

/** Double-quotes an identifier for SQL text (embedded quotes doubled). */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`
}
