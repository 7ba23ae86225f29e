import {UsageError} from '../errors.js'

const UNITS: Record<string, number> = {ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000}

/**
 * Parses "250ms", "30s", "5m", "1h30m", "7d" into milliseconds. A bare number takes
 * `defaultUnit` (seconds unless told otherwise, as the Rust crate's timeouts are).
 */
export function parseDuration(input: string, options: {defaultUnit?: keyof typeof UNITS; name?: string} = {}): number {
  const text = input.trim().toLowerCase()
  const name = options.name ? `${options.name} ` : ''
  if (/^\d+(\.\d+)?$/.test(text)) return Math.round(Number(text) * (UNITS[options.defaultUnit ?? 's'] ?? 1000))
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/g)]
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== text) {
    throw new UsageError(`invalid ${name}duration ${JSON.stringify(input)}`, {
      code: 'E_INVALID_DURATION',
      suggestions: ['use a number with a unit: 500ms, 30s, 5m, 2h, 7d, 1h30m (a bare number is seconds)'],
    })
  }
  return Math.round(parts.reduce((sum, p) => sum + Number(p[1]) * (UNITS[p[2] as string] ?? 0), 0))
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
