/**
 * HTML built only through a tagged template that escapes every interpolated value, so job
 * data (payloads, errors, task and queue names, keys: all untrusted) can never become markup.
 * Only values already built by this template (Safe) pass through unescaped.
 */
export class Safe {
  constructor(readonly html: string) {}
  toString(): string {
    return this.html
  }
}

export function escapeHtml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'})[c] as string,
  )
}

type Value = Safe | string | number | boolean | null | undefined | readonly Value[]

function render(value: Value): string {
  if (value === null || value === undefined || value === false || value === true) return ''
  if (value instanceof Safe) return value.html
  if (Array.isArray(value)) return value.map((v) => render(v as Value)).join('')
  return escapeHtml(String(value))
}

export function html(strings: TemplateStringsArray, ...values: Value[]): Safe {
  let out = strings[0] ?? ''
  values.forEach((value, i) => {
    out += render(value) + (strings[i + 1] ?? '')
  })
  return new Safe(out)
}

/** 12,345 */
export function num(n: number | null | undefined): string {
  return n === null || n === undefined ? '–' : n.toLocaleString('en-US')
}

/** A duration in milliseconds, short: 950ms, 42s, 17m, 3h, 12d. */
export function shortDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return '–'
  const s = Math.round(Math.abs(ms) / 1000)
  if (Math.abs(ms) < 1000) return `${Math.round(Math.abs(ms))}ms`
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m`
  if (s < 172_800) return `${Math.floor(s / 3600)}h`
  return `${Math.floor(s / 86_400)}d`
}

/** A time shown relative ("3m ago", "in 5m") with the absolute UTC time on hover. */
export function when(value: Date | string | null | undefined, now = Date.now()): Safe {
  if (value === null || value === undefined) return html`<span class="muted">–</span>`
  const date = value instanceof Date ? value : new Date(value)
  if (Number.isNaN(date.getTime())) return html`${String(value)}`
  const iso = date.toISOString()
  const diff = now - date.getTime()
  const text =
    Math.abs(diff) < 1000 ? 'just now' : diff >= 0 ? `${shortDuration(diff)} ago` : `in ${shortDuration(-diff)}`
  return html`<time datetime="${iso}" title="${iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z')}" data-relative
    >${text}</time
  >`
}

export function truncate(text: string | null | undefined, max: number): string {
  if (!text) return ''
  const line = text.replace(/\s*\n\s*/g, ' ⏎ ')
  return line.length <= max ? line : `${line.slice(0, max - 1)}…`
}
