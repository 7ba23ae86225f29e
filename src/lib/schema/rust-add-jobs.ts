import type {Database} from '../db.js'
import {functionFingerprints} from '../sql/status.js'
import type {SchemaInspection} from './inspect.js'

/**
 * A schema Node migrated first (ledger row 19 = graphile-worker 0.17's breaking marker) and
 * Rust used later: the Rust migrator sees 19 as done and never applies its own migration
 * 19, which rewrites add_jobs to take a per-key advisory lock (the "add_jobs key race" fix
 * of graphile_worker 0.11.3) and add_job to raise GWNOR. Nothing in either migrator will
 * ever apply it, so an operator has to.
 */
export const RUST_ADD_JOBS_MESSAGE =
  "Rust workers use this schema, but add_jobs is still graphile-worker (Node)'s: the Rust port's migration 19 (per-key advisory locks in add_jobs, its fix for concurrent add_jobs racing on one job key) was never applied, because Node's migration 19 was recorded first and the Rust migrator counts it as done"

export const RUST_ADD_JOBS_ACTION =
  "apply graphile_worker_rs's crates/graphile-worker-migrations/src/sql/m000019.sql (graphile_worker >= 0.11.3) to this schema by hand, in one transaction with its schema placeholder replaced: it only replaces add_job and add_jobs (same signatures, the bodies a Rust-built schema has); leave the migrations ledger as it is"

/** Whether the schema shows the gap: Node's 19, Node's add_jobs body, and Rust at work here. */
export async function rustAddJobsFixMissing(
  db: Database,
  inspection: SchemaInspection,
  rustSeen = inspection.graphile.rustWorkersTable,
): Promise<boolean> {
  const row19 = inspection.graphile.migrations.find((m) => m.id === 19)
  if (!rustSeen || !row19?.breaking) return false
  const fingerprints = await db.rows(functionFingerprints, [db.schema])
  const addJobs = fingerprints.find((f) => f.name === 'add_jobs')
  return addJobs !== undefined && !addJobs.advisory_lock
}
