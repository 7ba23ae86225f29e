import {statement} from './statement.js'

/**
 * Whether the console's database role can change jobs: a standby, a read-only transaction
 * default, or a role without UPDATE/DELETE on graphile's jobs table disables the actions.
 */
export const consoleCapabilities = statement({
  id: 'console.capabilities',
  params: [],
  columns: {recovery: 'bool', read_only: 'bool', can_write: 'bool?', role: 'text'},
  sql: (s) => `select pg_is_in_recovery() as recovery,
  current_setting('transaction_read_only') = 'on' or current_setting('default_transaction_read_only') = 'on' as read_only,
  case when to_regclass('${s.replaceAll("'", "''")}._private_jobs') is null then null
       else has_table_privilege(to_regclass('${s.replaceAll("'", "''")}._private_jobs'), 'UPDATE')
        and has_table_privilege(to_regclass('${s.replaceAll("'", "''")}._private_jobs'), 'DELETE') end as can_write,
  current_user::text as role`,
  prepare: true,
})

/**
 * The job id sequence's last value, for the throughput estimate: exact and O(1), and unlike
 * max(id) it still counts ids whose jobs completed (were deleted). Null before the first job or
 * without the privilege to read it (a restricted console role still gets its overview).
 */
export const consoleJobIdHighWater = statement({
  id: 'console.job_id_high_water',
  params: [],
  columns: {last_id: 'int8?'},
  sql: (s) => `select case when seq is not null and has_sequence_privilege(seq, 'SELECT,USAGE')
    then pg_sequence_last_value(seq) end as last_id
  from (select pg_get_serial_sequence('${s.replaceAll("'", "''")}._private_jobs', 'id')::regclass as seq) q`,
  prepare: true,
})
