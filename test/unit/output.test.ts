import {expect} from 'chai'
import {Chalk} from 'chalk'

import {colorLevel, renderTable} from '../../src/cli/output.js'

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
