import type {Metric, Target} from './types.js'

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[index] as number
}

export interface Evaluated {
  ours: number
  reference: number | null
  ratio: number | null
  pass: boolean | null
}

export function evaluate(metric: Metric): Evaluated {
  const ours = median(metric.sample.ours)
  const reference =
    metric.sample.reference && metric.sample.reference.length > 0 ? median(metric.sample.reference) : null
  const ratio = reference === null || reference === 0 ? null : ours / reference
  return {ours, reference, ratio, pass: metric.target ? check(metric.target, ours, ratio) : null}
}

function check(target: Target, ours: number, ratio: number | null): boolean | null {
  switch (target.kind) {
    case 'ratio-min':
      return ratio === null ? null : ratio >= target.value
    case 'ratio-max':
      return ratio === null ? null : ratio <= target.value
    case 'max':
      return ours <= target.value
    case 'min':
      return ours >= target.value
  }
}

export function describeTarget(target: Target | undefined, unit: string): string {
  if (!target) return ''
  switch (target.kind) {
    case 'ratio-min':
      return `≥ ${target.value}× ref`
    case 'ratio-max':
      return `≤ ${target.value}× ref`
    case 'max':
      return `≤ ${target.value} ${unit}`
    case 'min':
      return `≥ ${target.value} ${unit}`
  }
}

/** Peak resident set size of a finished child process, from /proc when available (kB → MB). */
export function formatNumber(value: number | null): string {
  if (value === null || Number.isNaN(value)) return '–'
  if (Math.abs(value) >= 1000) return Math.round(value).toLocaleString('en-US')
  if (Math.abs(value) >= 10) return value.toFixed(1)
  return value.toFixed(2)
}

/** Median wall time of `calls` runs of fn, after one warm-up run (plan caches, buffers). */
export async function timeIt(fn: () => Promise<unknown>, calls = 5): Promise<number> {
  await fn()
  const times: number[] = []
  for (let i = 0; i < calls; i++) {
    const started = performance.now()
    await fn()
    times.push(performance.now() - started)
  }
  return median(times)
}
