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

export type Value = Safe | string | number | boolean | null | undefined | readonly Value[]

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

/** One column of a table(): its header, how a row fills its cell, and how the cell looks. */
export interface Column<T> {
  /** Header text (escaped like any value). */
  header: string
  cell: (row: T) => Value
  /** Figures: right-aligned, tabular (class "num" on the header and the cells). */
  num?: boolean
  /** Hidden on narrow screens (class "wide"). */
  wide?: boolean
  /** More classes for the cells only, e.g. "mono", "err". */
  class?: string
  /** The cell names its row: th scope="row", so a screen reader announces it with each cell. */
  rowHeader?: boolean
}

/**
 * A table in a horizontal scroller; cells go through html like everything else, so job data stays
 * text. Without rows it renders the empty-state text (muted), or nothing when there is none.
 * Columns given as false (a condition not met) are left out.
 */
export function table<T>(
  columns: readonly (Column<T> | false)[],
  rows: readonly T[],
  options: {empty?: string; caption?: string} = {},
): Safe {
  if (rows.length === 0) return options.empty === undefined ? html`` : html`<p class="muted">${options.empty}</p>`
  const shown = columns.filter((c): c is Column<T> => c !== false)
  // Opening tags built here: the class names come from the code, the scope is a constant.
  const open = (c: Column<T>, tag: 'th' | 'td', scope: 'col' | 'row' | undefined, cell: boolean): Safe => {
    const names = [c.num && 'num', c.wide && 'wide', cell && c.class].filter(Boolean).join(' ')
    return new Safe(`<${tag}${scope ? ` scope="${scope}"` : ''}${names ? ` class="${escapeHtml(names)}"` : ''}>`)
  }
  const cell = (c: Column<T>, row: T): Safe =>
    c.rowHeader
      ? html`${open(c, 'th', 'row', true)}${c.cell(row)}</th>`
      : html`${open(c, 'td', undefined, true)}${c.cell(row)}</td>`
  return html`<div class="scroll">
    <table>
      ${
        options.caption === undefined
          ? ''
          : html`<caption>
              ${options.caption}
            </caption>`
      }
      <thead>
        <tr>
          ${shown.map((c) => html`${open(c, 'th', 'col', false)}${c.header}</th>`)}
        </tr>
      </thead>
      <tbody>
        ${rows.map(
          (row) =>
            html`<tr>
              ${shown.map((c) => cell(c, row))}
            </tr>`,
        )}
      </tbody>
    </table>
  </div>`
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
