import {createHash} from 'node:crypto'

/**
 * Failure groups: DLQ entries whose errors differ only in volatile parts (ids, numbers,
 * timestamps, quoted values…) share a fingerprint. The first line of the message is
 * normalised by the rules below, in order; the fingerprint is a short hash of the task
 * identifier and that template, so the same failure of two tasks is two groups.
 *
 * Captures store each entry's fingerprint (backfill_dlq.error_fingerprint): a change to these
 * rules must also clear the stored ones (a schema version step that sets them to null, so
 * migrate recomputes them), or stats would mix old and new groups.
 */

/** Characters of the message's first line considered (stack traces and long dumps add nothing). */
export const FINGERPRINT_MAX_CHARS = 300

interface Rule {
  name: string
  pattern: RegExp
  replacement: string
  /** Cheap test that must pass for the pattern to possibly match (skips most regex work). */
  needs: (text: string) => boolean
}

const hasDigit = (text: string): boolean => /[0-9]/.test(text)

function countOf(text: string, char: string): number {
  let count = 0
  for (let i = text.indexOf(char); i !== -1; i = text.indexOf(char, i + 1)) count += 1
  return count
}

const RULES: readonly Rule[] = [
  {
    name: 'uuid',
    pattern: /[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}/g,
    replacement: '<uuid>',
    needs: (t) => countOf(t, '-') >= 4,
  },
  {
    // ISO 8601 dates and timestamps, with optional time, fraction and zone.
    name: 'timestamp',
    pattern:
      /[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)?(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?)?/g,
    replacement: '<ts>',
    needs: hasDigit,
  },
  {
    name: 'url',
    pattern: /[A-Za-z][A-Za-z0-9+.-]*:\/\/[^\s"'<>]+/g,
    replacement: '<url>',
    needs: (t) => t.includes('://'),
  },
  {
    name: 'email',
    pattern: /[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}/g,
    replacement: '<email>',
    needs: (t) => t.includes('@'),
  },
  {
    name: 'ip',
    pattern: /(^|[^0-9.])[0-9]{1,3}(?:\.[0-9]{1,3}){3}(?::[0-9]{1,5})?(?![0-9])/g,
    replacement: '$1<ip>',
    needs: hasDigit,
  },
  {name: 'hex', pattern: /0x[0-9a-fA-F]+/g, replacement: '<hex>', needs: (t) => t.includes('0x')},
  {
    // Hex ids (hashes, short commit ids, object ids): a whole token of 6+ hex characters with
    // at least one digit and one letter (pure digits are numbers; "deadbeef" stays a word).
    name: 'hex-id',
    pattern: /(^|[^A-Za-z0-9_])(?=[0-9a-fA-F]*[0-9])(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{6,}(?![A-Za-z0-9_])/g,
    replacement: '$1<hex>',
    needs: hasDigit,
  },
  {name: 'double-quoted', pattern: /"[^"]*"/g, replacement: '"<v>"', needs: (t) => t.includes('"')},
  // Single quotes only at a token start, so apostrophes ("can't") are left alone.
  {name: 'single-quoted', pattern: /(^|[\s(=:,[{])'[^']*'/g, replacement: "$1'<v>'", needs: (t) => t.includes("'")},
  {name: 'backtick-quoted', pattern: /`[^`]*`/g, replacement: '`<v>`', needs: (t) => t.includes('`')},
  // Numbers not glued to a preceding identifier character ("s3", "utf8", "sha256" stay).
  {name: 'number', pattern: /(^|[^A-Za-z0-9_])[0-9]+(?:\.[0-9]+)?/g, replacement: '$1<n>', needs: hasDigit},
]

/** The message with its volatile parts replaced by placeholders (first line, whitespace collapsed). */
export function normalizeErrorMessage(message: string): string {
  const newline = message.indexOf('\n')
  let text = (newline === -1 ? message : message.slice(0, newline)).slice(0, FINGERPRINT_MAX_CHARS)
  text = text.replace(/\s+/g, ' ').trim()
  for (const rule of RULES) {
    if (rule.needs(text)) text = text.replace(rule.pattern, rule.replacement)
  }
  return text
}

/** 12 hex characters identifying a failure group (stable across runs and versions of the data). */
export function fingerprintOf(taskIdentifier: string, template: string): string {
  return createHash('md5').update(`${taskIdentifier}\u001F${template}`, 'utf8').digest('hex').slice(0, 12)
}

export interface Fingerprint {
  fingerprint: string
  template: string
}

/** Fingerprint of one failure: task identifier + normalised error message. */
export function fingerprint(taskIdentifier: string, message: string | null | undefined): Fingerprint {
  const template = normalizeErrorMessage(message ?? '')
  return {fingerprint: fingerprintOf(taskIdentifier, template), template}
}

/** True when the value looks like a fingerprint (what --group accepts). */
export function isFingerprint(value: string): boolean {
  return /^[0-9a-f]{12}$/.test(value)
}

/**
 * fingerprint() with a bounded cache of message → template: DLQs are usually dominated by
 * a few messages repeated many times, which this turns into map lookups.
 */
export class Fingerprinter {
  private readonly templates = new Map<string, string>()
  private readonly ids = new Map<string, string>()
  constructor(private readonly capacity = 20_000) {}

  of(taskIdentifier: string, message: string | null): Fingerprint {
    const raw = message ?? ''
    let template = this.templates.get(raw)
    if (template === undefined) {
      template = normalizeErrorMessage(raw)
      if (this.templates.size >= this.capacity) this.templates.clear()
      this.templates.set(raw, template)
    }
    const key = `${taskIdentifier}\u001F${template}`
    let id = this.ids.get(key)
    if (id === undefined) {
      id = fingerprintOf(taskIdentifier, template)
      if (this.ids.size >= this.capacity) this.ids.clear()
      this.ids.set(key, id)
    }
    return {fingerprint: id, template}
  }
}
