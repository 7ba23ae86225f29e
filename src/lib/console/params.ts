import type {DlqSelector} from '../dlq/selector.js'
import {buildSelector} from '../dlq/selector.js'
import {UsageError} from '../errors.js'
import {buildJobSelector, type JobSelector} from '../jobs/selector.js'

/**
 * A request's inputs (query string, then a JSON or form body) under the CLI's flag names:
 * `task`, `queue`, `job-key`, `since`, `until`, `older-than`, `error`, `state`, `flag`,
 * `priority`, `time-field`, `group`, `limit`, `id`. Repeatable ones take arrays (JSON) or
 * repeated keys (query, form). `q` holds a whole selection in the CLI's own words
 * (`--task send_email --state retrying 42 43`), so a filter can be pasted from a terminal.
 */
export class Params {
  private readonly values = new Map<string, string[]>()

  constructor(sources: readonly (URLSearchParams | Record<string, unknown> | undefined)[]) {
    for (const source of sources) {
      if (!source) continue
      if (source instanceof URLSearchParams) {
        for (const [key, value] of source) this.add(key, value)
      } else {
        for (const [key, value] of Object.entries(source)) {
          if (value === undefined || value === null) continue
          for (const v of Array.isArray(value) ? value : [value]) {
            if (typeof v === 'object') this.add(key, JSON.stringify(v))
            else this.add(key, String(v))
          }
        }
      }
    }
    const q = this.get('q')
    if (q !== undefined && q.trim() !== '') for (const [key, value] of parseCliSelection(q)) this.add(key, value)
  }

  private add(key: string, value: string): void {
    const list = this.values.get(key)
    if (list) list.push(value)
    else this.values.set(key, [value])
  }

  has(name: string): boolean {
    return this.values.has(name)
  }

  /** The last value given (later sources win). */
  get(name: string): string | undefined {
    const list = this.values.get(name)
    return list?.[list.length - 1]
  }

  /** Every non-empty value (empty strings kept where they mean something, see keepEmpty). */
  all(name: string, keepEmpty = false): string[] | undefined {
    const list = this.values.get(name)?.filter((v) => keepEmpty || v !== '')
    return list && list.length > 0 ? list : undefined
  }

  bool(name: string): boolean {
    const value = this.get(name)
    if (value === undefined) return false
    if (['true', '1', 'on', 'yes', ''].includes(value.toLowerCase())) return true
    if (['false', '0', 'off', 'no'].includes(value.toLowerCase())) return false
    throw new UsageError(`invalid ${name} "${value}": expected true or false`, {code: 'E_USAGE'})
  }

  int(name: string, range: {min?: number; max?: number} = {}): number | undefined {
    const value = this.get(name)
    if (value === undefined || value === '') return undefined
    const n = Number(value)
    if (
      !Number.isInteger(n) ||
      (range.min !== undefined && n < range.min) ||
      (range.max !== undefined && n > range.max)
    )
      throw new UsageError(
        `invalid ${name} "${value}": expected an integer${range.min !== undefined ? ` from ${range.min}` : ''}${range.max !== undefined ? ` to ${range.max}` : ''}`,
        {code: 'E_USAGE'},
      )
    return n
  }

  /** Every value but the CSRF token's, in a stable order: what makes two requests the same. */
  fingerprint(): string {
    return JSON.stringify([...this.values].filter(([key]) => key !== '_csrf').sort(([a], [b]) => (a < b ? -1 : 1)))
  }

  string(name: string): string | undefined {
    const value = this.get(name)
    return value === undefined || value === '' ? undefined : value
  }
}

/** Flags of the selector grammar that take a value (the CLI's names). */
const VALUE_FLAGS = new Set([
  'task',
  'queue',
  'job-key',
  'since',
  'until',
  'older-than',
  'error',
  'state',
  'flag',
  'priority',
  'time-field',
  'group',
  'limit',
])

/**
 * Splits a CLI selection ("--task send_email --error 'timed out' 42") into flag/value pairs;
 * bare words are ids. Quotes (single or double) group words, as a shell would.
 */
export function parseCliSelection(text: string): [string, string][] {
  const words: string[] = []
  const pattern = /"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+)/g
  let current: string | undefined
  let last = -1
  for (const match of text.matchAll(pattern)) {
    const word = match[1] !== undefined ? match[1].replace(/\\(.)/g, '$1') : (match[2] ?? match[3] ?? '')
    const start = match.index
    // "--error="a b"" style: glue a quoted part straight after the previous word.
    if (current !== undefined && start === last) current += word
    else {
      if (current !== undefined) words.push(current)
      current = word
    }
    last = start + match[0].length
  }
  if (current !== undefined) words.push(current)
  const pairs: [string, string][] = []
  for (let i = 0; i < words.length; i++) {
    const word = words[i] as string
    if (!word.startsWith('--')) {
      pairs.push(['id', word])
      continue
    }
    const eq = word.indexOf('=')
    const name = eq > 0 ? word.slice(2, eq) : word.slice(2)
    if (!VALUE_FLAGS.has(name))
      throw new UsageError(`unknown filter --${name}`, {
        code: 'E_USAGE',
        suggestions: [`filters: ${[...VALUE_FLAGS].map((f) => `--${f}`).join(', ')}, and ids`],
      })
    if (eq > 0) pairs.push([name, word.slice(eq + 1)])
    else {
      const value = words[i + 1]
      if (value === undefined) throw new UsageError(`--${name} needs a value`, {code: 'E_USAGE'})
      pairs.push([name, value])
      i += 1
    }
  }
  return pairs
}

const LABELS = {
  ids: 'id',
  since: 'since',
  until: 'until',
  olderThan: 'older-than',
  error: 'error',
  limit: 'limit',
}

function common(params: Params, maxLimit?: number) {
  return {
    ids: params.all('id') ?? [],
    tasks: params.all('task'),
    // '' means the parallel jobs/entries: kept.
    queues: params.all('queue', true),
    jobKeys: params.all('job-key'),
    since: params.string('since'),
    until: params.string('until'),
    olderThan: params.string('older-than'),
    error: params.string('error'),
    limit: params.int('limit', {min: 1, max: maxLimit}),
  }
}

export function jobSelectorFrom(params: Params, maxLimit?: number): JobSelector {
  return buildJobSelector(
    {
      ...common(params, maxLimit),
      states: params.all('state'),
      flags: params.all('flag'),
      priorities: params.all('priority'),
      timeField: params.string('time-field'),
    },
    {
      labels: {...LABELS, states: 'state', flags: 'flag', priorities: 'priority', timeField: 'time-field'},
      idHint: 'job ids are the first column of the jobs list',
    },
  )
}

export function dlqSelectorFrom(params: Params, maxLimit?: number): DlqSelector {
  return buildSelector(
    {...common(params, maxLimit), group: params.string('group')},
    {labels: {...LABELS, group: 'group'}, idHint: 'ids are the first column of the DLQ list'},
  )
}
