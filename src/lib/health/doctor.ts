import type {Database} from '../db.js'
import {listLocks, type LockListing} from '../locks/list.js'
import {ownerFamily} from '../locks/owners.js'
import {backfillMeta} from '../sql/schema.js'
import {functionFingerprints, recentJobLocks} from '../sql/status.js'
import {inspectSchema, pending19BlocksOldRust, type SchemaInspection} from '../schema/inspect.js'
import {
  FINGERPRINT_INDEX,
  GROUP_COUNTS_FUNCTION,
  GROUP_COUNTS_TABLE,
  GROUP_COUNTS_TRIGGERS,
  REPLACED_FINGERPRINT_INDEX,
} from '../schema/backfill-objects.js'
import {RUST_ADD_JOBS_ACTION, RUST_ADD_JOBS_MESSAGE} from '../schema/rust-add-jobs.js'

/**
 * `schema status`: what is installed, who installed it, what is pending, and which of the
 * Node/Rust interop hazards (graphile-worker-rs.md) apply to this database. Read-only.
 */

export type Severity = 'error' | 'warning' | 'info'

export interface Finding {
  severity: Severity
  /** Stable id, e.g. pending-migrations, rust-sweeper-vs-node. */
  code: string
  message: string
  /** What to do, when something can be done. */
  action?: string
}

export interface MigrationRun {
  /** First and last migration id applied in one run (rows whose ts are within a minute). */
  from: number
  to: number
  at: Date
}

export interface SchemaStatus {
  schema: string
  database: string
  schemaExists: boolean
  graphile: {
    installed: boolean
    revision: number | null
    latestBreaking: number | null
    bundledVersion: string
    highestKnown: number
    pending: number[]
    pendingBreaking: number[]
    unknown: number[]
    breakingColumn: boolean
    runs: MigrationRun[]
  }
  migration19: {applied: boolean; by: 'node' | 'rust' | 'unclear' | null; evidence: string[]}
  rust: {migration20: boolean; workersTable: boolean; workers: number; liveWorkers: number}
  backfill: {
    dlq: boolean
    dlqUniqueIndex: boolean
    missing: string[]
    schemaVersion: string | null
  }
  locks: {
    /** Jobs locked within the last 4 hours: graphile's migration 11 refuses to run while any exists, and breaking upgrades need workers stopped. */
    recentJobLocks: number
    recentOwners: {owner: string | null; jobs: number; newestLockedAt: Date}[]
    dead: number
    nodeLocks: number
    nodeLocksOlderThan5m: number
  }
  findings: Finding[]
  /** Some finding is an error: the CLI exits 4. */
  actionNeeded: boolean
}

const BREAKING_UPGRADE_WINDOW_MS = 4 * 3_600_000
const RUST_SWEEP_THRESHOLD_MS = 5 * 60_000

export async function schemaStatus(db: Database): Promise<SchemaStatus> {
  // Lock and worker counts read graphile's tables: refuse a role row security blinds.
  const inspection = await inspectSchema(db, {requireRowAccess: true})
  const g = inspection.graphile
  const findings: Finding[] = []
  const flag = db.schema === 'graphile_worker' ? '' : ` --schema ${db.schema}`
  const relations = inspection.backfill.catalog.relations

  let fingerprints: {name: string; advisory_lock: boolean; gwnor: boolean}[] = []
  let listing: LockListing | undefined
  let recent: {locked_by: string | null; jobs: number; newest_locked_at: Date}[] = []
  let schemaVersion: string | null = null
  if (g.installed) {
    ;[fingerprints, listing, recent] = await Promise.all([
      db.rows(functionFingerprints, [db.schema]),
      listLocks(db, {inspection}),
      db.rows(recentJobLocks, [BREAKING_UPGRADE_WINDOW_MS]),
    ])
  }
  if (relations.has('backfill_meta')) {
    schemaVersion = (await db.rows(backfillMeta, [])).find((r) => r.key === 'schema_version')?.value ?? null
  }

  const pendingBreaking = g.pending.filter((id) => BREAKING.has(id))
  const migration19 = judgeMigration19(inspection, fingerprints)
  const rustWorkers = listing?.workers.filter((w) => w.runtime === 'rust') ?? []
  const nodeLocks = listing?.locks.filter((l) => ownerFamily(l.owner) === 'node') ?? []
  const recentJobs = recent.reduce((n, r) => n + r.jobs, 0)

  // --- graphile-worker's schema
  if (!inspection.schemaExists) {
    findings.push({
      severity: 'error',
      code: 'schema-missing',
      message: `schema "${db.schema}" does not exist in database "${db.target.database}"`,
      action: `backfill migrate${flag} (or check ${db.labels.schema ?? 'the schema name'} and ${db.labels.connection ?? 'the connection settings'})`,
    })
  } else if (!g.installed) {
    findings.push({
      severity: 'error',
      code: 'graphile-missing',
      message: `schema "${db.schema}" exists but graphile-worker is not installed in it`,
      action: `backfill migrate${flag}`,
    })
  }
  if (g.foreignLedger !== null) {
    findings.push({
      severity: 'error',
      code: 'foreign-ledger',
      message: `"${db.schema}".migrations is another tool's table, not graphile-worker's ledger (${g.foreignLedger}): backfill migrate refuses to install here`,
      action: 'install the job queue in a schema of its own: backfill migrate --schema graphile_worker (the default)',
    })
  } else if (g.migrationsTable && !g.breakingColumn) {
    findings.push({
      severity: 'error',
      code: 'no-breaking-column',
      message:
        'the migrations table has no "breaking" column (written by graphile-worker ≤ 0.15 or the archimedes crates): the Rust graphile_worker fails on it (42703)',
      action: `backfill migrate${flag} (graphile-worker ≥ 0.16 adds the column)`,
    })
  }
  if (g.latestBreaking !== null && g.latestBreaking > g.highestKnown) {
    findings.push({
      severity: 'error',
      code: 'schema-too-new',
      message: `breaking migration ${g.latestBreaking} is newer than the bundled graphile-worker ${g.packageVersion} knows (${g.highestKnown}): Node workers of this version refuse to start (exit 57)`,
      action: 'upgrade backfill and every Node worker',
    })
  }
  if (g.revision !== null && g.revision >= 11 && g.revision <= 15 && !g.functions.includes('permanently_fail_jobs')) {
    findings.push({
      severity: 'error',
      code: 'rust-revision-gap',
      message: `revision ${g.revision} was built by the Rust graphile_worker without permanently_fail_jobs: graphile-worker's migration 16 fails on it (42883), so Node cannot upgrade it`,
      action: 'let a Rust graphile_worker (≥ 0.4) migrate it past revision 16 first',
    })
  } else if (g.installed && g.pending.length > 0 && !(g.latestBreaking !== null && g.latestBreaking > g.highestKnown)) {
    const breaking =
      pendingBreaking.length > 0 ? ` (breaking: ${pendingBreaking.join(', ')}; stop every worker first)` : ''
    findings.push({
      severity: 'error',
      code: 'pending-migrations',
      message: `graphile-worker migrations ${rangeText(g.pending)} are pending${breaking}`,
      action: `backfill migrate${flag}`,
    })
    const rustOwners = [
      ...new Set(listing?.locks.filter((l) => ownerFamily(l.owner) === 'rust').map((l) => l.owner as string) ?? []),
    ]
    if (pending19BlocksOldRust(g) && rustOwners.length > 0) {
      // Same test as migrate's refusal (E_RUST_WORKERS_TOO_OLD).
      findings.push({
        severity: 'error',
        code: 'rust-workers-block-19',
        message: `Rust graphile_worker workers hold locks here (${rustOwners.slice(0, 5).join(', ')}) on a schema at revision ${g.revision}: they are graphile_worker ≤ 0.11.2, which refuses to start after graphile-worker's breaking migration 19, so backfill migrate refuses to apply it`,
        action:
          'upgrade the Rust services to graphile_worker ≥ 0.11.3 (it applies its own, non-breaking migration 19), or, if those workers are gone, backfill locks clean',
      })
    }
    if (pendingBreaking.length > 0 && recentJobs > 0) {
      findings.push({
        severity: 'error',
        code: 'locked-jobs-block-migration',
        message: `${recentJobs} jobs were locked in the last 4 hours${g.pending.includes(11) ? ': graphile-worker migration 11 refuses to run while any exists' : ''}; a breaking migration needs every worker stopped`,
        action:
          'stop all workers, then backfill locks clean --force (after checking they are gone), then backfill migrate',
      })
    }
  }
  if (g.unknown.length > 0 && !(g.latestBreaking !== null && g.latestBreaking > g.highestKnown)) {
    findings.push({
      severity: 'info',
      code: 'unknown-migrations',
      message: `migration${g.unknown.length > 1 ? 's' : ''} ${g.unknown.join(', ')} unknown to graphile-worker ${g.packageVersion} (non-breaking${g.rustWorkersTable ? ": the Rust graphile_worker's worker recovery" : ''}); Node workers warn about it at every start and carry on`,
    })
  }

  // --- migration 19: who applied it
  if (migration19.by === 'rust') {
    findings.push({
      severity: 'info',
      code: 'migration-19-rust',
      message:
        'migration 19 was applied by the Rust graphile_worker (non-breaking; add_jobs has its per-key advisory-lock fix): graphile-worker 0.16 Node workers are not blocked by the 0.17 pool-centric marker and only warn',
    })
  } else if (migration19.by === 'node') {
    findings.push({
      severity: 'info',
      code: 'migration-19-node',
      message:
        "migration 19 is graphile-worker 0.17's breaking marker: a Rust graphile_worker ≤ 0.11.2 (e.g. an older backfill crate) refuses to start on this schema; ≥ 0.11.3 is fine",
    })
    // Rust at work here (its migration 20, its lock owners or heartbeats) on Node's add_jobs.
    const rustSeen =
      g.rustWorkersTable ||
      rustWorkers.length > 0 ||
      (listing?.locks.some((l) => ownerFamily(l.owner) === 'rust') ?? false)
    const addJobs = fingerprints.find((f) => f.name === 'add_jobs')
    if (rustSeen && addJobs && !addJobs.advisory_lock) {
      findings.push({
        severity: 'warning',
        code: 'rust-add-jobs-missing',
        message: RUST_ADD_JOBS_MESSAGE,
        action: RUST_ADD_JOBS_ACTION,
      })
    }
  } else if (migration19.by === 'unclear') {
    findings.push({
      severity: 'warning',
      code: 'migration-19-mixed',
      message: `migration 19's ledger row and the add_job/add_jobs bodies disagree (${migration19.evidence.join('; ')}): Node and Rust probably migrated at the same time`,
      action:
        "compare add_job/add_jobs with the runtime you want; re-create them from that runtime's migration if needed",
    })
  }

  // --- Rust worker recovery vs Node pools
  const liveRust = rustWorkers.filter((w) => w.state === 'live').length
  const olderThanSweep = nodeLocks.filter((l) => l.ageMs > RUST_SWEEP_THRESHOLD_MS).length
  if (g.rustWorkersTable) {
    if (nodeLocks.length > 0 && (liveRust > 0 || rustWorkers.length > 0)) {
      findings.push({
        severity: 'warning',
        code: 'rust-sweeper-vs-node',
        message: `Rust workers with recovery enabled heartbeat here (${liveRust} live) while Node pools hold ${nodeLocks.length} locks: the Rust sweeper treats every lock owner without a _private_workers row as dead once its lock is 5 min old and unlocks all of its jobs (${olderThanSweep} Node locks are past that now), so long Node jobs run twice and serial queues break`,
        action:
          'disable Rust worker recovery (or its sweeper) while Node or backfill workers share this schema, or keep Node jobs under 5 min',
      })
    } else {
      findings.push({
        severity: 'info',
        code: 'rust-recovery-installed',
        message: `the Rust graphile_worker's migration 20 is installed (_private_workers, ${rustWorkers.length} workers seen in the last hour): if Rust workers enable recovery, their sweeper unlocks Node pools' jobs locked more than 5 min`,
      })
    }
  }

  // --- locks
  const deadLocks = listing?.locks.filter((l) => l.liveness === 'dead').length ?? 0
  if (deadLocks > 0) {
    const owners = [...new Set(listing?.locks.filter((l) => l.liveness === 'dead').map((l) => l.owner ?? '(no owner)'))]
    findings.push({
      severity: 'warning',
      code: 'dead-locks',
      message: `${deadLocks} locks are held by dead workers (${owners.join(', ')})`,
      action: `backfill locks clean${flag}`,
    })
  }
  if (recentJobs > 0 && pendingBreaking.length === 0) {
    findings.push({
      severity: 'info',
      code: 'recent-locks',
      message: `${recentJobs} jobs were locked in the last 4 hours: a future breaking graphile-worker upgrade needs every worker stopped first`,
    })
  }

  // --- backfill's objects
  const dlqUniqueIndex = relations.has('idx_backfill_dlq_job_key_unique')
  if (g.installed) {
    if (!inspection.backfill.dlqExists) {
      findings.push({
        severity: 'error',
        code: 'dlq-missing',
        message: `the dead letter queue table "${db.schema}".backfill_dlq does not exist: exhausted jobs cannot be captured`,
        action: `backfill init-dlq${flag}`,
      })
    } else if (!dlqUniqueIndex) {
      findings.push({
        severity: 'error',
        code: 'dlq-unique-index-missing',
        message:
          "backfill_dlq has no unique index on job_key (a table made from the crate's docs/dlq_schema.sql): captures of keyed jobs fail",
        action: `backfill init-dlq${flag}`,
      })
    }
    const missing = inspection.backfill.missing.filter(
      (m) => m !== 'backfill_dlq' && m !== 'idx_backfill_dlq_job_key_unique' && m !== 'schema',
    )
    const widen = missing.filter((m) => m.endsWith(' as text'))
    const required = missing.filter((m) => !widen.includes(m) && inspection.backfill.missingRequired.includes(m))
    const advisory = missing.filter((m) => !widen.includes(m) && !required.includes(m) && m !== GROUP_COUNTS_TABLE)
    if (required.length > 0 && inspection.backfill.dlqExists) {
      findings.push({
        severity: 'error',
        code: 'backfill-objects-missing',
        message: `backfill objects are missing: ${required.join(', ')}`,
        action: `backfill migrate${flag}`,
      })
    }
    if (widen.length > 0) {
      findings.push({
        severity: 'warning',
        code: 'dlq-varchar',
        message: `backfill_dlq has the Rust crate's VARCHAR columns (${widen.map((w) => w.replace(/^backfill_dlq\.| as text$/g, '')).join(', ')}): longer queue names, task names or job keys cannot be captured`,
        action: `backfill init-dlq${flag} (widens them to text in place)`,
      })
    }
    if (missing.includes(GROUP_COUNTS_TABLE) && inspection.backfill.dlqExists) {
      const {catalog} = inspection.backfill
      const absent = GROUP_COUNTS_TRIGGERS.filter((name) => !catalog.dlqTriggers.has(name))
      const off = GROUP_COUNTS_TRIGGERS.filter((name) => catalog.dlqTriggers.get(name) === 'D')
      const replica = GROUP_COUNTS_TRIGGERS.filter((name) => catalog.dlqTriggers.get(name) === 'R')
      const what = [
        catalog.relations.has(GROUP_COUNTS_TABLE) ? '' : `the table ${GROUP_COUNTS_TABLE} is missing`,
        absent.length > 0 ? `triggers missing: ${absent.join(', ')}` : '',
        off.length > 0 ? `triggers disabled: ${off.join(', ')}` : '',
        replica.length > 0 ? `triggers firing on replicas only: ${replica.join(', ')}` : '',
      ].filter(Boolean)
      if (what.length === 0 && catalog.functions.has(GROUP_COUNTS_FUNCTION))
        findings.push({
          severity: 'warning',
          code: 'dlq-group-counts-function',
          message: `the trigger function ${GROUP_COUNTS_FUNCTION} is schema 5's: it runs with its owner's rights, any role may execute it and it does not check its table, so a role can attach it to a table of its own and rewrite the counts`,
          action: `backfill init-dlq${flag} (recreates it and recounts)`,
        })
      else
        findings.push({
          severity: 'warning',
          code: 'dlq-group-counts',
          message: `DLQ failure-group counts are not kept (${what.join('; ') || `function ${GROUP_COUNTS_FUNCTION} missing`}): dlq stats and status count every entry instead`,
          action: `backfill init-dlq${flag} (recreates the triggers and recounts; re-enabled by hand instead, run backfill init-dlq${flag} --recount afterwards: writes made meanwhile were not counted)`,
        })
    }
    const {relations: rel} = inspection.backfill.catalog
    if (advisory.includes(FINGERPRINT_INDEX) && rel.has(FINGERPRINT_INDEX) && rel.has(REPLACED_FINGERPRINT_INDEX)) {
      advisory.splice(advisory.indexOf(FINGERPRINT_INDEX), 1)
      findings.push({
        severity: 'warning',
        code: 'replaced-index',
        message: `schema 4's index ${REPLACED_FINGERPRINT_INDEX} is back beside ${FINGERPRINT_INDEX} (an older backfill recreated it): every DLQ write maintains both`,
        action: `backfill migrate${flag} (drops it), once no older backfill runs against this schema`,
      })
    }
    if (advisory.length > 0) {
      findings.push({
        severity: 'warning',
        code: 'indexes-missing',
        message: `performance indexes are missing: ${advisory.join(', ')} (locks and capture scan the whole jobs table)`,
        action: `backfill migrate${flag}`,
      })
    }
  }

  return {
    schema: db.schema,
    database: db.target.database,
    schemaExists: inspection.schemaExists,
    graphile: {
      installed: g.installed,
      revision: g.revision,
      latestBreaking: g.latestBreaking,
      bundledVersion: g.packageVersion,
      highestKnown: g.highestKnown,
      pending: g.pending,
      pendingBreaking,
      unknown: g.unknown,
      breakingColumn: g.breakingColumn,
      runs: migrationRuns(g.migrations),
    },
    migration19,
    rust: {
      migration20: g.migrations.some((m) => m.id === 20),
      workersTable: g.rustWorkersTable,
      workers: rustWorkers.length,
      liveWorkers: liveRust,
    },
    backfill: {dlq: inspection.backfill.dlqExists, dlqUniqueIndex, missing: inspection.backfill.missing, schemaVersion},
    locks: {
      recentJobLocks: recentJobs,
      recentOwners: recent.map((r) => ({owner: r.locked_by, jobs: r.jobs, newestLockedAt: r.newest_locked_at})),
      dead: deadLocks,
      nodeLocks: nodeLocks.length,
      nodeLocksOlderThan5m: olderThanSweep,
    },
    findings,
    actionNeeded: findings.some((f) => f.severity === 'error'),
  }
}

/** graphile-worker's breaking migrations (Node's set; Rust's lacks 19). */
const BREAKING = new Set([1, 3, 11, 13, 14, 16, 19])

function judgeMigration19(
  inspection: SchemaInspection,
  fingerprints: {name: string; advisory_lock: boolean; gwnor: boolean}[],
): SchemaStatus['migration19'] {
  const row = inspection.graphile.migrations.find((m) => m.id === 19)
  if (!row) return {applied: false, by: null, evidence: []}
  const addJobs = fingerprints.find((f) => f.name === 'add_jobs')
  const addJob = fingerprints.find((f) => f.name === 'add_job')
  const rustBodies = Boolean(addJobs?.advisory_lock) && Boolean(addJob?.gwnor)
  const evidence = [
    `ledger row 19 recorded ${row.breaking ? 'breaking (Node)' : 'non-breaking (Rust)'}`,
    `add_jobs ${addJobs?.advisory_lock ? 'takes' : 'does not take'} per-key advisory locks`,
    `add_job ${addJob?.gwnor ? 'raises' : 'does not raise'} GWNOR`,
  ]
  // A schema Node built and Rust migrated later keeps Node's bodies (Rust skips its 19): still Node.
  if (row.breaking && !addJobs?.advisory_lock && !addJob?.gwnor) return {applied: true, by: 'node', evidence}
  if (!row.breaking && rustBodies) return {applied: true, by: 'rust', evidence}
  return {applied: true, by: 'unclear', evidence}
}

function migrationRuns(migrations: SchemaInspection['graphile']['migrations']): MigrationRun[] {
  const runs: MigrationRun[] = []
  for (const m of migrations) {
    const last = runs[runs.length - 1]
    if (last && m.id === last.to + 1 && Math.abs(m.ts.getTime() - last.at.getTime()) < 60_000) last.to = m.id
    else runs.push({from: m.id, to: m.id, at: m.ts})
  }
  return runs
}

function rangeText(ids: number[]): string {
  return ids.length > 2 && ids.every((id, i) => i === 0 || id === (ids[i - 1] ?? 0) + 1)
    ? `${ids[0]}..${ids[ids.length - 1]}`
    : ids.join(', ')
}
