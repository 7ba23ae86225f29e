import {statement} from './statement.js'

/**
 * Catalog facts about one schema: relations, backfill_* columns, functions, and which of
 * graphile's tables hide their rows from the current role. graphile-worker enables
 * row-level security on its _private_* tables and defines no policy, so a role that
 * neither owns them (or is a member of the owner) nor bypasses RLS reads zero rows
 * whatever it was GRANTed; a permissive SELECT policy for the role counts as access.
 * Read-only.
 */
export const inspectCatalog = statement({
  id: 'schema.inspect_catalog',
  params: ['text'],
  columns: {
    schema_exists: 'bool',
    relations: '_text',
    columns: 'json',
    functions: '_text',
    dlq_triggers: 'json',
    counts_function_secure: 'bool',
    row_hidden: '_text',
    tables_owner: 'text?',
    role_name: 'text',
  },
  sql: () => `select
  exists (select 1 from pg_namespace where nspname = $1::text) as schema_exists,
  array(select c.relname::text from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = $1::text order by 1) as relations,
  coalesce((select json_agg(json_build_object('table', c.relname, 'column', a.attname,
                                              'type', format_type(a.atttypid, a.atttypmod)) order by c.relname, a.attnum)
            from pg_attribute a
            join pg_class c on c.oid = a.attrelid
            join pg_namespace n on n.oid = c.relnamespace
            where n.nspname = $1::text and c.relkind in ('r', 'p')
              and (c.relname like 'backfill\\_%' or c.relname = 'migrations')
              and a.attnum > 0 and not a.attisdropped), '[]'::json) as columns,
  array(select distinct p.proname::text from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = $1::text order by 1) as functions,
  coalesce((select json_object_agg(t.tgname, t.tgenabled::text)
            from pg_trigger t join pg_class c on c.oid = t.tgrelid join pg_namespace n on n.oid = c.relnamespace
            where n.nspname = $1::text and c.relname = 'backfill_dlq' and not t.tgisinternal), '{}'::json) as dlq_triggers,
  coalesce((select not has_function_privilege('public', p.oid, 'EXECUTE') and p.prosrc like '%tg_relid%'
            from pg_proc p join pg_namespace n on n.oid = p.pronamespace
            where n.nspname = $1::text and p.proname = 'backfill_dlq_group_counts_sync' and p.pronargs = 0), false) as counts_function_secure,
  array(select c.relname::text from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = $1::text and c.relkind in ('r', 'p') and c.relname like '\\_private\\_%'
          and c.relrowsecurity and row_security_active(c.oid)
          and not exists (select 1 from pg_policy p
                          where p.polrelid = c.oid and p.polpermissive and p.polcmd in ('r', '*')
                            and (0 = any(p.polroles)
                                 or exists (select 1 from unnest(p.polroles) r where r <> 0 and pg_has_role(r, 'USAGE'))))
        order by 1) as row_hidden,
  (select pg_get_userbyid(c.relowner)::text from pg_class c join pg_namespace n on n.oid = c.relnamespace
   where n.nspname = $1::text and c.relname = '_private_jobs') as tables_owner,
  current_user::text as role_name`,
})

/** graphile-worker's migration ledger (Node ≥ 0.16 and Rust both have the breaking column). */
export const migrationRows = statement({
  id: 'schema.migration_rows',
  params: [],
  columns: {id: 'int4', breaking: 'bool', ts: 'timestamptz'},
  sql: (s) => `select id, breaking, ts from ${s}.migrations order by id`,
})

/** The ledger as Node ≤ 0.15 and the archimedes crates wrote it (no breaking column). */
export const legacyMigrationRows = statement({
  id: 'schema.legacy_migration_rows',
  params: [],
  columns: {id: 'int4', breaking: 'bool', ts: 'timestamptz'},
  sql: (s) => `select id, false as breaking, ts from ${s}.migrations order by id`,
  prepare: false,
})

/** Serialises schema installers (ours) across processes; released on unlock or disconnect. */
export const advisoryLock = statement({
  id: 'schema.advisory_lock',
  params: ['text'],
  columns: {locked: 'void'},
  sql: () => `select pg_advisory_lock(hashtextextended($1::text, 0)) as locked`,
})

export const advisoryUnlock = statement({
  id: 'schema.advisory_unlock',
  params: ['text'],
  columns: {unlocked: 'bool'},
  sql: () => `select pg_advisory_unlock(hashtextextended($1::text, 0)) as unlocked`,
})

/** Duplicate job keys that would block the crate's unique index on a table made from its SQL file. */
export const duplicateDlqJobKeys = statement({
  id: 'schema.duplicate_dlq_job_keys',
  params: [],
  columns: {job_key: 'text', count: 'int4'},
  sql: (s) => `select job_key::text, count(*)::int as count from ${s}.backfill_dlq
where job_key is not null group by job_key having count(*) > 1 order by count(*) desc, job_key limit 5`,
  prepare: false,
})

export const backfillMeta = statement({
  id: 'schema.backfill_meta',
  params: [],
  columns: {key: 'text', value: 'text', updated_at: 'timestamptz'},
  sql: (s) => `select key, value, updated_at from ${s}.backfill_meta order by key`,
})

/** The database's clock (timestamps compared with failed_at must come from the same clock). */
export const databaseNow = statement({
  id: 'schema.database_now',
  params: [],
  columns: {now: 'timestamptz'},
  sql: () => `select clock_timestamp() as now`,
})

/**
 * Lock holders with the Rust graphile_worker's worker id (graphile_worker_<hex>), newest lock
 * first: on a schema still at revision 18 they are Rust workers of graphile_worker <= 0.11.2
 * (a newer one applies its own migration 19 when it starts).
 */
export const rustLockOwners = statement({
  id: 'schema.rust_lock_owners',
  params: [],
  columns: {locked_by: 'text', locked_at: 'timestamptz'},
  sql: (s) => `select o.locked_by, max(o.locked_at) as locked_at from (
  select locked_by, locked_at from ${s}._private_jobs where locked_at is not null and locked_by like 'graphile\\_worker\\_%'
  union all
  select locked_by, locked_at from ${s}._private_job_queues where locked_at is not null and locked_by like 'graphile\\_worker\\_%'
) o
group by o.locked_by
order by 2 desc
limit 5`,
})
