import type {Database} from '../db.js'
import {UsageError} from '../errors.js'
import type {LivenessOptions} from '../locks/owners.js'
import {requireMigrated, type SchemaInspection} from '../schema/inspect.js'
import {listJobsNewest, listJobsNext} from '../sql/jobs-select.js'
import {toJobEntries, type JobEntry} from './entries.js'
import {jobSelectorParams, type JobSelector} from './selector.js'
import {WAITING_STATES} from './states.js'

/**
 * - newest: newest first (id descending), every state;
 * - next: the waiting jobs (ready, blocked, scheduled, retrying) in the order graphile-worker
 *   fetches them: priority, then run_at. Running and exhausted jobs never run next.
 */
export const JOB_SORTS = ['newest', 'next'] as const
export type JobSort = (typeof JOB_SORTS)[number]

export const DEFAULT_JOB_PAGE_SIZE = 50
export const MAX_JOB_PAGE_SIZE = 10_000

export interface ListJobsOptions {
  selector?: JobSelector
  sort?: JobSort
  /** The previous page's nextCursor (with the same selector and sort). */
  cursor?: string
  /** A fresh inspection of the schema (skips requireMigrated). */
  inspection?: SchemaInspection
  /** How running jobs' owners are judged (see locks/owners.ts). */
  liveness?: LivenessOptions
}

export interface ListJobsResult {
  sort: JobSort
  jobs: JobEntry[]
  /** Pass as cursor for the next page; null on the last page. */
  nextCursor: string | null
}

type Position = {sort: 'newest'; id: string} | {sort: 'next'; priority: number; runAt: string; id: string}

export function encodeJobCursor(position: Position): string {
  const text =
    position.sort === 'newest' ? `n|${position.id}` : `x|${position.priority}|${position.runAt}|${position.id}`
  return Buffer.from(text, 'utf8').toString('base64url')
}

export function decodeJobCursor(cursor: string, sort: JobSort): Position {
  const text = Buffer.from(cursor, 'base64url').toString('utf8')
  const newest = /^n\|([1-9]\d{0,18})$/.exec(text)
  const next = /^x\|(-?\d{1,5})\|(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z)\|([1-9]\d{0,18})$/.exec(text)
  if (sort === 'newest' && newest) return {sort, id: newest[1] as string}
  if (sort === 'next' && next) return {sort, priority: Number(next[1]), runAt: next[2] as string, id: next[3] as string}
  throw new UsageError(`invalid cursor "${cursor}"${newest || next ? ' for this sort order' : ''}`, {
    code: 'E_BAD_CURSOR',
    suggestions: ['pass the nextCursor of the previous page unchanged, with the same sort and selection'],
  })
}

/**
 * One page of the live queue (keyset pages: every page costs what the first does). Running
 * jobs come with their lock owner's liveness. Read-only.
 */
export async function listJobs(db: Database, options: ListJobsOptions = {}): Promise<ListJobsResult> {
  const selector = options.selector ?? {}
  const sort = options.sort ?? 'newest'
  const size = selector.limit ?? DEFAULT_JOB_PAGE_SIZE
  if (size > MAX_JOB_PAGE_SIZE)
    throw new UsageError(`a page holds at most ${MAX_JOB_PAGE_SIZE} jobs (asked for ${size})`, {
      code: 'E_USAGE',
      suggestions: ['page with the cursor instead'],
    })
  if (sort === 'next' && selector.states?.some((s) => !WAITING_STATES.includes(s)))
    throw new UsageError(
      `the next-to-run order holds waiting jobs only (${WAITING_STATES.join(', ')}); running and exhausted jobs never run next`,
      {code: 'E_USAGE', suggestions: ['sort newest first to see running or exhausted jobs']},
    )
  const inspection = options.inspection ?? (await requireMigrated(db))
  const after = options.cursor === undefined ? undefined : decodeJobCursor(options.cursor, sort)
  const params = jobSelectorParams(selector)
  const rows =
    sort === 'newest'
      ? await db.rows(listJobsNewest, [...params, after?.sort === 'newest' ? after.id : null, size + 1])
      : await db.rows(listJobsNext, [
          ...params,
          after?.sort === 'next' ? after.priority : null,
          after?.sort === 'next' ? after.runAt : null,
          after?.sort === 'next' ? after.id : null,
          size + 1,
        ])
  const page = rows.slice(0, size)
  const last = page.at(-1)
  const nextCursor =
    rows.length > size && last
      ? encodeJobCursor(
          sort === 'newest'
            ? {sort, id: last.id}
            : {sort, priority: last.priority, runAt: last.run_at_exact, id: last.id},
        )
      : null
  return {sort, jobs: await toJobEntries(db, page, inspection, options.liveness), nextCursor}
}
