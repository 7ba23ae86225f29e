import {Flags} from '@oclif/core'
import type {ChalkInstance} from 'chalk'

import {DbCommand} from '../cli/base-command.js'
import {duration} from '../cli/flags.js'
import {livenessFlags, livenessOptions} from '../cli/liveness-flags.js'
import {renderTable, type Column} from '../cli/output.js'
import {toBackfillError} from '../cli/errors.js'
import {scrubSecrets} from '../lib/connection.js'
import {formatDuration} from '../lib/duration.js'
import {quoteIdent} from '../lib/identifiers.js'
import {readyCountSql} from '../lib/sql/status.js'
import {sleep} from '../lib/sleep.js'
import {
  DEFAULT_QUEUE_LIMIT,
  queueStatus,
  type JobStateCounts,
  type StatusOptions,
  type StatusResult,
} from '../lib/health/status.js'

const DEFAULT_WATCH = '2s'
const DURATION_LIKE = /^(\d+(\.\d+)?(ms|s|m|h|d|w)?)+$/i

export default class Status extends DbCommand<typeof Status> {
  static override summary =
    'Show the queue: jobs per task and queue by state, the DLQ, locks by owner liveness, and workers.'
  static override description = `States: ready (runnable now), scheduled (run_at in the future: new jobs and retries in backoff), running (locked by a worker), retrying (ready or scheduled after at least one failure; part of those two), exhausted (out of attempts, not yet captured into the DLQ), and DLQ entries. Per task, and per queue: the parallel jobs first, then the busiest serial queues (--queues), the rest summed. Also the oldest ready job's wait, locks by owner liveness (see locks list), and the workers seen in the last hour.

--watch [interval] refreshes until Ctrl-C (default every 2s): in place on a terminal, as repeated blocks when piped, and as one JSON document per line with --json. Ctrl-C ends watching with exit 0 (a second Ctrl-C exits 130 at once), and so does a pipe whose reader has gone (status --watch | head -1).`

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --watch',
    '<%= config.bin %> <%= command.id %> --watch 10s --queues 50',
    '<%= config.bin %> <%= command.id %> --json | jq .totals',
    '<%= config.bin %> <%= command.id %> --ready-count-sql',
  ]

  static override flags = {
    watch: duration({
      defaultUnit: 's',
      minMs: 500,
      summary: 'Refresh every interval (default 2s; a bare number is seconds) until Ctrl-C.',
      helpValue: '[interval]',
    }),
    queues: Flags.integer({
      summary: 'Serial queues listed individually (the busiest first).',
      default: DEFAULT_QUEUE_LIMIT,
      min: 0,
    }),
    'ready-count-sql': Flags.boolean({
      summary:
        "Print the SQL that counts ready jobs (one number, for autoscalers such as KEDA's PostgreSQL trigger) and exit without connecting.",
      exclusive: ['watch'],
    }),
    ...livenessFlags,
  }

  override async init(): Promise<void> {
    // oclif has no optional flag values: a bare --watch gets the default interval.
    const at = this.argv.indexOf('--watch')
    const next = this.argv[at + 1]
    if (at >= 0 && (next === undefined || !DURATION_LIKE.test(next)))
      this.argv.splice(at, 1, `--watch=${DEFAULT_WATCH}`)
    await super.init()
  }

  async run(): Promise<StatusResult | {sql: string} | undefined> {
    if (this.flags['ready-count-sql']) {
      const sql = readyCountSql(quoteIdent(this.schema))
      this.out.result(sql)
      return {sql}
    }
    const db = this.db()
    const options = {...livenessOptions(this.flags), queueLimit: this.flags.queues}
    if (this.flags.watch === undefined) {
      const result = await queueStatus(db, options)
      this.out.result(this.frame(result, this.out.color))
      return result
    }
    return this.watch(this.flags.watch, options)
  }

  private async watch(intervalMs: number, options: StatusOptions): Promise<undefined> {
    this.handlesInterrupt = true
    const db = this.db()
    const json = this.jsonEnabled()
    const inPlace = !json && process.stdout.isTTY === true
    const signal = this.interrupt.signal
    // The reader went away (`status --watch | head -1`): the next write fails with EPIPE. Stop
    // watching and exit 0, as a pipeline expects; the listener stays so later write errors are handled.
    const onStdoutError = (error: NodeJS.ErrnoException): void => {
      if (error.code === 'EPIPE' && !signal.aborted) this.interrupt.abort(new Error('EPIPE'))
    }
    process.stdout.on('error', onStdoutError)
    let first = true
    while (!signal.aborted) {
      const header = `every ${formatDuration(intervalMs)} · ${new Date().toISOString().replace('T', ' ').slice(0, 19)} UTC · Ctrl-C to stop`
      try {
        const result = await queueStatus(db, options)
        const frame = (): string => this.out.safeOut(this.frame(result, this.out.color))
        if (json) process.stdout.write(`${JSON.stringify(result)}\n`)
        else if (inPlace) process.stdout.write(`\u001B[H\u001B[2J${this.out.color.dim(header)}\n${frame()}\n`)
        else process.stdout.write(`--- ${header}\n${frame()}\n`)
      } catch (error) {
        // The first round reports like any command; later rounds keep watching through blips.
        if (first) throw error
        const message = scrubSecrets(toBackfillError(error).message, this.secrets)
        if (json) process.stdout.write(`${JSON.stringify({error: {message, at: new Date()}})}\n`)
        else process.stderr.write(this.out.safeErr(`${header}: ${message}\n`))
      }
      first = false
      await sleep(intervalMs, signal)
    }
    return undefined
  }

  private frame(r: StatusResult, color: ChalkInstance): string {
    const n = (x: number): string => x.toLocaleString('en-US')
    const lines: string[] = []
    const t = r.totals
    lines.push(
      `schema ${r.schema} · ${n(t.jobs)} jobs · ready ${n(t.ready)} · scheduled ${n(t.scheduled)} · running ${n(t.running)} · retrying ${n(t.retrying)} · exhausted ${n(t.exhausted)} · DLQ ${t.dlq === null ? 'no table' : n(t.dlq)} · oldest ready ${formatDuration(t.oldestReadyAgeMs)}`,
    )
    const stateColumns = <R extends JobStateCounts & {dlq: number}>(): Column<R>[] => [
      {header: 'READY', get: (x) => n(x.ready), align: 'right'},
      {header: 'SCHEDULED', get: (x) => n(x.scheduled), align: 'right'},
      {header: 'RUNNING', get: (x) => n(x.running), align: 'right'},
      {header: 'RETRYING', get: (x) => n(x.retrying), align: 'right'},
      {header: 'EXHAUSTED', get: (x) => n(x.exhausted), align: 'right'},
      {header: 'DLQ', get: (x) => n(x.dlq), align: 'right'},
      {header: 'OLDEST READY', get: (x) => formatDuration(x.oldestReadyAgeMs), align: 'right'},
    ]
    if (r.tasks.length > 0) {
      lines.push(
        '',
        renderTable(
          r.tasks,
          [{header: 'TASK', get: (x) => x.task, max: 48}, ...stateColumns<(typeof r.tasks)[number]>()],
          color,
        ),
      )
    }
    type QueueRow =
      | StatusResult['queues'][number]
      | (NonNullable<StatusResult['otherQueues']> & {queue: string; lockedBy: null; lockLiveness: null})
    const queueRows: QueueRow[] = [...r.queues]
    if (r.otherQueues)
      queueRows.push({
        ...r.otherQueues,
        queue: `(${n(r.otherQueues.queues)} more queues)`,
        lockedBy: null,
        lockLiveness: null,
      })
    if (queueRows.length > 0) {
      lines.push(
        '',
        renderTable(
          queueRows,
          [
            {header: 'QUEUE', get: (x) => x.queue ?? '(parallel jobs)', max: 48},
            ...stateColumns<QueueRow>(),
            {header: 'LOCKED BY', get: (x) => (x.lockedBy ? `${x.lockedBy} (${x.lockLiveness ?? '?'})` : '')},
          ],
          color,
        ),
      )
    }
    const l = r.locks
    lines.push(
      '',
      `locks: jobs ${l.live.jobs} live, ${l.dead.jobs > 0 ? color.red(`${l.dead.jobs} dead`) : '0 dead'}, ${l.unknown.jobs} unknown (${l.stale.jobs} stale) · queues ${l.live.queues} live, ${l.dead.queues > 0 ? color.red(`${l.dead.queues} dead`) : '0 dead'}, ${l.unknown.queues} unknown (${l.stale.queues} stale)`,
    )
    if (r.workers.length > 0) {
      lines.push(
        '',
        renderTable(
          r.workers,
          [
            {header: 'WORKER', get: (w) => w.id},
            {header: 'RUNTIME', get: (w) => w.runtime},
            {header: 'HOST', get: (w) => (w.hostname ? `${w.hostname}:${w.pid}` : '')},
            {header: 'STATE', get: (w) => w.state},
            {header: 'HEARTBEAT', get: (w) => `${formatDuration(w.heartbeatAgeMs)} ago`, align: 'right'},
            {header: 'JOBS', get: (w) => String(w.jobLocks), align: 'right'},
            {header: 'PREFETCH', get: (w) => (w.prefetchSize === null ? '' : String(w.prefetchSize)), align: 'right'},
          ],
          color,
        ),
      )
    } else {
      lines.push('workers: none seen in the last hour (backfill workers and Rust workers with heartbeats show here)')
    }
    return lines.join('\n')
  }
}
