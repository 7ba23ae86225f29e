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
