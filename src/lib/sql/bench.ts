import {statement} from './statement.js'

/** Marks a schema as created by `backfill bench`, so a rerun may reuse it and nothing else is. */
export const markBenchSchema = statement({
  id: 'bench.mark_schema',
  params: [],
  columns: {},
  sql: (s) => `insert into ${s}.backfill_meta (key, value) values ('bench', 'true') on conflict (key) do nothing`,
})

export const schemaHasWork = statement({
  id: 'bench.schema_has_work',
  params: [],
  columns: {has_jobs: 'bool'},
  sql: (s) => `select exists (select 1 from ${s}._private_jobs) as has_jobs`,
})

export const serverVersion = statement({
  id: 'bench.server_version',
  params: [],
  columns: {version: 'text'},
  sql: () => `select current_setting('server_version') as version`,
})

/** Leftover jobs of the benchmark's own throwaway schema (continuous mode). */
export const deleteBenchJobs = statement({
  id: 'bench.delete_jobs',
  params: [],
  columns: {},
  sql: (s) => `delete from ${s}._private_jobs where locked_at is null`,
})
