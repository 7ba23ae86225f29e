/**
 * The Rust backfill crate's enqueue helpers, with its exact values. All are parallel (no
 * graphile queue) except enqueueSerial, use job_key mode replace, and leave run_at to the
 * database's now().
 */
import {DEFAULT_MAX_ATTEMPTS, Priority} from '../jobs/priority.js'
import type {BackfillClient, EnqueueOutcome} from './client.js'
import type {JobSpec} from './spec.js'

/** The crate's RetryPolicy presets (max attempts; graphile's backoff is fixed). */
export const RetryAttempts = {
  DEFAULT: DEFAULT_MAX_ATTEMPTS,
  /** RetryPolicy::fast() */
  FAST: 3,
  /** RetryPolicy::aggressive() */
  AGGRESSIVE: 12,
  /** RetryPolicy::conservative() */
  CONSERVATIVE: 5,
} as const

/** The crate's Queue::serial_for: a serial queue per entity, e.g. serialFor('user', 42) → "user:42". */
export function serialFor(entity: string, id: string | number | bigint): string {
  return `${entity}:${id}`
}

function spec(priority: number, maxAttempts: number, jobKey: string | undefined, queue?: string): JobSpec {
  return {
    priority,
    maxAttempts,
    jobKeyMode: 'replace',
    ...(jobKey === undefined ? {} : {jobKey}),
    ...(queue === undefined ? {} : {queue}),
  }
}

/** Priority -5 (FAST_DEFAULT), 8 attempts. */
export function enqueueFast(
  client: BackfillClient,
  task: string,
  payload?: unknown,
  jobKey?: string,
): Promise<EnqueueOutcome> {
  return client.enqueue(task, payload, spec(Priority.FAST_DEFAULT, DEFAULT_MAX_ATTEMPTS, jobKey))
}

/** Priority 0 (BULK_DEFAULT), 8 attempts. */
export function enqueueBulk(
  client: BackfillClient,
  task: string,
  payload?: unknown,
  jobKey?: string,
): Promise<EnqueueOutcome> {
  return client.enqueue(task, payload, spec(Priority.BULK_DEFAULT, DEFAULT_MAX_ATTEMPTS, jobKey))
}

/** Priority -20 (EMERGENCY), 8 attempts. */
export function enqueueEmergency(
  client: BackfillClient,
  task: string,
  payload?: unknown,
  jobKey?: string,
): Promise<EnqueueOutcome> {
  return client.enqueue(task, payload, spec(Priority.EMERGENCY, DEFAULT_MAX_ATTEMPTS, jobKey))
}

/** Priority -10 (FAST_HIGH), 12 attempts (aggressive). */
export function enqueueCritical(
  client: BackfillClient,
  task: string,
  payload?: unknown,
  jobKey?: string,
): Promise<EnqueueOutcome> {
  return client.enqueue(task, payload, spec(Priority.FAST_HIGH, RetryAttempts.AGGRESSIVE, jobKey))
}

/** Priority -10 (FAST_HIGH), 3 attempts (fast). */
export function enqueueFastWithRetries(
  client: BackfillClient,
  task: string,
  payload?: unknown,
  jobKey?: string,
): Promise<EnqueueOutcome> {
  return client.enqueue(task, payload, spec(Priority.FAST_HIGH, RetryAttempts.FAST, jobKey))
}

/** Priority 0 (BULK_DEFAULT), 5 attempts (conservative). */
export function enqueueBulkWithRetries(
  client: BackfillClient,
  task: string,
  payload?: unknown,
  jobKey?: string,
): Promise<EnqueueOutcome> {
  return client.enqueue(task, payload, spec(Priority.BULK_DEFAULT, RetryAttempts.CONSERVATIVE, jobKey))
}

/** One job at a time per queue name across every worker; the caller's priority, 8 attempts. */
export function enqueueSerial(
  client: BackfillClient,
  task: string,
  payload: unknown,
  queueName: string,
  priority: number = Priority.BULK_DEFAULT,
  jobKey?: string,
): Promise<EnqueueOutcome> {
  return client.enqueue(task, payload, spec(priority, DEFAULT_MAX_ATTEMPTS, jobKey, queueName))
}
