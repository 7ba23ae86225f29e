/**
 * Only the worker suite's DLQ capture metric (the whole suite takes minutes):
 * `npx tsx bench/scripts/capture.ts [rounds]` on a throwaway embedded PostgreSQL like
 * bench/run.ts's, after one unrecorded warm-up round. Prints each round and the medians.
 */
import {mkdtempSync, rmSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import {EmbeddedPostgres} from '../../src/lib/embedded/postgres.js'
import {captureRounds} from '../worker.bench.js'
import {median} from '../lib/stats.js'

const rounds = Number(process.argv[2] ?? 5)
const dir = mkdtempSync(path.join('/dev/shm', 'bfb-'))
const server = new EmbeddedPostgres({dir, settings: {max_connections: 300, shared_buffers: '256MB'}})
await server.start()
try {
  const ctx = {url: server.url, quick: false, rounds: 1, workDir: os.tmpdir(), log: () => undefined}
  await captureRounds(ctx)
  const {capture, single} = await captureRounds({...ctx, rounds})
  capture.forEach((c, i) => {
    const s = single[i] as number
    process.stdout.write(
      `round ${i + 1}: capture ${c.toFixed(1)} ms, single ${s.toFixed(1)} ms, ${(c / s).toFixed(2)}x\n`,
    )
  })
  const c = median(capture)
  const s = median(single)
  const ratio = median(capture.map((v, i) => v / (single[i] as number)))
  process.stdout.write(
    `median: capture ${c.toFixed(1)} ms, single ${s.toFixed(1)} ms, ratio ${(c / s).toFixed(2)}x (median of the rounds' ratios ${ratio.toFixed(2)}x)\n`,
  )
} finally {
  await server.destroy()
  rmSync(dir, {recursive: true, force: true})
}
