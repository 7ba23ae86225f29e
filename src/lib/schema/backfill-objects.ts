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
  /** Triggers on backfill_dlq: name → pg_trigger.tgenabled ('O' fires, 'D' disabled, 'R'/'A' replica/always). */
  readonly dlqTriggers: ReadonlyMap<string, string>
  /** Names of functions in the schema. */
  readonly functions: ReadonlySet<string>
  /**
   * The counts' SECURITY DEFINER trigger function refuses other tables and PUBLIC may not
   * execute it (schema 5's did neither: a role could attach it to its own table and rewrite the counts).
   */
  readonly countsFunctionSecure: boolean
}

export interface BackfillObject {
  readonly kind: 'schema' | 'table' | 'column' | 'index' | 'function' | 'row' | 'trigger'
  readonly name: string
  readonly present: (catalog: BackfillCatalog) => boolean
  readonly ensureSql: (quotedSchema: string, schema: string) => string
  /** Performance only: migrate/init-dlq create it, but its absence never blocks a command. */
  readonly advisory?: boolean
}

/** Bumped whenever an object is added; stored in backfill_meta. */
export const BACKFILL_SCHEMA_VERSION = 6

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

export const FINGERPRINT_INDEX = 'idx_backfill_dlq_fingerprint_seen'
/** Schema 4's index, which FINGERPRINT_INDEX replaces. */
export const REPLACED_FINGERPRINT_INDEX = 'idx_backfill_dlq_fingerprint'
export const GROUP_COUNTS_TABLE = 'backfill_dlq_group_counts'
export const GROUP_COUNTS_FUNCTION = 'backfill_dlq_group_counts_sync'
/** The triggers keeping backfill_dlq_group_counts: one per event (transition tables allow one event each). */
export const GROUP_COUNTS_TRIGGERS = [
  'backfill_dlq_group_counts_insert',
  'backfill_dlq_group_counts_update',
  'backfill_dlq_group_counts_delete',
  'backfill_dlq_group_counts_truncate',
] as const

/** The counts are exact only while every trigger fires ('O': origin and local sessions, 'A': always). */
function groupCountTriggersEnabled(catalog: BackfillCatalog): boolean {
  return GROUP_COUNTS_TRIGGERS.every((name) => ['O', 'A'].includes(catalog.dlqTriggers.get(name) ?? ''))
}

function groupCountsPresent(c: BackfillCatalog): boolean {
  return (
    c.relations.has(GROUP_COUNTS_TABLE) &&
    c.functions.has(GROUP_COUNTS_FUNCTION) &&
    c.countsFunctionSecure &&
    groupCountTriggersEnabled(c)
  )
}

/** What the counts count: the entries aggregateFingerprinted groups by their stored fingerprint. */
export const COUNTED = (alias: string): string =>
  `${alias}.error_fingerprint is not null and ${alias}.error_fingerprint_at = ${alias}.failed_at`

/**
 * The counts table, its trigger function and triggers, and a fresh count, all under a lock
 * that stops writers between the count and the triggers (SHARE ROW EXCLUSIVE: readers go on).
 * Run whenever anything is missing or disabled, so rerunning migrate/init-dlq repairs the
 * counts too. Statement-level triggers over transition tables: a batch of 2,000 rows costs one
 * grouped upsert. The function is SECURITY DEFINER with a fixed search_path, so a role allowed
 * to write backfill_dlq (the Rust crate's) needs no grant on the counts table; as it writes
 * the counts with its owner's rights, it refuses to run for any other table and PUBLIC may not
 * execute it (triggers fire whoever writes: EXECUTE is checked when a trigger is created).
 */
function groupCountsSql(q: string): string {
  const t = `${q}.${GROUP_COUNTS_TABLE}`
  const lit = (name: string): string => `'${`${q}.${name}`.replace(/'/g, "''")}'`
  const key = 'task_identifier, queue_name, error_fingerprint'
  const delta = (rows: string, sign: string): string =>
    `select r.task_identifier::text, r.queue_name::text, r.error_fingerprint, ${sign} as n from ${rows} r where ${COUNTED('r')}`
  const upsert = (sources: string): string => `    insert into ${t} as c (${key}, entries)
    select ${key}, sum(n) from (${sources}) d
    group by ${key} having sum(n) <> 0
    order by ${key}
    on conflict (${key}) do update set entries = c.entries + excluded.entries;`
  // Rows that reached 0, among the groups this statement took from (locked by the upsert above).
  const dropEmpty = `    delete from ${t} c using (select distinct r.task_identifier::text as task_identifier, r.queue_name::text as queue_name, r.error_fingerprint
                               from old_rows r where ${COUNTED('r')}) o
    where c.task_identifier = o.task_identifier and c.queue_name = o.queue_name
      and c.error_fingerprint = o.error_fingerprint and c.entries = 0;`
  return `lock table ${q}.backfill_dlq in share row exclusive mode;
create table if not exists ${t} (
  task_identifier text not null,
  queue_name text not null,
  error_fingerprint text not null,
  entries bigint not null,
  primary key (${key})
);
create or replace function ${q}.${GROUP_COUNTS_FUNCTION}() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $backfill$
begin
  -- Attached to another table (its owner's rights would let it rewrite the counts): refuse.
  if tg_relid is distinct from to_regclass(${lit('backfill_dlq')}) then
    raise exception '% keeps the counts of % only, not of %', tg_name, ${lit('backfill_dlq')}, tg_relid::regclass
      using errcode = 'insufficient_privilege';
  end if;
  -- Dropped by hand: let writes through (migrate/init-dlq recreate and recount it).
  if to_regclass(${lit(GROUP_COUNTS_TABLE)}) is null then return null; end if;
  if tg_op = 'INSERT' then
${upsert(delta('new_rows', '1'))}
  elsif tg_op = 'UPDATE' then
${upsert(`${delta('new_rows', '1')} union all ${delta('old_rows', '-1')}`)}
${dropEmpty}
  elsif tg_op = 'DELETE' then
${upsert(delta('old_rows', '-1'))}
${dropEmpty}
  elsif tg_op = 'TRUNCATE' then
    delete from ${t};
  end if;
  return null;
end
$backfill$;
revoke all on function ${q}.${GROUP_COUNTS_FUNCTION}() from public;
drop trigger if exists ${GROUP_COUNTS_TRIGGERS[0]} on ${q}.backfill_dlq;
drop trigger if exists ${GROUP_COUNTS_TRIGGERS[1]} on ${q}.backfill_dlq;
drop trigger if exists ${GROUP_COUNTS_TRIGGERS[2]} on ${q}.backfill_dlq;
drop trigger if exists ${GROUP_COUNTS_TRIGGERS[3]} on ${q}.backfill_dlq;
create trigger ${GROUP_COUNTS_TRIGGERS[0]} after insert on ${q}.backfill_dlq
  referencing new table as new_rows for each statement execute function ${q}.${GROUP_COUNTS_FUNCTION}();
create trigger ${GROUP_COUNTS_TRIGGERS[1]} after update on ${q}.backfill_dlq
  referencing old table as old_rows new table as new_rows for each statement execute function ${q}.${GROUP_COUNTS_FUNCTION}();
create trigger ${GROUP_COUNTS_TRIGGERS[2]} after delete on ${q}.backfill_dlq
  referencing old table as old_rows for each statement execute function ${q}.${GROUP_COUNTS_FUNCTION}();
create trigger ${GROUP_COUNTS_TRIGGERS[3]} after truncate on ${q}.backfill_dlq
  for each statement execute function ${q}.${GROUP_COUNTS_FUNCTION}();
delete from ${t};
insert into ${t} (${key}, entries)
select d.task_identifier::text, d.queue_name::text, d.error_fingerprint, count(*)
from ${q}.backfill_dlq d where ${COUNTED('d')}
group by 1, 2, 3 order by 1, 2, 3;\n`
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
  // `dlq stats` at scale: each failure group's first and last entry (and a scan of the
  // groups, for filtered selections) from this index alone: one probe each way per group.
  // Replaces schema 4's idx_backfill_dlq_fingerprint (same columns, failed_at and id as keys),
  // dropped whenever it exists: a schema-4 worker starting during a rolling deploy recreates it.
  {
    kind: 'index',
    name: FINGERPRINT_INDEX,
    advisory: true,
    present: (c) => c.relations.has(FINGERPRINT_INDEX) && !c.relations.has(REPLACED_FINGERPRINT_INDEX),
    ensureSql: (q) =>
      `create index if not exists ${FINGERPRINT_INDEX} on ${q}.backfill_dlq (task_identifier, queue_name, error_fingerprint, failed_at, id) include (error_fingerprint_at) where error_fingerprint is not null;
drop index if exists ${q}.${REPLACED_FINGERPRINT_INDEX};\n`,
  },
  {
    ...index(
      'idx_backfill_dlq_unfingerprinted',
      (q) =>
        `index if not exists idx_backfill_dlq_unfingerprinted on ${q}.backfill_dlq (id) where ${unfingerprintedSql()}`,
    ),
    advisory: true,
  },
  // Entries per failure group, kept by triggers on backfill_dlq whoever writes it: `dlq stats`
  // reads the counts instead of counting 1M entries. After the unfingerprinted index (same spelling).
  {
    kind: 'trigger',
    name: GROUP_COUNTS_TABLE,
    advisory: true,
    present: groupCountsPresent,
    ensureSql: groupCountsSql,
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
