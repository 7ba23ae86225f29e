import type {ChalkInstance} from 'chalk'

export interface OutputOptions {
  json: boolean
  quiet: boolean
}

/**
 * Colour is decided here once: off when NO_COLOR is set, with --no-color, or when the
 * stream is not a terminal (FORCE_COLOR overrides the terminal test). chalk's own
 * detection ignores NO_COLOR, so its level is always set explicitly.
 */
export function colorLevel(stream: NodeJS.WriteStream, noColor = false, env: NodeJS.ProcessEnv = process.env): 0 | 1 {
  if (noColor || (env.NO_COLOR !== undefined && env.NO_COLOR !== '')) return 0
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '0' && env.FORCE_COLOR !== 'false') return 1
  return stream.isTTY ? 1 : 0
}

export interface Column<R> {
  header: string
  get: (row: R) => string
  align?: 'left' | 'right'
  /** Truncate cells to this many characters. */
  max?: number
}

/**
 * Where command output goes: results to stdout (suppressed under --json, where the
 * returned object is the document), everything for people to stderr.
 */
/**
 * A chalk look-alike that styles nothing (any chain of style names, then a call, returns
 * the text): what every pipe, CI log and --json run uses, without loading chalk at all.
 */
export const PLAIN: ChalkInstance = (() => {
  const plain: unknown = new Proxy(
    function style(...text: unknown[]) {
      return text.join(' ')
    },
    {get: (_target, property) => (property === 'level' ? 0 : plain)},
  )
  return plain as ChalkInstance
})()

export interface Styles {
  out: ChalkInstance
  err: ChalkInstance
}

/** Loads chalk only when a stream is coloured (start-up time for every piped command). */
export async function loadStyles(noColor = false): Promise<Styles> {
  const outLevel = colorLevel(process.stdout, noColor)
  const errLevel = colorLevel(process.stderr, noColor)
  if (outLevel === 0 && errLevel === 0) return {out: PLAIN, err: PLAIN}
  const {Chalk} = await import('chalk')
  return {out: outLevel ? new Chalk({level: outLevel}) : PLAIN, err: errLevel ? new Chalk({level: errLevel}) : PLAIN}
}

export class Output {
  readonly json: boolean
  readonly quiet: boolean
  /** Styles for stdout. */
  readonly color: ChalkInstance
  /** Styles for stderr. */
  readonly errColor: ChalkInstance

  constructor(options: OutputOptions, styles: Styles = {out: PLAIN, err: PLAIN}) {
    this.json = options.json
    this.quiet = options.quiet
    this.color = styles.out
    this.errColor = styles.err
  }

  /** A line of the human result (stdout); nothing under --json. */
  result(text: string): void {
    if (!this.json) process.stdout.write(text.endsWith('\n') ? text : `${text}\n`)
  }

  /** Informational text for people (stderr); hidden by --quiet. */
  info(text: string): void {
    if (!this.quiet) process.stderr.write(`${text}\n`)
  }

  success(text: string): void {
    if (!this.quiet) process.stderr.write(`${this.errColor.green('✔')} ${text}\n`)
  }

  warn(text: string): void {
    process.stderr.write(`${this.errColor.yellow('Warning:')} ${text}\n`)
  }

  /** A borderless, two-space separated table on stdout (easy to read and to awk). */
  table<R>(rows: readonly R[], columns: readonly Column<R>[], empty?: string): void {
    if (this.json) return
    if (rows.length === 0) {
      if (empty) this.info(empty)
      return
    }
    this.result(renderTable(rows, columns, this.color))
  }
}

export function renderTable<R>(rows: readonly R[], columns: readonly Column<R>[], color: ChalkInstance): string {
  const cells = rows.map((row) => columns.map((c) => truncate(oneLine(c.get(row)), c.max)))
  const widths = columns.map((c, i) => Math.max(c.header.length, ...cells.map((r) => (r[i] ?? '').length)))
  const pad = (text: string, i: number): string => {
    const width = widths[i] ?? 0
    return columns[i]?.align === 'right' ? text.padStart(width) : text.padEnd(width)
  }
  const header = columns
    .map((c, i) => color.bold(pad(c.header, i)))
    .join('  ')
    .trimEnd()
  const body = cells.map((r) =>
    r
      .map((cell, i) => pad(cell, i))
      .join('  ')
      .trimEnd(),
  )
  return [header, ...body].join('\n')
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ⏎ ')
}

export function truncate(text: string, max?: number): string {
  if (max === undefined || text.length <= max) return text
  return `${text.slice(0, Math.max(0, max - 1))}…`
}
