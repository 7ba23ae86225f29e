import type {Database} from '../db.js'
import {PreconditionError, UsageError} from '../errors.js'
import {caseEvents, entriesById, getDlqEntry, listDlqKeys, listDlqPage} from '../sql/dlq-select.js'
import type {RowOf} from '../sql/statement.js'
import {countUncaptured, type UncapturedSummary} from './capture.js'
import {Fingerprinter} from './fingerprint.js'
import {selectorParams, type DlqSelector} from './selector.js'

/** One DLQ entry as the commands show it (the crate's columns, camelCased, plus derived fields). */
export interface DlqEntry {
  id: string
  originalJobId: string | null
  taskIdentifier: string
  /** '' for parallel jobs (the crate's legacy 'default' is shown as is). */
  queueName: string
  priority: number
  jobKey: string | null
  maxAttempts: number | null
  /** Attempts made before the job landed, when failure_reason says (null otherwise). */
  attempts: number | null
  failureReason: string
  /** Times this entry (same job_key) landed in the DLQ. */
  failureCount: number
  /** As stored: a JSON string or any JSON. */
  lastError: unknown
  /** The error as text, whichever shape it was stored in. */
  errorText: string
  /** Parsed with JSON.parse: integers beyond 2^53 are rounded; payloadText is exact. */
  payload: unknown
  /** The payload exactly as the DLQ's jsonb holds it. */
  payloadText: string
  originalCreatedAt: Date | null
  originalRunAt: Date | null
  failedAt: Date
  /** Times the job was retried from the DLQ before landing here again. */
  requeuedCount: number
  lastRequeuedAt: Date | null
  notes: string | null
}

type EntryRow = RowOf<(typeof entriesById)['columns']>

export function toEntry(row: Omit<EntryRow, 'failed_at_exact'>): DlqEntry {
  return {
    id: row.id,
    originalJobId: row.original_job_id,
    taskIdentifier: row.task_identifier,
    queueName: row.queue_name,
    priority: row.priority,
    jobKey: row.job_key,
    maxAttempts: row.max_attempts,
    attempts: attemptsFromReason(row.failure_reason),
    failureReason: row.failure_reason,
    failureCount: row.failure_count,
    lastError: row.last_error,
    errorText: row.error_text,
    payload: JSON.parse(row.payload) as unknown,
    payloadText: row.payload,
    originalCreatedAt: row.original_created_at,
    originalRunAt: row.original_run_at,
    failedAt: row.failed_at,
    requeuedCount: row.requeued_count,
    lastRequeuedAt: row.last_requeued_at,
    notes: row.notes,
  }
}

/** "Job exceeded maximum retry attempts (8/8)", "Permanent failure (attempt 2/8)" → 8, 2. */
function attemptsFromReason(reason: string): number | null {
  const match = /\((?:attempt )?(\d+)\/\d+\)/.exec(reason)
  return match ? Number(match[1]) : null
}

// --- keyset cursor -------------------------------------------------------------------------

interface Position {
  failedAt: string
  id: string
}

export function encodeCursor(position: Position): string {
  return Buffer.from(`${position.failedAt}|${position.id}`, 'utf8').toString('base64url')
}

export function decodeCursor(cursor: string): Position {
  const text = Buffer.from(cursor, 'base64url').toString('utf8')
  const match = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z)\|([1-9]\d{0,18})$/.exec(text)
  if (!match) {
    throw new UsageError(`invalid cursor "${cursor}"`, {
      code: 'E_BAD_CURSOR',
      suggestions: ['pass the nextCursor of the previous page unchanged, or no cursor for the first page'],
    })
  }
  return {failedAt: match[1] as string, id: match[2] as string}
}

// --- list ----------------------------------------------------------------------------------

export const DEFAULT_PAGE_SIZE = 50
export const MAX_PAGE_SIZE = 10_000

export interface ListOptions {
  selector: DlqSelector
  /** From the previous page's nextCursor. */
  cursor?: string
  /** Also count exhausted jobs still in the jobs table (default true). */
  checkUncaptured?: boolean
}

export interface ListResult {
  entries: DlqEntry[]
  /** Pass to --cursor for the next page; null on the last page. */
  nextCursor: string | null
  /** Exhausted jobs waiting in the jobs table for `dlq capture` (null when not checked). */
  uncaptured: UncapturedSummary | null
}

/**
 * A page of the DLQ, newest first (failed_at desc, id desc), by keyset: each page costs the
 * same however deep it is. With a --group selector the page is filled by scanning keys
 * newest first and fingerprinting their errors.
 */
export async function listDlq(db: Database, options: ListOptions): Promise<ListResult> {
  const size = options.selector.limit ?? DEFAULT_PAGE_SIZE
  if (size > MAX_PAGE_SIZE)
    throw new UsageError(`a page holds at most ${MAX_PAGE_SIZE} entries (asked for ${size})`, {
      suggestions: ['page with the cursor instead'],
    })
  const after = options.cursor === undefined ? null : decodeCursor(options.cursor)
  const uncaptured = options.checkUncaptured === false ? Promise.resolve(null) : countUncaptured(db)
  const page =
    options.selector.group === undefined
      ? listPlain(db, options.selector, after, size)
      : listGroup(db, options.selector, after, size)
  const [result, waiting] = await Promise.all([page, uncaptured])
  return {...result, uncaptured: waiting}
}

async function listPlain(
  db: Database,
  selector: DlqSelector,
  after: Position | null,
  size: number,
): Promise<Omit<ListResult, 'uncaptured'>> {
  const rows = await db.rows(listDlqPage, [
    ...selectorParams(selector),
    after?.failedAt ?? null,
    after?.id ?? null,
    size + 1,
  ])
  const page = rows.slice(0, size)
  const last = page.at(-1)
  return {
    entries: page.map(toEntry),
    nextCursor: rows.length > size && last ? encodeCursor({failedAt: last.failed_at_exact, id: last.id}) : null,
  }
}

const GROUP_SCAN_CHUNK = 2000

async function listGroup(
  db: Database,
  selector: DlqSelector,
  after: Position | null,
  size: number,
): Promise<Omit<ListResult, 'uncaptured'>> {
  const fingerprinter = new Fingerprinter()
  const params = selectorParams(selector)
  const matched: string[] = []
  let scanned = after
  let more = false
  scan: for (;;) {
    const keys = await db.rows(listDlqKeys, [
      ...params,
      scanned?.failedAt ?? null,
      scanned?.id ?? null,
      GROUP_SCAN_CHUNK,
    ])
    for (const key of keys) {
      scanned = {failedAt: key.failed_at_exact, id: key.id}
      if (fingerprinter.of(key.task_identifier, key.error_line).fingerprint !== selector.group) continue
      if (matched.length === size) {
        more = true
        break scan
      }
      matched.push(key.id)
    }
    if (keys.length < GROUP_SCAN_CHUNK) break
  }
  const rows = matched.length === 0 ? [] : await db.rows(entriesById, [matched])
  rows.sort((a, b) =>
    a.failed_at_exact === b.failed_at_exact ? compareIds(b.id, a.id) : a.failed_at_exact < b.failed_at_exact ? 1 : -1,
  )
  const last = rows.at(-1)
  return {
    entries: rows.map(toEntry),
    nextCursor: more && last ? encodeCursor({failedAt: last.failed_at_exact, id: last.id}) : null,
  }
}

function compareIds(a: string, b: string): number {
  return a.length === b.length ? (a < b ? -1 : a > b ? 1 : 0) : a.length - b.length
}

// --- show ----------------------------------------------------------------------------------

export interface DlqEvent {
  at: Date
  /** 'retried' (left the DLQ as job jobId) or 'recaptured' (job jobId failed again and landed as entry dlqId). */
  event: string
  dlqId: string | null
  jobId: string | null
  auditId: string | null
  details: unknown
  osUser: string | null
  dbUser: string | null
  hostname: string | null
  reason: string | null
}

export interface ShowResult {
  entry: DlqEntry
  /** Id of the first DLQ entry of this job's story (this entry's own id if it never came back). */
  caseId: string
  /** Earlier retries and recaptures of the same job, oldest first. */
  history: DlqEvent[]
}

/** Everything about one entry; PreconditionError (exit 4) when it is not in the DLQ. */
export async function showDlqEntry(db: Database, id: string): Promise<ShowResult> {
  const row = await db.maybeOne(getDlqEntry, [id])
  if (!row) {
    throw new PreconditionError(`DLQ entry ${id} does not exist in "${db.schema}".backfill_dlq`, {
      code: 'E_NOT_FOUND',
      suggestions: [
        'it may have been retried or purged: see backfill dlq history',
        'list entries with: backfill dlq list',
      ],
    })
  }
  const events = await db.rows(caseEvents, [row.case_id])
  return {
    entry: toEntry(row),
    caseId: row.case_id,
    history: events.map((e) => ({
      at: e.at,
      event: e.event,
      dlqId: e.dlq_id,
      jobId: e.job_id,
      auditId: e.audit_id,
      details: e.details,
      osUser: e.os_user,
      dbUser: e.db_user,
      hostname: e.hostname,
      reason: e.reason,
    })),
  }
}
