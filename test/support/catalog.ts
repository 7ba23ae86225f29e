import {sql} from './db.js'

/**
 * A comparable snapshot of one schema's catalog: relations, columns, constraints,
 * indexes, functions (with a hash of their bodies), types, views, triggers, and the
 * graphile-worker migration ledger rows.
 */
export async function catalogSnapshot(url: string, schema: string): Promise<Record<string, string[]>> {
  const q = async (text: string): Promise<string[]> => (await sql<{x: string}>(text, [schema], url)).map((r) => r.x)
  return {
    relations: await q(
      `select c.relname || ':' || c.relkind::text || ':' || c.relrowsecurity::text as x from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = $1 order by 1`,
    ),
    columns:
      await q(`select c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || case when a.attnotnull then ' not null' else '' end || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '') || case when a.attgenerated <> '' then ' generated' else '' end as x
      from pg_attribute a join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
      left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
      where n.nspname = $1 and a.attnum > 0 and not a.attisdropped and c.relkind in ('r','v','p','c') order by 1`),
    constraints: await q(
      `select conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(c.oid) as x from pg_constraint c join pg_namespace n on n.oid = c.connamespace where n.nspname = $1 order by 1`,
    ),
    indexes: await q(`select indexname || ' ' || indexdef as x from pg_indexes where schemaname = $1 order by 1`),
    functions: await q(
      `select p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ') ' || pg_get_function_result(p.oid) || ' ' || md5(p.prosrc) as x from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname = $1 order by 1`,
    ),
    types: await q(
      `select t.typname || ':' || t.typtype::text as x from pg_type t join pg_namespace n on n.oid = t.typnamespace where n.nspname = $1 and t.typtype in ('c','e','d') order by 1`,
    ),
    views: await q(`select viewname || ' ' || md5(definition) as x from pg_views where schemaname = $1 order by 1`),
    triggers: await q(
      `select tgrelid::regclass::text || ' ' || tgname as x from pg_trigger t join pg_class c on c.oid = t.tgrelid join pg_namespace n on n.oid = c.relnamespace where n.nspname = $1 and not t.tgisinternal order by 1`,
    ),
    migrations: (
      await sql<{x: string}>(`select id || ':' || breaking as x from "${schema}".migrations order by id`, [], url)
    ).map((r) => r.x),
  }
}
