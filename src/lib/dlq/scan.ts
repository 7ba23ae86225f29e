import type {Database} from '../db.js'
import {countSelected, lockDlqBatch, peekDlqBatch} from '../sql/dlq-select.js'
import {Fingerprinter} from './fingerprint.js'
import {selectorParams, type DlqSelector} from './selector.js'

/**
 * Walking a selection in id order, batch by batch (keyset on id, never OFFSET): the shared
 * loop of retry and purge, and the read-only walk of dry runs. A --group selector is applied
 * here, by fingerprinting each candidate's error line; --limit counts selected entries.
 */

export interface BatchLoopOptions {
  selector: DlqSelector
  /** Candidates locked per transaction. */
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

/**
 * For each batch: one transaction that locks the next candidates (skipping rows another
 * transaction holds, so two runs split the work), keeps those the selector's group and
 * limit allow, and hands their ids to act() inside the same transaction; committed() gets
 * act()'s value once the transaction has committed. An error rolls the batch back and is
 * rethrown; earlier batches stay committed.
 */
export async function forEachLockedBatch<T>(
  db: Database,
  options: BatchLoopOptions,
  act: (tx: Database, ids: string[]) => Promise<T>,
  committed: (value: T) => void,
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
    // Without a group every candidate is selected, so the limit can go into the query.
    const want = fingerprinter ? batchSize : Math.min(batchSize, remaining)
    const step = await db.transaction(async (tx) => {
      const candidates = await tx.rows(lockDlqBatch, [...params, after, want, fingerprinter !== undefined])
      if (candidates.length === 0) return {done: true, last: after, taken: 0, value: undefined}
      let ids = fingerprinter
        ? candidates.filter((c) => fingerprinter.of(c.task_identifier, c.error_line).fingerprint === group).map((c) => c.id)
        : candidates.map((c) => c.id)
      if (ids.length > remaining) ids = ids.slice(0, remaining)
      const value = ids.length > 0 ? {of: await act(tx, ids)} : undefined
      return {done: candidates.length < want, last: (candidates.at(-1) as {id: string}).id, taken: ids.length, value}
    })
    if (step.value) {
      result.batches += 1
      committed(step.value.of)
    }
    result.selected += step.taken
    after = step.last
    if (step.done) break
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
