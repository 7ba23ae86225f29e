import {expect} from 'chai'

import {UsageError} from '../../src/lib/errors.js'
import {decodeJobCursor, encodeJobCursor} from '../../src/lib/jobs/list.js'
import {
  buildJobSelector,
  describeJobSelector,
  isEmptyJobSelector,
  jobSelectorParams,
  parsePriorityRange,
} from '../../src/lib/jobs/selector.js'
import {deriveState} from '../../src/lib/jobs/states.js'
import {buildCommonSelector} from '../../src/lib/selector.js'

function usageError(fn: () => unknown): UsageError {
  try {
    fn()
  } catch (error) {
    expect(error).to.be.instanceOf(UsageError)
    return error as UsageError
  }
  throw new Error('expected a UsageError')
}

describe('job selectors', () => {
  const now = Date.parse('2024-05-10T12:00:00Z')

  it('reads priorities, names and inclusive ranges', () => {
    expect(parsePriorityRange('5')).to.deep.equal({min: 5, max: 5})
    expect(parsePriorityRange('fast')).to.deep.equal({min: -5, max: -5})
    expect(parsePriorityRange('-10..-1')).to.deep.equal({min: -10, max: -1})
    expect(parsePriorityRange('0..')).to.deep.equal({min: 0, max: 32767})
    expect(parsePriorityRange('..-1')).to.deep.equal({min: -32768, max: -1})
    expect(parsePriorityRange('emergency..fast')).to.deep.equal({min: -20, max: -5})
    expect(usageError(() => parsePriorityRange('..')).code).to.equal('E_BAD_PRIORITY')
    expect(usageError(() => parsePriorityRange('5..1', '--priority')).message).to.contain('--priority')
    expect(usageError(() => parsePriorityRange('40000')).exitCode).to.equal(2)
  })

  it('builds a selector: states, flags, priorities, the time field, and the shared fields', () => {
    const selector = buildJobSelector(
      {
        ids: ['7', '7', '9'],
        tasks: ['send_email'],
        queues: [''],
        states: ['Ready', 'retrying', 'ready'],
        flags: ['tenant:1'],
        priorities: ['fast', '0..'],
        since: '2d',
        timeField: 'run-at',
        error: 'smtp',
        limit: 100,
      },
      {now},
    )
    expect(selector).to.deep.include({ids: ['7', '9'], states: ['ready', 'retrying'], timeField: 'run_at', limit: 100})
    expect(selector.since?.toISOString()).to.equal('2024-05-08T12:00:00.000Z')
    expect(jobSelectorParams(selector)).to.deep.equal([
      ['7', '9'],
      ['send_email'],
      [''],
      null,
      selector.since,
      null,
      true,
      'smtp',
      ['ready', 'retrying'],
      ['tenant:1'],
      [-5, 0],
      [-5, 32767],
    ])
    expect(describeJobSelector(selector)).to.deep.equal({
      ids: ['7', '9'],
      tasks: ['send_email'],
      queues: [''],
      since: '2024-05-08T12:00:00.000Z',
      error: 'smtp',
      timeField: 'run_at',
      states: ['ready', 'retrying'],
      flags: ['tenant:1'],
      priorities: ['-5', '0..'],
      limit: 100,
    })
  })

  it('an empty selection has no filter at all; --limit alone selects nothing', () => {
    expect(isEmptyJobSelector({})).to.equal(true)
    expect(isEmptyJobSelector({limit: 3})).to.equal(true)
    expect(isEmptyJobSelector({states: ['ready']})).to.equal(false)
    expect(isEmptyJobSelector({priorities: [{min: 0, max: 0}]})).to.equal(false)
    expect(describeJobSelector({limit: 3})).to.deep.equal({limit: 3, all: true})
  })

  it('refuses unknown states and time fields, naming the input as the caller does', () => {
    const labels = {states: '--state', timeField: '--time-field', since: '--since'}
    expect(usageError(() => buildJobSelector({states: ['stuck']}, {labels})).message).to.equal(
      'invalid --state "stuck": expected one of ready, scheduled, running, retrying, exhausted, blocked',
    )
    expect(usageError(() => buildJobSelector({timeField: 'updated'}, {labels})).message).to.contain('--time-field')
    expect(usageError(() => buildJobSelector({since: '1d', until: '2d'}, {labels, now})).code).to.equal('E_EMPTY_RANGE')
  })

  it('the shared grammar accepts parsed values (Date, milliseconds) as typed flags give them', () => {
    const selector = buildCommonSelector({since: new Date(now - 120_000), olderThan: 60_000}, {now})
    expect(selector.since?.getTime()).to.equal(now - 120_000)
    expect(selector.until?.getTime()).to.equal(now - 60_000)
    expect(usageError(() => buildCommonSelector({since: new Date(Number.NaN)})).code).to.equal('E_BAD_TIME')
  })

  it('derives states in the documented order (first match wins)', () => {
    const at = new Date(now)
    const base = {lockedAt: null, attempts: 0, maxAttempts: 8, runAt: new Date(now - 1), queueLocked: false}
    expect(deriveState(base, at)).to.equal('ready')
    expect(deriveState({...base, queueLocked: true}, at)).to.equal('blocked')
    expect(deriveState({...base, runAt: new Date(now + 1)}, at)).to.equal('scheduled')
    expect(deriveState({...base, runAt: new Date(now + 1), attempts: 2}, at)).to.equal('retrying')
    expect(deriveState({...base, attempts: 8, queueLocked: true}, at)).to.equal('exhausted')
    expect(deriveState({...base, attempts: 8, lockedAt: at}, at)).to.equal('running')
  })

  it('list cursors round-trip per sort order and reject tampering', () => {
    const newest = encodeJobCursor({sort: 'newest', id: '42'})
    expect(decodeJobCursor(newest, 'newest')).to.deep.equal({sort: 'newest', id: '42'})
    const next = encodeJobCursor({sort: 'next', priority: -5, runAt: '2024-05-01T10:00:00.123456Z', id: '7'})
    expect(decodeJobCursor(next, 'next')).to.deep.equal({
      sort: 'next',
      priority: -5,
      runAt: '2024-05-01T10:00:00.123456Z',
      id: '7',
    })
    expect(usageError(() => decodeJobCursor(newest, 'next')).code).to.equal('E_BAD_CURSOR')
    expect(usageError(() => decodeJobCursor(Buffer.from('n|1; drop').toString('base64url'), 'newest')).code).to.equal(
      'E_BAD_CURSOR',
    )
  })
})
