/**
 * CLI start-up: the real binary against a minimal node + pg script doing the same work,
 * alternating, many runs, median wall time and peak RSS.
 */
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {targetFromUrl} from '../src/lib/connection.js'
import {Database} from '../src/lib/db.js'
import {parseSchemaName} from '../src/lib/identifiers.js'
import {migrate} from '../src/lib/schema/migrate.js'
import {listDlqPage} from '../src/lib/sql/dlq-select.js'
import {timedRun} from './lib/process.js'
import {median} from './lib/stats.js'
import type {BenchSuite, Metric} from './lib/types.js'

const here = path.dirname(fileURLToPath(import.meta.url))
const BIN = path.join(here, '..', 'bin', 'run.js')

export const suite: BenchSuite = {
  name: 'startup',
  issue: 7,
  description:
    '`backfill --version`, and `backfill dlq list --json` on an empty DLQ (which also checks the schema and looks for uncaptured exhausted jobs), each against a minimal node + pg script doing the same work (bench/scripts/min-*.mjs: import pg, connect, the same list query, print JSON); alternating runs, median wall time.',
  async run(ctx) {
    const schema = parseSchemaName('startup_bench')
    const db = Database.connect({target: targetFromUrl(ctx.url, 'flag-or-env'), schema})
    await migrate(db)
    const queryText = listDlqPage.sql(db.quotedSchema)
    await db.end()
    const env = {
      ...process.env,
      DATABASE_URL: ctx.url,
      GRAPHILE_WORKER_SCHEMA: schema,
      NO_COLOR: '1',
      QUERY_TEXT: queryText,
      QUERY_PARAMS: JSON.stringify([null, null, null, null, null, null, null, null, null, 50]),
    }
    const runs = ctx.quick ? 7 : 21
    const pairs: [string, string[], string[]][] = [
      ['backfill --version', [BIN, '--version'], [path.join(here, 'scripts', 'min-version.mjs')]],
      [
        'backfill dlq list --json (empty DLQ)',
        [BIN, 'dlq', 'list', '--json'],
        [path.join(here, 'scripts', 'min-query.mjs')],
      ],
    ]
    const metrics: Metric[] = []
    for (const [name, ours, reference] of pairs) {
      const oursMs: number[] = []
      const refMs: number[] = []
      const oursRss: number[] = []
      const refRss: number[] = []
      for (let i = 0; i < runs + 1; i++) {
        // Alternate which goes first; the first pair is a warm-up.
        const order =
          i % 2 === 0
            ? ([
                [ours, oursMs, oursRss],
                [reference, refMs, refRss],
              ] as const)
            : ([
                [reference, refMs, refRss],
                [ours, oursMs, oursRss],
              ] as const)
        for (const [args, times, rss] of order) {
          const run = await timedRun(process.execPath, args, {env})
          if (run.code !== 0) throw new Error(`${args.join(' ')} exited ${run.code}: ${run.stderr}`)
          if (i > 0) {
            times.push(run.ms)
            if (run.peakRssMb !== null) rss.push(run.peakRssMb)
          }
        }
      }
      ctx.log(`${name}: ours ${median(oursMs).toFixed(0)} ms, reference ${median(refMs).toFixed(0)} ms`)
      metrics.push({
        name,
        unit: 'ms',
        referenceName: 'minimal node + pg script',
        higherIsBetter: false,
        // Issue 17: within 1.5× the minimal script (issue 7 had 2×).
        target: {kind: 'ratio-max', value: 1.5},
        sample: {ours: oursMs, reference: refMs},
        notes: [`${runs} runs each`, `peak RSS ${median(oursRss).toFixed(0)} MB vs ${median(refRss).toFixed(0)} MB`],
      })
    }
    return metrics
  },
}
