/**
 * `npm run soak [-- --jobs N --workers N --kills N]`: the full chaos soak (default 200,000
 * jobs, 4 workers). Prints the counts; exits non-zero when any job was lost, doubled without
 * a dead worker to explain it, or left locked.
 */
import {formatReport, runSoak} from './chaos.js'

const argv = process.argv.slice(2)
const arg = (name: string, fallback: number): number => {
  const index = argv.indexOf(`--${name}`)
  return index >= 0 ? Number(argv[index + 1]) : fallback
}
const runs = arg('runs', 1)
let failed = 0
for (let run = 1; run <= runs; run++) {
  const report = await runSoak({
    jobs: arg('jobs', 200_000),
    workers: arg('workers', 4),
    concurrency: arg('concurrency', 8),
    kills: arg('kills', 6),
    restartPostgres: !argv.includes('--no-restart'),
    operators: !argv.includes('--no-operators'),
    timeoutMs: arg('timeout', 30 * 60) * 1000,
    log: (m) => process.stderr.write(`[soak ${run}/${runs}] ${m}\n`),
  })
  process.stdout.write(`\n== soak run ${run}/${runs}\n${formatReport(report)}\n`)
  if (!report.ok) failed += 1
}
if (failed > 0) process.exitCode = 1
setTimeout(() => process.exit(), 1000).unref()
