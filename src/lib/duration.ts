import {UsageError} from './errors.js'

const UNITS: Record<string, number> = {ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000}
const HELP = 'use a number with a unit (ms, s, m, h, d, w), e.g. 30s, 10m, 2h, 1h30m'
const MAX_MS = 100 * 365 * 86_400_000

export interface DurationOptions {
  /** Unit of a bare number (POLL_INTERVAL_MS=200 is ms, DLQ_PROCESSOR_INTERVAL_SECS=60 is s); without it a unit is required. */
  defaultUnit?: keyof typeof UNITS
  /** Flag or field name for messages, e.g. "--delay". */
  name?: string
}

/**
 * The one duration parser of the project: "250ms", "10s", "5m", "1h30m", "7d" → milliseconds.
 * A bare number is accepted only when the caller names its unit.
 */
export function parseDuration(input: string, options: DurationOptions | string = {}): number {
  const {defaultUnit, name = 'duration'} = typeof options === 'string' ? {name: options} : options
  // "1h 30m" reads naturally; spaces between parts are dropped ("5 minutes" still fails).
  const text = input
    .trim()
    .toLowerCase()
    .replace(/(\d)\s+(?=[a-z])|([a-z])\s+(?=\d)/g, '$1$2')
  const fail = (why: string): never => {
    throw new UsageError(`${name} ${JSON.stringify(input)} ${why}`, {code: 'E_INVALID_DURATION', suggestions: [HELP]})
  }
  let total: number
  if (/^\d+(\.\d+)?$/.test(text)) {
    if (defaultUnit === undefined) return fail('is not a duration (a unit is required)')
    total = Number(text) * (UNITS[defaultUnit] ?? 1)
  } else {
    if (!/^(\d+(\.\d+)?(ms|s|m|h|d|w))+$/.test(text)) return fail('is not a duration')
    total = [...text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/g)].reduce(
      (sum, p) => sum + Number(p[1]) * (UNITS[p[2] as string] ?? 0),
      0,
    )
  }
  if (!Number.isFinite(total) || total > MAX_MS) return fail('is too long')
  return Math.round(total)
}

/** "1h 2m", "3.2s", "45ms" for people. */
export function formatDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '–'
  if (ms < 0) ms = 0
  if (ms < 1000) return `${Math.round(ms)}ms`
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)}s`
  const totalSeconds = Math.floor(ms / 1000)
  const d = Math.floor(totalSeconds / 86_400)
  const h = Math.floor((totalSeconds % 86_400) / 3600)
  const m = Math.floor((totalSeconds % 3600) / 60)
  const s = totalSeconds % 60
  if (d > 0) return `${d}d${h ? ` ${h}h` : ''}`
  if (h > 0) return `${h}h${m ? ` ${m}m` : ''}`
  return `${m}m${s ? ` ${s}s` : ''}`
}
