/**
 * The database objects backfill owns beside graphile-worker's tables. Each object has an
 * idempotent "ensure" statement and a presence test against the catalog, so `migrate`,
 * `init-dlq` and `schema print` share one definition, a Rust-created `backfill_dlq` is
 * completed rather than replaced, and a dry run can say exactly what is missing.
 */

/** What the catalog says about the schema's backfill_* relations. */
export interface BackfillCatalog {
  readonly schemaExists: boolean
  /** Names of tables, indexes and sequences in the schema. */
  readonly relations: ReadonlySet<string>
  /** "table.column" → formatted type, for backfill_* tables only. */
  readonly columns: ReadonlyMap<string, string>
}

export interface BackfillObject {
  readonly kind: 'schema' | 'table' | 'column' | 'index' | 'function' | 'row'
  readonly name: string
  readonly present: (catalog: BackfillCatalog) => boolean
  readonly ensureSql: (quotedSchema: string, schema: string) => string
  /** Performance only: migrate/init-dlq create it, but its absence never blocks a command. */
  readonly advisory?: boolean
}

/** Bumped whenever an object is added; stored in backfill_meta. */
export const BACKFILL_SCHEMA_VERSION = 4

/**
 * The Rust crate's 17 columns, in its order. TEXT where the crate used VARCHAR(n): graphile
 * allows job keys up to 512 and queue/task names up to 128 characters, so VARCHAR(100/200)
 * would make moving such a job fail.
 */
export const DLQ_COLUMNS: readonly {name: string; type: string; clause: string; addable: boolean}[] = [
  {name: 'id', type: 'bigint', clause: 'bigserial primary key', addable: false},
  {name: 'original_job_id', type: 'bigint', clause: 'bigint', addable: true},
  {name: 'task_identifier', type: 'text', clause: 'text not null', addable: false},
  {name: 'payload', type: 'jsonb', clause: 'jsonb not null', addable: false},
  {name: 'queue_name', type: 'text', clause: "text not null default 'default'", addable: true},
  {name: 'priority', type: 'integer', clause: 'integer not null default 0', addable: true},
  {name: 'job_key', type: 'text', clause: 'text', addable: true},
  {name: 'max_attempts', type: 'integer', clause: 'integer', addable: true},
  {name: 'failure_reason', type: 'text', clause: 'text not null', addable: false},
  {name: 'failure_count', type: 'integer', clause: 'integer not null default 1', addable: true},
  {name: 'last_error', type: 'jsonb', clause: 'jsonb', addable: true},
  {name: 'original_created_at', type: 'timestamp with time zone', clause: 'timestamptz', addable: true},
  {name: 'original_run_at', type: 'timestamp with time zone', clause: 'timestamptz', addable: true},
  {name: 'failed_at', type: 'timestamp with time zone', clause: 'timestamptz not null default now()', addable: true},
  {name: 'requeued_count', type: 'integer', clause: 'integer not null default 0', addable: true},
  {name: 'last_requeued_at', type: 'timestamp with time zone', clause: 'timestamptz', addable: true},
  {name: 'notes', type: 'text', clause: 'text', addable: true},
]

/**
 * Entries whose stored fingerprint is missing (written by the crate, or before schema 4) or
 * stale (last_error rewritten by the crate's upsert). Spelled exactly so in queries, so the
 * planner matches the partial index idx_backfill_dlq_unfingerprinted.
 */
export function unfingerprintedSql(alias?: string): string {
  const a = alias ? `${alias}.` : ''
  return `(${a}error_fingerprint is null or ${a}error_fingerprint_at is distinct from ${a}failed_at)`
}

/**
 * Ours, after the crate's (it names its columns on insert and reads by name, so extra columns
 * are invisible to it): each entry's failure-group fingerprint (dlq/fingerprint.ts), written
 * when we capture it, and the failed_at it was computed for. A writer that changes last_error
 * without them (the crate's upsert sets failed_at = now()) leaves a stale pair, which
 * `dlq stats` fingerprints from the error text again, like a row without one.
 */
export const DLQ_OWN_COLUMNS: readonly {name: string; clause: string}[] = [
  {name: 'error_fingerprint', clause: 'text'},
  {name: 'error_fingerprint_at', clause: 'timestamptz'},
]

/** Columns the Rust crate declares VARCHAR(n); we widen them to TEXT in place (no rewrite). */
const WIDENED_COLUMNS = ['task_identifier', 'queue_name', 'job_key'] as const

function table(name: string, ddl: (q: string) => string): BackfillObject {
  return {kind: 'table', name, present: (c) => c.relations.has(name), ensureSql: ddl}
}

/** A column added to an existing table (its create statement has it already). */
function column(tableName: string, name: string, clause: string): BackfillObject {
  return {
    kind: 'column',
    name: `${tableName}.${name}`,
    present: (c) => !c.relations.has(tableName) || c.columns.has(`${tableName}.${name}`),
    ensureSql: (q) => `alter table ${q}.${tableName} add column if not exists ${name} ${clause};\n`,
  }
}

function index(name: string, definition: (q: string) => string): BackfillObject {
  return {
    kind: 'index',
    name,
    present: (c) => c.relations.has(name),
    ensureSql: (q) => `create ${definition(q)};\n`,
  }
}

/**
 * A small partial index of ours on graphile-worker's _private_jobs (created only once that
 * table exists). graphile's own indexes cover available jobs only, so without these,
 * finding locked or exhausted jobs is a full scan of the jobs table.
 */
function jobsIndex(name: string, definition: string): BackfillObject {
  return {
    kind: 'index',
    name,
    advisory: true,
    present: (c) => c.relations.has(name) || !c.relations.has('_private_jobs'),
    ensureSql: (q) => `do $backfill$ begin
  if to_regclass('${q}._private_jobs') is not null then
    create index if not exists ${name} on ${q}._private_jobs ${definition};
  end if;
end $backfill$;\n`,
  }
}

export const BACKFILL_OBJECTS: readonly BackfillObject[] = [
  {
    kind: 'schema',
    name: 'schema',
    present: (c) => c.schemaExists,
    ensureSql: (q) => `create schema if not exists ${q};\n`,
  },
  table(
    'backfill_dlq',
    (q) =>
      `create table if not exists ${q}.backfill_dlq (\n${[...DLQ_COLUMNS, ...DLQ_OWN_COLUMNS].map((col) => `  ${col.name} ${col.clause}`).join(',\n')}\n);\n`,
  ),
  ...DLQ_COLUMNS.filter((col) => col.addable).map((col) => column('backfill_dlq', col.name, col.clause)),
  ...WIDENED_COLUMNS.map((column): BackfillObject => ({
    kind: 'column',
    name: `backfill_dlq.${column} as text`,
    present: (c) => {
      const type = c.columns.get(`backfill_dlq.${column}`)
      return type === undefined || !type.startsWith('character varying')
    },
    // varchar → text is binary compatible: PostgreSQL changes the catalog only.
    ensureSql: (q, schema) => `do $backfill$ begin
  if exists (select 1 from pg_attribute a join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
             where n.nspname = '${schema}' and c.relname = 'backfill_dlq' and a.attname = '${column}'
               and a.atttypid = 'varchar'::regtype) then
    alter table ${q}.backfill_dlq alter column ${column} type text;
  end if;
end $backfill$;\n`,
  })),
  // The crate's five indexes, same names; the unique partial index backs every ON CONFLICT (job_key) upsert.
  index(
    'idx_backfill_dlq_task_identifier',
    (q) => `index if not exists idx_backfill_dlq_task_identifier on ${q}.backfill_dlq (task_identifier)`,
  ),
  index(
    'idx_backfill_dlq_failed_at',
    (q) => `index if not exists idx_backfill_dlq_failed_at on ${q}.backfill_dlq (failed_at desc)`,
  ),
  index(
    'idx_backfill_dlq_queue_name',
    (q) => `index if not exists idx_backfill_dlq_queue_name on ${q}.backfill_dlq (queue_name)`,
  ),
  index(
    'idx_backfill_dlq_job_key',
    (q) => `index if not exists idx_backfill_dlq_job_key on ${q}.backfill_dlq (job_key) where job_key is not null`,
  ),
  index(
    'idx_backfill_dlq_job_key_unique',
    (q) =>
      `unique index if not exists idx_backfill_dlq_job_key_unique on ${q}.backfill_dlq (job_key) where job_key is not null`,
  ),
  // Ours: keyset pagination (newest first, id as tie-breaker) without a sort.
  index(
    'idx_backfill_dlq_failed_at_id',
    (q) => `index if not exists idx_backfill_dlq_failed_at_id on ${q}.backfill_dlq (failed_at desc, id desc)`,
  ),
  ...DLQ_OWN_COLUMNS.map((col) => column('backfill_dlq', col.name, col.clause)),
  // `dlq stats` at scale: groups counted from this index alone (index-only scan, no heap, no
  // error text), and the few rows whose fingerprint is missing or stale found without a scan.
  {
    ...index(
      'idx_backfill_dlq_fingerprint',
      (q) =>
        `index if not exists idx_backfill_dlq_fingerprint on ${q}.backfill_dlq (task_identifier, queue_name, error_fingerprint) include (failed_at, id, error_fingerprint_at) where error_fingerprint is not null`,
    ),
    advisory: true,
  },
  {
    ...index(
      'idx_backfill_dlq_unfingerprinted',
      (q) =>
        `index if not exists idx_backfill_dlq_unfingerprinted on ${q}.backfill_dlq (id) where ${unfingerprintedSql()}`,
    ),
    advisory: true,
  },
  // Retried jobs still in the jobs table, so a recapture carries the retry count, touch
  // count and notes forward (the crate's table has no room for them on the job itself).
  table(
    'backfill_dlq_retried_jobs',
    (q) => `create table if not exists ${q}.backfill_dlq_retried_jobs (
  job_id bigint primary key,
  case_id bigint not null,
  requeued_count integer not null,
  failure_count integer not null,
  notes text,
  retried_at timestamptz not null default now(),
  dlq_id bigint,
  audit_id bigint
);\n`,
  ),
  // The entry a retried job came from and the retry's audit row: the `retried` event is written
  // only if the job lands in the DLQ again (a retry of 5,000 entries writes no per-row events).
  column('backfill_dlq_retried_jobs', 'dlq_id', 'bigint'),
  column('backfill_dlq_retried_jobs', 'audit_id', 'bigint'),
  // History of DLQ entries across retries: case_id is the id of the first DLQ entry of a job's story.
  table(
    'backfill_dlq_events',
    (q) => `create table if not exists ${q}.backfill_dlq_events (
  id bigserial primary key,
  case_id bigint not null,
  dlq_id bigint,
  job_id bigint,
  event text not null,
  at timestamptz not null default now(),
  audit_id bigint,
  details jsonb
);
create index if not exists idx_backfill_dlq_events_case on ${q}.backfill_dlq_events (case_id, id);
create index if not exists idx_backfill_dlq_events_dlq on ${q}.backfill_dlq_events (dlq_id);\n`,
  ),
  // Who did what to the DLQ: every retry, purge and capture run.
  table(
    'backfill_dlq_audit',
    (q) => `create table if not exists ${q}.backfill_dlq_audit (
  id bigserial primary key,
  at timestamptz not null default now(),
  action text not null,
  os_user text,
  db_user text not null default current_user,
  hostname text,
  reason text,
  selection jsonb,
  count integer not null default 0,
  dlq_ids bigint[],
  job_ids bigint[],
  details jsonb
);
create index if not exists idx_backfill_dlq_audit_at on ${q}.backfill_dlq_audit (at desc);\n`,
  ),
  // Liveness of backfill workers: graphile's pool id (the locked_by value) with heartbeats.
  table(
    'backfill_workers',
    (q) => `create table if not exists ${q}.backfill_workers (
  pool_id text primary key,
  hostname text not null,
  pid integer not null,
  started_at timestamptz not null default now(),
  last_heartbeat_at timestamptz not null default now(),
  stopped_at timestamptz,
  version text,
  metadata jsonb
);
create index if not exists idx_backfill_workers_heartbeat on ${q}.backfill_workers (last_heartbeat_at);\n`,
  ),
  // Locks (locks list/clean, the worker's periodic cleanup): one entry per running job.
  jobsIndex('idx_backfill_jobs_locked', '(locked_at) where locked_at is not null'),
  // Exhausted jobs waiting for DLQ capture (capture, check --max-exhausted): normally empty.
  jobsIndex('idx_backfill_jobs_exhausted', '(id) where attempts >= max_attempts'),
  table(
    'backfill_meta',
    (q) => `create table if not exists ${q}.backfill_meta (
  key text primary key,
  value text not null,
  updated_at timestamptz not null default now()
);\n`,
  ),
]

/** The statement recording which version of our objects is installed (run after the objects). */
export function metaVersionSql(quotedSchema: string): string {
  return `insert into ${quotedSchema}.backfill_meta (key, value) values ('schema_version', '${BACKFILL_SCHEMA_VERSION}')
  on conflict (key) do update set value = excluded.value, updated_at = now()
  where ${quotedSchema}.backfill_meta.value::int < excluded.value::int;\n`
}

export function missingObjects(catalog: BackfillCatalog): BackfillObject[] {
  return BACKFILL_OBJECTS.filter((object) => !object.present(catalog))
}

/** Idempotent DDL creating every backfill object (what `schema print` emits). */
export function backfillDdl(quotedSchema: string, schema: string): string {
  return `begin;\n${BACKFILL_OBJECTS.map((o) => o.ensureSql(quotedSchema, schema)).join('')}${metaVersionSql(quotedSchema)}commit;\n`
}
