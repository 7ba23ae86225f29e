/**
 * A one-line progress display on stderr, redrawn in place at most ten times a second. Only
 * for terminals: callers create it when stderr is a TTY, so logs and pipes never see it.
 */
export interface ProgressState {
  /** Work done (e.g. jobs read). */
  count: number
  /** Bytes read and the input's size, when known (a file), for a percentage. */
  bytes?: number
  totalBytes?: number
  /** Extra text after the counts. */
  note?: string
}

const WIDTH = 24

export class ProgressLine {
  private readonly stream: NodeJS.WriteStream
  private readonly unit: string
  private readonly started = performance.now()
  private last = 0
  private drawn = false

  constructor(stream: NodeJS.WriteStream, unit: string) {
    this.stream = stream
    this.unit = unit
  }

  update(state: ProgressState, force = false): void {
    const now = performance.now()
    if (!force && now - this.last < 100) return
    this.last = now
    const seconds = (now - this.started) / 1000
    const rate = seconds > 0 ? Math.round(state.count / seconds) : 0
    let bar = ''
    if (state.totalBytes && state.bytes !== undefined) {
      const fraction = Math.min(1, state.bytes / state.totalBytes)
      const filled = Math.round(fraction * WIDTH)
      bar = `[${'#'.repeat(filled)}${'.'.repeat(WIDTH - filled)}] ${String(Math.floor(fraction * 100)).padStart(3)}%  `
    }
    const text = `${bar}${state.count.toLocaleString('en-US')} ${this.unit}  ${rate.toLocaleString('en-US')} ${this.unit}/s  ${seconds.toFixed(1)} s${state.note ? `  ${state.note}` : ''}`
    const columns = this.stream.columns || 80
    this.stream.write(`\r${text.slice(0, Math.max(10, columns - 1))}\u001B[K`)
    this.drawn = true
  }

  /** Removes the line (before printing anything else on stderr, and at the end). */
  clear(): void {
    if (this.drawn) this.stream.write('\r\u001B[K')
    this.drawn = false
  }
}
