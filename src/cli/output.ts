import {createRequire} from 'node:module'

import type {ChalkInstance} from 'chalk'
import type {Cell, TableConstructorOptions} from 'cli-table3'

import {terminalSafe, terminalSafeLines} from './terminal-safe.js'

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
  /** Truncate cells to this many display columns (CJK and most emoji take two). */
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
    if (!this.json) process.stdout.write(this.safeOut(text.endsWith('\n') ? text : `${text}\n`))
  }

  /** Informational text for people (stderr); hidden by --quiet. */
  info(text: string): void {
    if (!this.quiet) process.stderr.write(this.safeErr(`${text}\n`))
  }

  success(text: string): void {
    if (!this.quiet) process.stderr.write(this.safeErr(`${this.errColor.green('✔')} ${text}\n`))
  }

  warn(text: string): void {
    process.stderr.write(this.safeErr(`${this.errColor.yellow('Warning:')} ${text}\n`))
  }

  /** Human text for stdout with every control character but our own colours made visible. */
  safeOut(text: string): string {
    return terminalSafeLines(text, this.color.level > 0)
  }

  /** As safeOut, for stderr. */
  safeErr(text: string): string {
    return terminalSafeLines(text, this.errColor.level > 0)
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

/** Borderless: columns separated by two spaces, no rules, no padding (stable for awk and cut). */
const TABLE_STYLE = {
  chars: {
    top: '',
    'top-mid': '',
    'top-left': '',
    'top-right': '',
    bottom: '',
    'bottom-mid': '',
    'bottom-left': '',
    'bottom-right': '',
    left: '',
    'left-mid': '',
    mid: '',
    'mid-mid': '',
    right: '',
    'right-mid': '',
    middle: '  ',
  },
  style: {head: [], border: [], 'padding-left': 0, 'padding-right': 0},
} satisfies TableConstructorOptions

type TableConstructor = new (options: TableConstructorOptions) => {push(...rows: Cell[][]): number; toString(): string}
let tableClass: TableConstructor | undefined
let widthOf: ((text: string) => number) | undefined

/** cli-table3 is loaded on the first table (it costs ~10 ms of start-up that most runs never need). */
function loadTable(): TableConstructor {
  tableClass ??= createRequire(import.meta.url)('cli-table3') as TableConstructor
  return tableClass
}

/** Display width as cli-table3 measures it (string-width: East Asian wide characters and emoji are two). */
export function stringWidth(text: string): number {
  widthOf ??= createRequire(import.meta.url)('string-width') as (text: string) => number
  return widthOf(text)
}

/**
 * A table through cli-table3 in the borderless style above. Cells are made terminal-safe and
 * one line; widths are display widths (CJK and emoji take two columns); header styling does
 * not count. Trailing spaces are trimmed from every line.
 */
export function renderTable<R>(rows: readonly R[], columns: readonly Column<R>[], color: ChalkInstance): string {
  const Table = loadTable()
  const table = new Table({...TABLE_STYLE, head: columns.map((c) => color.bold(c.header))})
  for (const row of rows)
    table.push(
      columns.map((c): Cell => ({content: truncate(terminalSafe(c.get(row)), c.max), hAlign: c.align ?? 'left'})),
    )
  return table
    .toString()
    .split('\n')
    .map((line) => line.trimEnd())
    .join('\n')
}

let graphemes: Intl.Segmenter | undefined

/**
 * Shortens text to at most max display columns, ending with "…"; never splits a grapheme
 * (a surrogate pair, an emoji sequence, a letter with its combining marks).
 */
export function truncate(text: string, max?: number): string {
  if (max === undefined || stringWidth(text) <= max) return text
  graphemes ??= new Intl.Segmenter(undefined, {granularity: 'grapheme'})
  const room = Math.max(0, max - 1)
  let out = ''
  let width = 0
  for (const {segment} of graphemes.segment(text)) {
    const w = stringWidth(segment)
    if (width + w > room) break
    out += segment
    width += w
  }
  return `${out}…`
}
