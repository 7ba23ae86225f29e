import {expect} from 'chai'
import {Chalk} from 'chalk'

import {colorLevel, renderTable, stringWidth, truncate} from '../../src/cli/output.js'
import {terminalSafe, terminalSafeLines} from '../../src/cli/terminal-safe.js'

const tty = {isTTY: true} as NodeJS.WriteStream
const pipe = {isTTY: false} as NodeJS.WriteStream

describe('colour decisions', () => {
  it('colours terminals only', () => {
    expect(colorLevel(tty, false, {})).to.equal(1)
    expect(colorLevel(pipe, false, {})).to.equal(0)
  })

  it('honours NO_COLOR and --no-color, even on a terminal', () => {
    expect(colorLevel(tty, false, {NO_COLOR: '1'})).to.equal(0)
    expect(colorLevel(tty, true, {})).to.equal(0)
  })

  it('FORCE_COLOR colours a pipe, but NO_COLOR wins', () => {
    expect(colorLevel(pipe, false, {FORCE_COLOR: '1'})).to.equal(1)
    expect(colorLevel(pipe, false, {FORCE_COLOR: '1', NO_COLOR: '1'})).to.equal(0)
  })
})

describe('tables', () => {
  it('renders aligned, borderless columns without escape codes when colour is off', () => {
    const text = renderTable(
      [
        {id: '1', task: 'send_email'},
        {id: '22', task: 'x\ny'},
      ],
      [
        {header: 'ID', get: (r) => r.id, align: 'right'},
        {header: 'TASK', get: (r) => r.task},
      ],
      new Chalk({level: 0}),
    )
    expect(text).to.equal('ID  TASK\n 1  send_email\n22  x ⏎ y')
  })
})

describe('tables with wide characters and hostile text', () => {
  // Column start positions in display columns, found from the header line.
  const starts = (header: string, names: readonly string[]): number[] =>
    names.map((name) => stringWidth(header.slice(0, header.indexOf(name))))

  const rows = [
    {id: '1', task: '日本語のタスク', queue: 'q1', n: '5'},
    {id: '22', task: 'deploy 🚀👨‍👩‍👧 done', queue: 'キュー', n: '1234'},
    {id: '333', task: 'evil\u001B[2J\u001B]0;pwned\u0007', queue: 'a\u009B31mb', n: '7'},
    {id: '4', task: 'e\u0301clair \u202Eevil', queue: 'x\ry', n: '0'},
  ]
  const columns = [
    {header: 'ID', get: (r: (typeof rows)[number]) => r.id, align: 'right' as const},
    {header: 'TASK', get: (r: (typeof rows)[number]) => r.task},
    {header: 'QUEUE', get: (r: (typeof rows)[number]) => r.queue},
    {header: 'N', get: (r: (typeof rows)[number]) => r.n, align: 'right' as const},
  ]

  for (const level of [0, 1] as const) {
    it(`aligns columns by display width and lets no control character through (colour level ${level})`, () => {
      const text = renderTable(rows, columns, new Chalk({level}))
      // With colour, the header's bold SGR is the only escape sequence; without, there is none.
      const withoutOurStyling = text.replace(/\u001B\[(1|22)m/g, '')
      expect(withoutOurStyling).to.not.match(/[\u0000-\u0009\u000B-\u001F\u007F-\u009F\u202A-\u202E]/)
      if (level === 0) expect(text).to.not.include('\u001B')
      const lines = withoutOurStyling.split('\n')
      expect(lines).to.have.length(5)
      const header = lines[0] ?? ''
      const taskStart = starts(header, ['TASK'])[0] ?? -1
      const queueStart = starts(header, ['QUEUE'])[0] ?? -1
      const lastEnd = stringWidth(lines.reduce((a, b) => (stringWidth(a) > stringWidth(b) ? a : b)))
      for (const [i, row] of rows.entries()) {
        const line = lines[i + 1] ?? ''
        // The task starts at TASK, the queue at QUEUE, counted in display columns.
        const shownTask = terminalSafe(row.task)
        const at = line.indexOf(shownTask)
        expect(at, `task shown escaped on line ${i}`).to.be.greaterThan(0)
        expect(stringWidth(line.slice(0, at))).to.equal(taskStart)
        const queueAt = line.indexOf(terminalSafe(row.queue), at + shownTask.length)
        expect(stringWidth(line.slice(0, queueAt)), `queue column on line ${i}`).to.equal(queueStart)
        // N is right-aligned: every line that is not trimmed ends at the same display column.
        expect(stringWidth(line), `line ${i} ends at the last column`).to.equal(lastEnd)
      }
      expect(text).to.include('evil\\x1b[2J\\x1b]0;pwned\\x07')
      expect(text).to.include('a\\x9b31mb')
      expect(text).to.include('x\\ry')
      expect(text).to.include('\\u202eevil')
    })
  }

  it('truncates by display width without splitting a surrogate pair or a grapheme', () => {
    expect(truncate('日本語のタスク', 7)).to.equal('日本語…')
    expect(stringWidth(truncate('日本語のタスク', 7))).to.equal(7)
    expect(truncate('ab🚀🚀🚀', 4)).to.equal('ab…')
    expect(truncate('ab🚀🚀🚀', 5)).to.equal('ab🚀…')
    expect(truncate('👨‍👩‍👧👨‍👩‍👧', 3)).to.equal('👨‍👩‍👧…')
    expect(truncate('e\u0301e\u0301e\u0301e\u0301', 3)).to.equal('e\u0301e\u0301…')
    expect(truncate('short', 10)).to.equal('short')
    for (let max = 1; max < 12; max++) {
      const cut = truncate('x🚀日本👨‍👩‍👧 end', max)
      expect(cut, `max ${max}`).to.not.match(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/)
      expect(stringWidth(cut)).to.be.at.most(max)
    }
  })

  it('a truncated table cell stays aligned', () => {
    const text = renderTable(
      [
        {a: '日本語のタスク名前', b: 'x'},
        {a: 'ok', b: 'y'},
      ],
      [
        {header: 'A', get: (r: {a: string; b: string}) => r.a, max: 6},
        {header: 'B', get: (r: {a: string; b: string}) => r.b},
      ],
      new Chalk({level: 0}),
    )
    expect(text).to.equal('A      B\n日本…  x\nok     y')
  })
})

describe('terminalSafe', () => {
  it('shows every control character as a visible escape and keeps printable text', () => {
    expect(terminalSafe('evil\u001B[2J\u001B]0;pwned\u0007')).to.equal('evil\\x1b[2J\\x1b]0;pwned\\x07')
    expect(terminalSafe('\u009B2J\u009D0;t\u009C')).to.equal('\\x9b2J\\x9d0;t\\x9c')
    expect(terminalSafe('a\u0000b\u007Fc\u0008')).to.equal('a\\x00b\\x7fc\\x08')
    expect(terminalSafe('日本 🚀 é')).to.equal('日本 🚀 é')
  })

  it('makes one line of a multi-line value, or keeps lines and tabs for blocks', () => {
    expect(terminalSafe('Error: x\n    at f (a.js:1)\r\n\tat g')).to.equal('Error: x ⏎ at f (a.js:1) ⏎ at g')
    expect(terminalSafe('Error: x\r\n\tat g\rz', {multiline: true})).to.equal('Error: x\n\tat g\\rz')
  })

  it('the line net keeps our SGR colours only when colour is on', () => {
    const styled = `\u001B[1mTask:\u001B[22m evil\u001B[2J`
    expect(terminalSafeLines(styled, true)).to.equal('\u001B[1mTask:\u001B[22m evil\\x1b[2J')
    expect(terminalSafeLines(styled, false)).to.equal('\\x1b[1mTask:\\x1b[22m evil\\x1b[2J')
  })
})
