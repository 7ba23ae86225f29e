import {statement} from './statement.js'

/**
 * Enqueue goes through graphile-worker's own SQL functions (add_job, add_jobs, remove_job) so
 * its job_key semantics, queue/task bookkeeping and NOTIFY hold exactly; the private tables
 * are only read, to return task and queue names with the job.
 */

/** A job row as returned to callers: _private_jobs plus task and queue names. */
const jobSelect = (
  s: string,
  j: string,
  names = {task: 't.identifier', queue: 'q.queue_name'},
): string => `select ${j}.id, ${names.task}::text as task_identifier, ${names.queue}::text as queue_name,
       ${j}.payload, ${j}.priority, ${j}.run_at, ${j}.attempts, ${j}.max_attempts, ${j}.last_error,
       ${j}.created_at, ${j}.updated_at, ${j}.key, ${j}.locked_at, ${j}.locked_by, ${j}.revision, ${j}.flags
from`
const jobJoins = (s: string, j: string): string => `left join ${s}._private_tasks t on t.id = ${j}.task_id
left join ${s}._private_job_queues q on q.id = ${j}.job_queue_id`

// Every column is nullable: add_job and remove_job return a NULL composite (one row of
// nulls) when no job was written or found.
const jobColumns = {
  id: 'int8?',
  task_identifier: 'text?',
  queue_name: 'text?',
  payload: 'json?',
  priority: 'int2?',
  run_at: 'timestamptz?',
  attempts: 'int2?',
  max_attempts: 'int2?',
  last_error: 'text?',
  created_at: 'timestamptz?',
  updated_at: 'timestamptz?',
  key: 'text?',
  locked_at: 'timestamptz?',
  locked_by: 'text?',
  revision: 'int4?',
  flags: 'jsonb?',
} as const

/**
 * One job through graphile's add_job (named arguments, as graphile-worker's addJob). A row of
 * nulls means add_job wrote nothing: the keyed job was locked by a worker at that instant.
 * The statement's snapshot predates add_job's own inserts, so a task or queue that add_job
 * just created is not visible to the joins: the names then come from the arguments (a row
 * pointing at a task or queue that did not exist before this call must be ours).
 */
export const addJob = statement({
  id: 'jobs.add_job',
  params: ['text', 'json', 'text?', 'timestamptz?', 'int4', 'text?', 'int4', '_text?', 'text'],
  columns: jobColumns,
  sql: (
    s,
  ) => `${jobSelect(s, 'j', {task: 'coalesce(t.identifier, $1::text)', queue: 'case when j.job_queue_id is null then null else coalesce(q.queue_name, $3::text) end'})} ${s}.add_job(
  identifier => $1::text,
  payload => $2::json,
  queue_name => $3::text,
  run_at => $4::timestamptz,
  max_attempts => $5::int,
  job_key => $6::text,
  priority => $7::int,
  flags => $8::text[],
  job_key_mode => $9::text
) j
${jobJoins(s, 'j')}`,
})

/**
 * A batch through graphile's add_jobs (its batch insertion; json_populate_recordset over a JSON
 * array of job_spec objects, as graphile-worker's addJobs). Returns how many rows add_jobs wrote
 * and the keys among them: a keyed spec missing from `keys` met a job locked by a worker.
 */
export const addJobsCount = statement({
  id: 'jobs.add_jobs_count',
  params: ['json', 'bool'],
  columns: {count: 'int4', keys: '_text'},
  sql: (s) => `with added as (
  select key from ${s}.add_jobs(array(select json_populate_recordset(null::${s}.job_spec, $1::json)), $2::bool)
)
select count(*)::int as count, coalesce(array_agg(key) filter (where key is not null), '{}')::text[] as keys from added`,
})

/**
 * As addJobsCount, returning the written jobs with their task and queue ids (names of tasks
 * and queues add_jobs just created are invisible to this statement: see taskAndQueueNames).
 */
export const addJobsReturning = statement({
  id: 'jobs.add_jobs_returning',
  params: ['json', 'bool'],
  columns: {...jobColumns, task_id: 'int4?', job_queue_id: 'int4?'},
  sql: (
    s,
  ) => `select j.id, null::text as task_identifier, null::text as queue_name, j.payload, j.priority, j.run_at, j.attempts, j.max_attempts,
       j.last_error, j.created_at, j.updated_at, j.key, j.locked_at, j.locked_by, j.revision, j.flags, j.task_id, j.job_queue_id
from ${s}.add_jobs(array(select json_populate_recordset(null::${s}.job_spec, $1::json)), $2::bool) j`,
})

/** Task identifiers and queue names by id (read after add_jobs, in a later statement that sees them). */
export const taskAndQueueNames = statement({
  id: 'jobs.task_and_queue_names',
  params: ['_int4', '_int4'],
  columns: {kind: 'text', id: 'int4', name: 'text'},
  sql: (
    s,
  ) => `select 'task'::text as kind, id, identifier::text as name from ${s}._private_tasks where id = any($1::int[])
union all
select 'queue'::text as kind, id, queue_name::text as name from ${s}._private_job_queues where id = any($2::int[])`,
})

/**
 * graphile's remove_job: deletes the keyed job if unlocked; if a worker holds it, clears its key
 * and sets attempts = max_attempts so it is not retried. A row of nulls: no job had the key.
 */
export const removeJob = statement({
  id: 'jobs.remove_job',
  params: ['text'],
  columns: jobColumns,
  sql: (s) => `${jobSelect(s, 'j')} ${s}.remove_job($1::text) j
${jobJoins(s, 'j')}`,
})

/** One job by id (read-only). */
export const getJob = statement({
  id: 'jobs.get_job',
  params: ['int8'],
  columns: jobColumns,
  sql: (s) => `${jobSelect(s, 'j')} ${s}._private_jobs j
${jobJoins(s, 'j')}
where j.id = $1::bigint`,
})

/** One job by job key (read-only). */
export const getJobByKey = statement({
  id: 'jobs.get_job_by_key',
  params: ['text'],
  columns: jobColumns,
  sql: (s) => `${jobSelect(s, 'j')} ${s}._private_jobs j
${jobJoins(s, 'j')}
where j.key = $1::text`,
})
