import {randomUUID} from 'node:crypto'
import os from 'node:os'

import type {Database} from '../db.js'
import {dlqAuditHistory} from '../sql/dlq-actions.js'

/** Who is acting, as recorded beside the database role in backfill_dlq_audit. */
export interface Actor {
  osUser: string | null
  hostname: string | null
}

export function currentActor(): Actor {
  let osUser: string | null
  try {
    osUser = os.userInfo().username
  } catch {
    // no passwd entry (containers running as an arbitrary uid)
    osUser = process.env.USER ?? process.env.LOGNAME ?? null
  }
  let hostname: string | null
  try {
    hostname = os.hostname()
  } catch {
    hostname = null
  }
  return {osUser, hostname}
}

/** What every audited operation takes: who, why, and the run id its batches share. */
export interface AuditOptions {
  /** Free text recorded with the run (--reason). */
  reason?: string
  /** Defaults to the OS user and hostname of this process. */
  actor?: Actor
}

export interface AuditContext {
  run: string
  actor: Actor
  reason: string | null
}

export function auditContext(options: AuditOptions): AuditContext {
  return {
    run: randomUUID(),
    actor: options.actor ?? currentActor(),
    reason: options.reason?.trim() ? options.reason.trim() : null,
  }
}

/**
 * Actions recorded in backfill_dlq_audit: the DLQ's own, the jobs actions on the live queue
 * (jobs/actions.ts), jobs the console enqueued and locks released by an operator, in the same
 * table and format so one trail shows them all.
 */
export const AUDIT_ACTIONS = [
  'retry',
  'purge',
  'capture',
  'jobs.remove',
  'jobs.move-to-dlq',
  'jobs.fail',
  'jobs.run-now',
  'jobs.reschedule',
  'jobs.enqueue',
  'locks.clean',
] as const
export type AuditAction = (typeof AUDIT_ACTIONS)[number]

export interface HistoryOptions {
  action?: AuditAction
  since?: Date
  limit?: number
}

export interface HistoryRun {
  run: string
  action: string
  startedAt: Date
  finishedAt: Date
  /** Entries retried / purged / jobs captured. */
  count: number
  batches: number
  /** Entries a retry left in the DLQ (key conflicts, invalid names). */
  skipped: number
  osUser: string | null
  dbUser: string
  hostname: string | null
  reason: string | null
  selection: unknown
  options: unknown
}

/** The audit trail, one row per run, newest first. */
export async function dlqHistory(db: Database, options: HistoryOptions = {}): Promise<HistoryRun[]> {
  const rows = await db.rows(dlqAuditHistory, [options.action ?? null, options.since ?? null, options.limit ?? 20])
  return rows.map((r) => ({
    run: r.run,
    action: r.action,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    count: Number(r.count),
    batches: Number(r.batches),
    skipped: Number(r.skipped),
    osUser: r.os_user,
    dbUser: r.db_user,
    hostname: r.hostname,
    reason: r.reason,
    selection: r.selection,
    options: r.options,
  }))
}
