import type {Database} from '../db.js'
import {storeFingerprints} from '../sql/dlq-capture.js'
import {lockUnfingerprinted} from '../sql/dlq-select.js'
import {Fingerprinter} from './fingerprint.js'
import {withDeadlockRetry} from './scan.js'

/** What every capture path returns for the entries it wrote. */
export interface WrittenEntry {
  dlq_id: string
  task_identifier: string
  error_line: string
}

/**
 * Stores the fingerprints of entries a capture just wrote: call it in the move's transaction,
 * so an entry never exists without its fingerprint (a crash rolls both back).
 */
export async function storeEntryFingerprints(
  tx: Database,
  entries: readonly WrittenEntry[],
  fingerprinter: Fingerprinter = new Fingerprinter(),
): Promise<void> {
  if (entries.length === 0) return
  await tx.exec(storeFingerprints, [
    entries.map((e) => e.dlq_id),
    entries.map((e) => fingerprinter.of(e.task_identifier, e.error_line).fingerprint),
    false,
  ])
}

export interface FingerprintBackfillResult {
  /** Entries given a fingerprint. */
  fingerprinted: number
  batches: number
  durationMs: number
}

export const DEFAULT_FINGERPRINT_BATCH = 5000

/**
 * Gives every entry without a current fingerprint one (entries the Rust crate wrote, entries
 * from before schema version 4, entries whose last_error the crate's upsert rewrote), in
 * batches of short transactions: each locks its rows (skip locked: a retry or purge holding
 * some just leaves them for the next run), fingerprints them here and writes them back.
 * Idempotent; safe beside captures and other backfills. Found through
 * idx_backfill_dlq_unfingerprinted, so a run with nothing to do costs one index probe.
 */
export async function backfillFingerprints(
  db: Database,
  options: {batchSize?: number; onBatch?: (done: number) => void; signal?: AbortSignal} = {},
): Promise<FingerprintBackfillResult> {
  const started = performance.now()
  const batchSize = options.batchSize ?? DEFAULT_FINGERPRINT_BATCH
  const fingerprinter = new Fingerprinter()
  const result: FingerprintBackfillResult = {fingerprinted: 0, batches: 0, durationMs: 0}
  let after = '0'
  for (;;) {
    if (options.signal?.aborted) break
    // Its update takes the count rows of the groups it fills (see captureExhausted): retried as a deadlock victim.
    const batch = await withDeadlockRetry(() =>
      db.transaction(async (tx) => {
        const rows = await tx.rows(lockUnfingerprinted, [after, batchSize])
        await storeEntryFingerprints(
          tx,
          rows.map((r) => ({dlq_id: r.id, task_identifier: r.task_identifier, error_line: r.error_line})),
          fingerprinter,
        )
        return rows
      }),
    )
    if (batch.length === 0) break
    after = batch[batch.length - 1]!.id
    result.batches += 1
    result.fingerprinted += batch.length
    options.onBatch?.(result.fingerprinted)
    if (batch.length < batchSize) break
  }
  result.durationMs = performance.now() - started
  return result
}
