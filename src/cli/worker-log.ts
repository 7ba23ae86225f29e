import type {ChalkInstance} from 'chalk'

import {formatDuration} from '../lib/duration.js'
import type {WorkerEvent} from '../lib/worker/events.js'
import {terminalSafe} from './terminal-safe.js'

export type LogLevel = 'debug' | 'info' | 'warn' | 'error'
const ORDER: Record<LogLevel, number> = {debug: 0, info: 1, warn: 2, error: 3}

export function levelOf(event: WorkerEvent): LogLevel {
  switch (event.type) {
    case 'job:start':
      return 'debug'
    case 'job:failure':
      return event.outcome === 'retry' ? 'warn' : 'error'
    case 'error':
      return 'error'
    case 'log':
      return event.level === 'warning' ? 'warn' : event.level
    default:
      return 'info'
  }
}

export function shouldLog(event: WorkerEvent, threshold: LogLevel): boolean {
  return ORDER[levelOf(event)] >= ORDER[threshold]
}

/** One NDJSON object per event: stable keys for log pipelines. */
export function formatJson(event: WorkerEvent, now = new Date()): string {
  const {type, ...rest} = event
  return JSON.stringify({time: now.toISOString(), level: levelOf(event), event: type, ...rest})
}

/**
 * One human line per event. Task names, errors and messages come from jobs and tasks: every
 * string field is made terminal-safe (control characters shown as escapes, lines kept) first.
 */
export function formatText(event: WorkerEvent, color: ChalkInstance, now = new Date()): string {
  event = safeStrings(event)
  const level = levelOf(event)
  const tag = {
    debug: color.dim('debug'),
    info: color.cyan('info '),
    warn: color.yellow('warn '),
    error: color.red('error'),
  }[level]
  return `${color.dim(now.toISOString())} ${tag} ${describeEvent(event, color, now)}`
}

function safeStrings<T extends object>(value: T): T {
  const copy: Record<string, unknown> = {...(value as Record<string, unknown>)}
  for (const [key, field] of Object.entries(copy)) {
    if (typeof field === 'string') copy[key] = terminalSafe(field, {multiline: true})
    else if (Array.isArray(field))
      copy[key] = field.map((item: unknown) =>
        typeof item === 'string'
          ? terminalSafe(item)
          : item !== null && typeof item === 'object'
            ? safeStrings(item as object)
            : item,
      )
    else if (field !== null && typeof field === 'object' && !(field instanceof Date))
      copy[key] = Object.fromEntries(
        Object.entries(field as object).map(([k, v]) => [terminalSafe(k), typeof v === 'string' ? terminalSafe(v) : v]),
      )
  }
  return copy as T
}

function describeEvent(event: WorkerEvent, color: ChalkInstance, now: Date): string {
  switch (event.type) {
    case 'worker:start': {
      const pools = event.pools
        .map(
          (p) =>
            `${p.role} ${p.poolId} (concurrency ${p.concurrency}${p.localQueueSize > 0 ? (p.adaptivePrefetch ? `, adaptive prefetch ≤ ${p.localQueueSize}` : `, local queue ${p.localQueueSize}`) : ''}${p.forbiddenFlags ? `, skips ${p.forbiddenFlags.join(',')}` : ''})`,
        )
        .join('; ')
      return `worker ${event.once ? 'running once' : 'started'}: schema ${event.schema} on ${event.database}; tasks: ${event.tasks.join(', ')}; pools: ${pools}; DLQ capture ${event.dlq ? 'on' : 'off'}`
    }
    case 'job:start':
      return `${event.task}#${event.jobId} started (attempt ${event.attempt}/${event.maxAttempts}, ${event.pool})`
    case 'job:success':
      return `${event.task}#${event.jobId} ${color.green('completed')} in ${formatDuration(event.durationMs)} (attempt ${event.attempt}/${event.maxAttempts})`
    case 'job:failure': {
      const what = {
        retry: 'failed',
        exhausted: 'failed, attempts exhausted → DLQ',
        permanent: 'failed permanently → DLQ',
      }[event.outcome]
      // The next run is graphile's backoff after the failure (seconds, growing per attempt).
      const next =
        event.outcome === 'retry' && event.retryInMs !== undefined
          ? `, will retry in ${formatDuration(event.retryInMs)} (at ${new Date(now.getTime() + event.retryInMs).toISOString()})`
          : event.outcome === 'retry'
            ? ', will retry'
            : ''
      return `${event.task}#${event.jobId} ${color.red(what)} after ${formatDuration(event.durationMs)}${next} (attempt ${event.attempt}/${event.maxAttempts}): ${event.error}`
    }
    case 'dlq:capture':
      return `moved ${event.captured} exhausted job(s) to the DLQ in ${formatDuration(event.durationMs)} (${event.reason}): ${Object.entries(
        event.byTask,
      )
        .map(([t, n]) => `${t} ×${n}`)
        .join(', ')}`
    case 'locks:cleanup':
      return `lock cleanup (${event.reason}): released ${event.jobLocks} job lock(s), ${event.queueLocks} queue lock(s)`
    case 'worker:stopping':
      return `${event.force ? 'aborting running jobs' : 'stopping: finishing running jobs'} (${event.reason})`
    case 'worker:stop':
      return `worker stopped in ${formatDuration(event.durationMs)}${event.forced ? ' (jobs were aborted)' : ''}; locks released on exit: ${event.releasedJobLocks} job, ${event.releasedQueueLocks} queue; still locked by this worker: ${event.lockedAfter ?? `unknown (could not check: ${event.lockCheckError ?? 'no answer'})`}`
    case 'error':
      return `${event.where}: ${event.error}`
    case 'log':
      return event.message
  }
}
