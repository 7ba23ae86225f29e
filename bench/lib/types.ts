/**
 * The benchmark contract: each bench/<area>.bench.ts exports `suite: BenchSuite`. The runner
 * (bench/run.ts) gives every suite its own database on one PostgreSQL server, runs the
 * rounds, takes medians, and rewrites bench/RESULTS.md with ours vs the reference.
 */

export type Target =
  | {kind: 'ratio-min'; value: number} // ours / reference >= value (throughput-like)
  | {kind: 'ratio-max'; value: number} // ours / reference <= value (time-like)
  | {kind: 'max'; value: number} // ours <= value (absolute, in the metric's unit)
  | {kind: 'min'; value: number} // ours >= value

export interface Sample {
  /** One value per round; the report uses the median. */
  ours: number[]
  /** The reference measured in the same run (raw graphile-worker, raw SQL, node+pg script); absent for absolute targets. */
  reference?: number[]
}

export interface Metric {
  /** e.g. "bulk enqueue 200k from NDJSON (CLI)" */
  name: string
  unit: string
  /** What the reference is, e.g. "one add_jobs() call". */
  referenceName?: string
  higherIsBetter: boolean
  target?: Target
  sample: Sample
  /** Extra facts for the notes column, e.g. "peak RSS 84 MB". */
  notes?: string[]
}

export interface BenchContext {
  /** Connection string of this suite's own database. */
  url: string
  quick: boolean
  rounds: number
  /** Scratch directory for files (removed after the run). */
  workDir: string
  log: (message: string) => void
}

export interface BenchSuite {
  name: string
  /** Issue the figures answer to. */
  issue: number
  /** One line: what is measured and how. */
  description: string
  run: (ctx: BenchContext) => Promise<Metric[]>
}
