import {expect} from 'chai'

import {decodeCursor, encodeCursor} from '../../src/lib/dlq/entries.js'
import {
  buildSelector,
  describeSelector,
  isEmptySelector,
  parseDuration,
  parseTimeAgo,
  selectorParams,
} from '../../src/lib/dlq/selector.js'
import {UsageError} from '../../src/lib/errors.js'

function usageError(fn: () => unknown): UsageError {
  try {
    fn()
  } catch (error) {
    expect(error).to.be.instanceOf(UsageError)
    return error as UsageError
  }
  throw new Error('expected a UsageError')
}

describe('DLQ selectors', () => {
  const now = Date.parse('2024-05-10T12:00:00Z')

  it('parses durations, alone and combined', () => {
    expect(parseDuration('90s')).to.equal(90_000)
    expect(parseDuration('15m')).to.equal(900_000)
    expect(parseDuration('2h')).to.equal(7_200_000)
    expect(parseDuration('30d')).to.equal(30 * 86_400_000)
    expect(parseDuration('1w')).to.equal(604_800_000)
    expect(parseDuration('1h30m')).to.equal(5_400_000)
    expect(parseDuration('250ms')).to.equal(250)
  })

  it('rejects malformed durations with exit 2', () => {
    for (const bad of ['', '30', 'd', '30x', '-5m', '1h30', 'soon']) {
      const error = usageError(() => parseDuration(bad, '--older-than'))
      expect(error.exitCode).to.equal(2)
      expect(error.message).to.contain('--older-than')
    }
  })

  it('reads times as ISO 8601 or as a duration ago', () => {
    expect(parseTimeAgo('2h', '--since', now).toISOString()).to.equal('2024-05-10T10:00:00.000Z')
    expect(parseTimeAgo('2024-05-01', '--since', now).toISOString()).to.equal('2024-05-01T00:00:00.000Z')
    expect(parseTimeAgo('2024-05-01T10:00:00+02:00', '--since', now).toISOString()).to.equal('2024-05-01T08:00:00.000Z')
    usageError(() => parseTimeAgo('yesterday', '--since', now))
    usageError(() => parseTimeAgo('2024-13-45', '--since', now))
    // A date-time without a zone would depend on the operator's TZ: refused, with the fix.
    expect(usageError(() => parseTimeAgo('2024-05-01T10:00:00', '--since', now)).message).to.contain(
      'needs a time zone',
    )
    expect(parseTimeAgo('2024-05-01T10:00:00Z', '--since', now).toISOString()).to.equal('2024-05-01T10:00:00.000Z')
  })

  it('builds a selector from flag values', () => {
    const selector = buildSelector(
      {
        ids: ['3', '1', '3'],
        tasks: ['a', 'b'],
        queues: [''],
        jobKeys: ['k'],
        since: '2d',
        olderThan: '1d',
        error: 'SMTP',
        group: 'ABCDEF012345',
        limit: 10,
      },
      now,
    )
    expect(selector.ids).to.deep.equal(['3', '1'])
    expect(selector.queues).to.deep.equal([''])
    expect(selector.since?.toISOString()).to.equal('2024-05-08T12:00:00.000Z')
    expect(selector.until?.toISOString()).to.equal('2024-05-09T12:00:00.000Z')
    expect(selector.group).to.equal('abcdef012345')
    expect(selectorParams(selector)).to.deep.equal([
      ['3', '1'],
      ['a', 'b'],
      [''],
      ['k'],
      selector.since,
      selector.until,
      'SMTP',
    ])
  })

  it('--older-than and --until together keep the earlier bound', () => {
    const selector = buildSelector({until: '2024-05-10T00:00:00Z', olderThan: '7d'}, now)
    expect(selector.until?.toISOString()).to.equal('2024-05-03T12:00:00.000Z')
  })

  it('refuses bad ids, groups, limits and empty ranges', () => {
    expect(usageError(() => buildSelector({ids: ['12', 'x']})).code).to.equal('E_BAD_ID')
    expect(usageError(() => buildSelector({ids: ['0']})).code).to.equal('E_BAD_ID')
    expect(usageError(() => buildSelector({ids: ['99999999999999999999']})).code).to.equal('E_BAD_ID')
    expect(usageError(() => buildSelector({group: 'send_email'})).code).to.equal('E_BAD_GROUP')
    expect(usageError(() => buildSelector({limit: 0})).exitCode).to.equal(2)
    expect(usageError(() => buildSelector({since: '1d', until: '2d'}, now)).code).to.equal('E_EMPTY_RANGE')
    expect(usageError(() => buildSelector({error: '  '})).exitCode).to.equal(2)
  })

  it('an empty selection is only "no filter" (--limit does not select anything)', () => {
    expect(isEmptySelector({})).to.equal(true)
    expect(isEmptySelector({limit: 5})).to.equal(true)
    expect(isEmptySelector({tasks: []})).to.equal(true)
    expect(isEmptySelector({tasks: ['a']})).to.equal(false)
    expect(isEmptySelector({queues: ['']})).to.equal(false)
    expect(isEmptySelector({group: 'abcdef012345'})).to.equal(false)
    expect(describeSelector({limit: 5})).to.deep.equal({limit: 5, all: true})
    expect(describeSelector({tasks: ['a']})).to.deep.equal({tasks: ['a']})
  })

  it('list cursors round-trip and reject tampering', () => {
    const cursor = encodeCursor({failedAt: '2024-05-01T10:00:00.123456Z', id: '42'})
    expect(decodeCursor(cursor)).to.deep.equal({failedAt: '2024-05-01T10:00:00.123456Z', id: '42'})
    expect(usageError(() => decodeCursor('not-a-cursor')).code).to.equal('E_BAD_CURSOR')
    expect(
      usageError(() => decodeCursor(Buffer.from('2024-05-01T10:00:00.123456Z|0; drop table x').toString('base64url')))
        .code,
    ).to.equal('E_BAD_CURSOR')
  })
})
