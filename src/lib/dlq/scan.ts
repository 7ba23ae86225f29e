import type {Database} from '../db.js'
import {countSelected, lockDlqIds, peekDlqBatch} from '../sql/dlq-select.js'
import {Fingerprinter} from './fingerprint.js'
import {selectorParams, type DlqSelector} from './selector.js'

/**
 * Walking a selection in id order, batch by batch (keyset on id, never OFFSET): the shared
 * loop of retry and purge, and the read-only walk of dry runs. A --group selector is applied
 * here, by fingerprinting each candidate's error line; --limit counts selected entries.
 */

export interface BatchLoopOptions {
  selector: DlqSelector
  /** Entries examined per transaction. */
  batchSize: number
  /** Checked between batches: the batch in progress always commits or rolls back as a whole. */
  signal?: AbortSignal
}

export interface BatchLoopResult {
  batches: number
  /** Entries handed to the action. */
  selected: number
  interrupted: boolean
}

/** One step of a batch: the action's rows, and how far the walk got. */
export interface BatchStep<R> {
  rows: R[]
  /** Candidates the step examined (fewer than asked: the selection is exhausted). */
  examined: number
  /** The last candidate's id (the keyset cursor); null when there was none. */
  lastId: string | null
}

export interface BatchActions<R> {
  /**
   * Without a group: lock (skip locked) and act on the next `limit` selected entries after
   * id `after`, in one statement.
   */
  next: (tx: Database, after: string, limit: number) => Promise<BatchStep<R>>
  /** With a group: act on these ids, which this transaction has locked. */
  locked: (tx: Database, ids: string[]) => Promise<R[]>
}

/**
 * Walks the selection in id order, one transaction per batch. Each batch locks its entries
 * with skip locked (two runs at once split the work instead of waiting or doing it twice)
 * and acts on them in the same transaction; committed() gets the rows once it committed.
 * With a --group selector the batch's candidates are read, fingerprinted here, and only the
 * matching ones locked (skip locked) and handed to locked(). An error rolls the batch back and is rethrown;
 * earlier batches stay committed.
 */
export async function forEachBatch<R>(
  db: Database,
  options: BatchLoopOptions,
  actions: BatchActions<R>,
  committed: (rows: R[]) => void,
): Promise<BatchLoopResult> {
  const {selector} = options
  const params = selectorParams(selector)
  const group = selector.group
  const fingerprinter = group === undefined ? undefined : new Fingerprinter()
  const batchSize = Math.max(1, Math.floor(options.batchSize))
  const result: BatchLoopResult = {batches: 0, selected: 0, interrupted: false}
  let after = '0'
  for (;;) {
    if (options.signal?.aborted) {
      result.interrupted = true
      break
    }
    const remaining = selector.limit === undefined ? Number.POSITIVE_INFINITY : selector.limit - result.selected
    if (remaining <= 0) break
    // A batch chosen as a deadlock victim rolled back as a whole; running it again is safe.
    const step = await withDeadlockRetry(() =>
      db.transaction(async (tx): Promise<BatchStep<R> & {taken: number; want: number}> => {
        if (!fingerprinter) {
          // Every candidate is selected, so the limit goes into the statement.
          const want = Math.min(batchSize, remaining)
          const done = await actions.next(tx, after, want)
          return {...done, taken: done.examined, want}
        }
        // Only the group's entries are locked (others stay free for a concurrent run with another
        // selection), and the match is checked again on the locked rows (an entry may have changed).
        const matches = (c: {task_identifier: string; error_line: string | null}): boolean =>
          fingerprinter.of(c.task_identifier, c.error_line).fingerprint === group
        const candidates = await tx.rows(peekDlqBatch, [...params, after, batchSize, true])
        const matching = candidates.filter(matches).map((c) => c.id)
        const locked = matching.length > 0 ? await tx.rows(lockDlqIds, [...params, matching]) : []
        let ids = locked.filter(matches).map((c) => c.id)
        if (ids.length > remaining) ids = ids.slice(0, remaining)
        const rows = ids.length > 0 ? await actions.locked(tx, ids) : []
        return {
          rows,
          examined: candidates.length,
          lastId: candidates.at(-1)?.id ?? null,
          taken: ids.length,
          want: batchSize,
        }
      }),
    )
    if (step.taken > 0) {
      result.batches += 1
      result.selected += step.taken
      committed(step.rows)
    }
    if (step.lastId !== null) after = step.lastId
    if (step.examined < step.want || step.lastId === null) break
  }
  return result
}

/** The selected ids in id order, without locking (dry runs); honours group and limit. */
export async function* peekSelectedIds(db: Database, selector: DlqSelector, batchSize = 5000): AsyncGenerator<string> {
  const params = selectorParams(selector)
  const fingerprinter = selector.group === undefined ? undefined : new Fingerprinter()
  let yielded = 0
  let after = '0'
  for (;;) {
    const candidates = await db.rows(peekDlqBatch, [...params, after, batchSize, fingerprinter !== undefined])
    for (const c of candidates) {
      if (fingerprinter && fingerprinter.of(c.task_identifier, c.error_line).fingerprint !== selector.group) continue
      if (selector.limit !== undefined && yielded >= selector.limit) return
      yielded += 1
      yield c.id
    }
    if (candidates.length < batchSize) return
    after = (candidates.at(-1) as {id: string}).id
  }
}

/** How many entries the selection holds right now (a full walk when it has a group). */
export async function countSelection(db: Database, selector: DlqSelector): Promise<number> {
  if (selector.group === undefined) {
    const {count} = await db.one(countSelected, selectorParams(selector))
    const total = Number(count)
    return selector.limit === undefined ? total : Math.min(total, selector.limit)
  }
  let total = 0
  for await (const _ of peekSelectedIds(db, selector)) total += 1
  return total
}

/** The id of the last entry a limited selection takes (null: the selection ends before the limit). */
export async function lastSelectedId(db: Database, selector: DlqSelector): Promise<string | null> {
  if (selector.limit === undefined) return null
  let last: string | null = null
  let seen = 0
  for await (const id of peekSelectedIds(db, selector)) {
    last = id
    seen += 1
  }
  return seen >= selector.limit ? last : null
}

const DEADLOCK = '40P01'

/** Runs a whole-transaction step again when PostgreSQL chose it as a deadlock victim (it rolled back). */
export async function withDeadlockRetry<T>(run: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await run()
    } catch (error) {
      const code =
        (error as {details?: {sqlstate?: string}}).details?.sqlstate ?? (error as {cause?: {code?: string}}).cause?.code
      if (code !== DEADLOCK || attempt >= 5) throw error
    }
  }
}
