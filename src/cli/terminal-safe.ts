/**
 * The one sanitizer for untrusted text on its way to a person's terminal (task and queue
 * names, job keys, payloads, errors, worker names): job data must not be able to move the
 * cursor, clear the screen, set the window title (OSC) or hide text. Every C0/C1 control
 * character, DEL, and the bidirectional overrides and isolates are shown as visible escapes
 * (`\x1b`, `\u202e`), so an ESC/CSI/OSC sequence becomes inert text an operator can read.
 * --json output never goes through here: JSON.stringify already escapes control characters
 * and the document stays exact.
 */

// C0 (but \t and \n, handled below), DEL, C1; bidi embeddings/overrides/isolates; line and
// paragraph separators.
const UNSAFE = /[\u0000-\u0008\u000B-\u001F\u007F-\u009F\u2028\u2029\u202A-\u202E\u2066-\u2069]/g

/** What our own styling writes (chalk's SGR colours): the only sequence allowed through the net. */
const SGR = /\u001B\[[0-9;]*m/g

export interface TerminalSafeOptions {
  /**
   * Keep line breaks and tabs (blocks such as a stack trace or pretty JSON). Otherwise the text
   * becomes one line: line breaks show as " ⏎ ", tabs as a space (table cells, one-line fields).
   */
  multiline?: boolean
}

export function terminalSafe(text: string, options: TerminalSafeOptions = {}): string {
  let safe = text
  if (options.multiline) safe = safe.replace(/\r\n/g, '\n')
  else safe = safe.replace(/\s*\n\s*/g, ' ⏎ ').replace(/\t/g, ' ')
  return safe.replace(UNSAFE, escapeChar)
}

/** terminalSafe for a value that may be null or a number (one-line fields of show output). */
export function safeField(value: string | number | bigint | null | undefined): string {
  return value === null || value === undefined ? '' : terminalSafe(String(value))
}

/**
 * The last line of defence for whole lines of human output that already contain our own
 * styling: escapes every control character except line breaks, tabs and (when colour is on)
 * chalk's SGR sequences. Field values are made safe before they are styled; this catches
 * anything a renderer forgot.
 */
export function terminalSafeLines(text: string, keepSgr: boolean): string {
  if (!keepSgr) return terminalSafe(text, {multiline: true})
  let out = ''
  let last = 0
  for (const match of text.matchAll(SGR)) {
    out += terminalSafe(text.slice(last, match.index), {multiline: true}) + match[0]
    last = match.index + match[0].length
  }
  return out + terminalSafe(text.slice(last), {multiline: true})
}

function escapeChar(char: string): string {
  const code = char.charCodeAt(0)
  if (code === 0x0d) return '\\r'
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`
}
