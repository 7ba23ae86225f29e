import {DbCommand} from '../../cli/base-command.js'
import {EXIT_CODES} from '../../lib/errors.js'
import {schemaStatus, type SchemaStatus} from '../../lib/health/doctor.js'

export default class SchemaStatusCommand extends DbCommand<typeof SchemaStatusCommand> {
  static override summary =
    'Schema doctor: revision, pending migrations, which runtime did what, Node/Rust hazards, DLQ objects.'
  static override description = `Reads the catalog only. Reports graphile-worker's installed revision against the bundled graphile-worker, pending migrations, who applied migration 19 (Node's breaking marker or the Rust port's add_jobs rewrite) and whether the Rust migration 20 (_private_workers) exists, the Node/Rust interop hazards that apply here (such as a Rust recovery sweeper next to Node pools holding locks), jobs locked recently enough to block a breaking migration, and whether backfill_dlq exists with its unique job_key index and backfill's other objects. Exit 0 when nothing needs doing, 4 when some finding is an error (action needed); warnings and notes do not change the exit code.`

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --schema app_jobs --json',
  ]

  async run(): Promise<SchemaStatus> {
    const status = await schemaStatus(this.db())
    this.render(status)
    if (status.actionNeeded) process.exitCode = EXIT_CODES.precondition
    return status
  }

  private render(s: SchemaStatus): void {
    const {out} = this
    const c = out.color
    const g = s.graphile
    const lines: string[] = []
    lines.push(`schema "${s.schema}" in database "${s.database}"`)
    if (!s.schemaExists) lines.push('  graphile-worker: schema does not exist')
    else if (!g.installed) lines.push('  graphile-worker: not installed')
    else {
      lines.push(
        `  graphile-worker: revision ${g.revision} (bundled graphile-worker ${g.bundledVersion} knows up to ${g.highestKnown})${g.pending.length > 0 ? `, pending ${g.pending.join(', ')}` : ', no pending migrations'}${g.unknown.length > 0 ? `, unknown ${g.unknown.join(', ')}` : ''}`,
      )
      if (g.runs.length > 0)
        lines.push(
          `  applied: ${g.runs.map((r) => `${r.from === r.to ? r.from : `${r.from}..${r.to}`} at ${r.at.toISOString().slice(0, 16).replace('T', ' ')}`).join(', ')}`,
        )
      lines.push(
        `  migration 19: ${s.migration19.applied ? `applied by ${s.migration19.by === 'unclear' ? 'an unclear mix of Node and Rust' : s.migration19.by === 'node' ? 'Node graphile-worker (breaking marker)' : 'the Rust graphile_worker'}` : 'not applied'}`,
      )
      lines.push(
        `  Rust migration 20: ${s.rust.migration20 || s.rust.workersTable ? `present (_private_workers: ${s.rust.workers} seen in the last hour, ${s.rust.liveWorkers} live)` : 'absent'}`,
      )
      lines.push(
        `  backfill: DLQ table ${s.backfill.dlq ? 'present' : 'missing'}${s.backfill.dlq ? `, unique job_key index ${s.backfill.dlqUniqueIndex ? 'present' : 'MISSING'}` : ''}${s.backfill.missing.length > 0 ? `, missing objects: ${s.backfill.missing.join(', ')}` : ', all objects present'}${s.backfill.schemaVersion ? ` (objects version ${s.backfill.schemaVersion})` : ''}`,
      )
      lines.push(
        `  locks: ${s.locks.recentJobLocks} jobs locked in the last 4 h, ${s.locks.dead} locks of dead workers`,
      )
    }
    out.result(lines.join('\n'))
    for (const f of s.findings) {
      const label =
        f.severity === 'error' ? c.red('error  ') : f.severity === 'warning' ? c.yellow('warning') : c.dim('note   ')
      out.result(`${label} ${f.message}${f.action ? `\n        → ${f.action}` : ''}`)
    }
    if (s.actionNeeded) out.info(`action needed (exit ${EXIT_CODES.precondition})`)
    else out.success(`schema "${s.schema}" needs no action`)
  }
}
