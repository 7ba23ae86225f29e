/**
 * Checked SQL: every statement of the library is declared with its parameter types and
 * result columns. TypeScript derives the parameter tuple and the row type from those
 * declarations, and test/integration/sql-describe.test.ts asks PostgreSQL to describe
 * (Parse + Describe, like SQLx) each statement against a freshly migrated schema, so a
 * renamed column or a changed type fails CI instead of production.
 */

/** PostgreSQL type names as pg_type.typname reports them; a trailing ? means nullable. */
export type PgScalar =
  | 'bool'
  | 'int2'
  | 'int4'
  | 'int8'
  | 'float8'
  | 'numeric'
  | 'text'
  | 'varchar'
  | 'json'
  | 'jsonb'
  | 'timestamptz'
  | 'interval'
  | 'uuid'
  | 'oid'
  | 'void'
  | '_text'
  | '_int8'
  | '_int4'
  | '_int2'
  | '_json'
  | '_timestamptz'
  | '_bool'

export type PgType = PgScalar | `${PgScalar}?`

type TsOf<T extends PgScalar> = T extends 'bool'
  ? boolean
  : T extends 'int2' | 'int4' | 'float8' | 'oid'
    ? number
    : T extends 'int8' | 'numeric'
      ? string // pg returns 64-bit and arbitrary precision numbers as strings
      : T extends 'text' | 'varchar' | 'uuid' | 'interval'
        ? string
        : T extends 'json' | 'jsonb' | '_json'
          ? unknown
          : T extends 'timestamptz'
            ? Date
            : T extends '_text' | '_int8'
              ? string[]
              : T extends '_int4' | '_int2'
                ? number[]
                : T extends '_timestamptz'
                  ? Date[]
                  : T extends '_bool'
                    ? boolean[]
                    : T extends 'void'
                      ? void
                      : never

export type TsType<T extends PgType> = T extends `${infer S extends PgScalar}?`
  ? TsOf<S> | null
  : T extends PgScalar
    ? TsOf<T>
    : never

export type ColumnSpec = Readonly<Record<string, PgType>>
export type ParamSpec = readonly PgType[]

export type RowOf<C extends ColumnSpec> = {-readonly [K in keyof C]: TsType<C[K]>}
export type ParamsOf<P extends ParamSpec> = {
  -readonly [I in keyof P]: P[I] extends PgType ? TsType<P[I]> | (P[I] extends `${string}?` ? undefined : never) : never
}

export interface Statement<P extends ParamSpec, C extends ColumnSpec> {
  /** Unique id, also the prefix of the prepared statement name. */
  readonly id: string
  readonly params: P
  readonly columns: C
  /** SQL text for one (already quoted) schema identifier. */
  readonly sql: (schema: string) => string
  /**
   * Use a named prepared statement (cached plan). Off for statements with optional
   * filters, whose best plan depends on which parameters are null.
   */
  readonly prepare: boolean
}

export function statement<const P extends ParamSpec, const C extends ColumnSpec>(definition: {
  id: string
  params: P
  columns: C
  sql: (schema: string) => string
  prepare?: boolean
}): Statement<P, C> {
  return {prepare: true, ...definition}
}

export type AnyStatement = Statement<ParamSpec, ColumnSpec>
