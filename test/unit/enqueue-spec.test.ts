import {expect} from 'chai'

import {serialFor} from '../../src/lib/client/helpers.js'
import {parseNdjsonLine} from '../../src/lib/client/ndjson.js'
import {
  parseDuration,
  parseMaxAttempts,
  parsePayloadJson,
  parsePriority,
  parseRunAt,
  payloadText,
  prepareJob,
  validateJobKey,
  validateQueue,
  validateTask,
} from '../../src/lib/client/spec.js'
import {UsageError} from '../../src/lib/errors.js'
import {BULK_FLAG} from '../../src/lib/jobs/priority.js'

function usageError(fn: () => unknown): UsageError {
  try {
    fn()
  } catch (error) {
    expect(error).to.be.instanceOf(UsageError)
    expect((error as UsageError).exitCode).to.equal(2)
    return error as UsageError
  }
  throw new Error('expected a UsageError, nothing was thrown')
}

describe('enqueue input validation (no database)', () => {
  it('priority: the crate names, integers in smallint range, nothing else', () => {
    expect(
      ['emergency', 'critical', 'fast', 'bulk', 'bulk-low', 'bulk-lowest'].map((n) => parsePriority(n)),
    ).to.deep.equal([-20, -10, -5, 0, 5, 10])
    expect(parsePriority('FAST')).to.equal(-5)
    expect(parsePriority('-32768')).to.equal(-32768)
    expect(parsePriority(32767)).to.equal(32767)
    expect(parsePriority(undefined)).to.equal(0)
    expect(usageError(() => parsePriority('urgent', '--priority')).message).to.equal(
      '--priority "urgent" is not a priority name or an integer',
    )
    expect(usageError(() => parsePriority('32768')).message).to.contain('outside -32768..32767')
    expect(usageError(() => parsePriority(-32769)).message).to.contain('outside -32768..32767')
    expect(usageError(() => parsePriority(1.5)).message).to.contain('not an integer')
    expect(usageError(() => parsePriority('1e3')).message).to.contain('not a priority name')
    expect(usageError(() => parsePriority(true)).message).to.contain('must be a name or an integer')
  })

  it("max attempts: 1..32767, default 8 (the crate), not graphile's 25", () => {
    expect(parseMaxAttempts(undefined)).to.equal(8)
    expect(parseMaxAttempts('3')).to.equal(3)
    expect(parseMaxAttempts(32767)).to.equal(32767)
    expect(usageError(() => parseMaxAttempts('0', '--max-attempts')).message).to.equal(
      '--max-attempts 0 is outside 1..32767',
    )
    expect(usageError(() => parseMaxAttempts('-1')).message).to.contain('outside 1..32767')
    expect(usageError(() => parseMaxAttempts('32768')).message).to.contain('outside 1..32767')
    expect(usageError(() => parseMaxAttempts('three')).message).to.contain('not an integer')
    expect(usageError(() => parseMaxAttempts(2.5)).message).to.contain('not an integer')
  })

  it('run at: ISO 8601 with a time zone only', () => {
    expect(parseRunAt('2030-01-31T09:00:00Z')!.toISOString()).to.equal('2030-01-31T09:00:00.000Z')
    expect(parseRunAt('2030-01-31T10:00:00+01:00')!.toISOString()).to.equal('2030-01-31T09:00:00.000Z')
    expect(parseRunAt('2030-01-31 10:30+0130')!.toISOString()).to.equal('2030-01-31T09:00:00.000Z')
    expect(parseRunAt('2030-01-31T09:00:00.123456Z')!.toISOString()).to.equal('2030-01-31T09:00:00.123Z')
    expect(parseRunAt(undefined)).to.equal(null)
    for (const bad of [
      'tomorrow',
      '2030-01-31T09:00:00',
      '2030-01-31',
      '2030-02-30T00:00:00Z',
      '2030-13-01T00:00:00Z',
      '2030-01-01T24:00:00Z',
      '',
    ]) {
      usageError(() => parseRunAt(bad, '--run-at'))
    }
    expect(usageError(() => parseRunAt('2030-01-31T09:00:00')).suggestions[0]).to.contain('time zone')
  })

  it('durations: 30s, 10m, 2h, 1h30m, 500ms, 1d', () => {
    expect(parseDuration('30s')).to.equal(30_000)
    expect(parseDuration('10m')).to.equal(600_000)
    expect(parseDuration('2h')).to.equal(7_200_000)
    expect(parseDuration('1h30m')).to.equal(5_400_000)
    expect(parseDuration('500ms')).to.equal(500)
    expect(parseDuration('1.5d')).to.equal(129_600_000)
    // One parser for the whole CLI: spaces between parts are allowed ("1h 30m"), words are not.
    expect(parseDuration('1h 30m')).to.equal(5_400_000)
    for (const bad of ['10', 'ten minutes', '5 minutes', '-5m', '', 'm'])
      usageError(() => parseDuration(bad, '--delay'))
  })

  it("task, queue and job key limits are graphile-worker's, counted in characters as PostgreSQL does", () => {
    expect(validateTask('a'.repeat(128))).to.have.length(128)
    expect(usageError(() => validateTask('a'.repeat(129))).message).to.equal(
      'task is 129 characters long; graphile-worker allows at most 128',
    )
    // 128 astral characters are 256 UTF-16 units but 128 characters for PostgreSQL's length().
    expect(() => validateTask('😀'.repeat(128))).not.to.throw()
    usageError(() => validateTask(''))
    usageError(() => validateTask('   '))
    usageError(() => validateTask(42))
    expect(validateQueue(undefined)).to.equal(null)
    usageError(() => validateQueue(''))
    usageError(() => validateQueue('q'.repeat(129)))
    expect(validateJobKey('k'.repeat(512))).to.have.length(512)
    expect(usageError(() => validateJobKey('k'.repeat(513), '--job-key')).message).to.equal(
      '--job-key is 513 characters long; graphile-worker allows at most 512',
    )
    usageError(() => validateJobKey(''))
  })

  it('payloads: any JSON value, {} by default; NUL characters are refused (jsonb cannot hold them)', () => {
    expect(payloadText(undefined)).to.equal('{}')
    expect(payloadText(null)).to.equal('{}')
    expect(payloadText([1, 2])).to.equal('[1,2]')
    expect(parsePayloadJson('{"to": "ada@example.com"}')).to.equal('{"to":"ada@example.com"}')
    expect(usageError(() => parsePayloadJson('{to: ada}')).message).to.match(/^payload is not valid JSON: /)
    usageError(() => parsePayloadJson(''))
    usageError(() => payloadText({s: 'a\u0000b'}))
    // An escaped backslash followed by "u0000" is ordinary text, not a NUL.
    expect(payloadText({s: '\\u0000'})).to.equal('{"s":"\\\\u0000"}')
    usageError(() => payloadText({n: 10n}))
    const circular: Record<string, unknown> = {}
    circular.self = circular
    usageError(() => payloadText(circular))
  })

  it('prepareJob applies the crate defaults and the bulk flag for priority >= 0', () => {
    const bulk = prepareJob('send_email', {to: 'a'})
    expect(bulk).to.deep.include({
      task: 'send_email',
      payload: '{"to":"a"}',
      queue: null,
      runAt: null,
      maxAttempts: 8,
      jobKey: null,
      jobKeyMode: 'replace',
      priority: 0,
    })
    expect(bulk.flags).to.deep.equal([BULK_FLAG])
    expect(prepareJob('t', {}, {priority: -5}).flags).to.equal(null)
    expect(prepareJob('t', {}, {priority: 5, flags: ['x', BULK_FLAG]}).flags).to.deep.equal(['x', BULK_FLAG])
    expect(prepareJob('t', {}, {priority: -10, flags: ['x']}).flags).to.deep.equal(['x'])
  })

  it("serialFor gives the crate's entity:id queue names", () => {
    expect(serialFor('user', 42)).to.equal('user:42')
    expect(serialFor('account', 'abc')).to.equal('account:abc')
  })

  describe('NDJSON lines', () => {
    it('reads every field and fills the rest from the defaults', () => {
      const job = parseNdjsonLine(
        '{"task":"charge","payload":{"id":1},"priority":"fast","queue":"user:1","runAt":"2030-01-01T00:00:00Z","jobKey":"charge:1","jobKeyMode":"preserve_run_at","maxAttempts":3,"flags":["f"]}',
      )
      expect(job).to.deep.include({
        task: 'charge',
        payload: '{"id":1}',
        priority: -5,
        queue: 'user:1',
        jobKey: 'charge:1',
        jobKeyMode: 'preserve_run_at',
        maxAttempts: 3,
      })
      expect(job.runAt!.toISOString()).to.equal('2030-01-01T00:00:00.000Z')
      expect(job.flags).to.deep.equal(['f'])
      const defaults = {task: 'reindex', priority: 5, queue: 'serial', maxAttempts: 2, flags: ['d']}
      const filled = parseNdjsonLine('{"payload":[1]}', defaults)
      expect(filled).to.deep.include({task: 'reindex', payload: '[1]', priority: 5, queue: 'serial', maxAttempts: 2})
      expect(filled.flags).to.deep.equal(['d', BULK_FLAG])
      // An explicit null queue overrides a default queue: parallel.
      expect(parseNdjsonLine('{"queue":null}', defaults).queue).to.equal(null)
      expect(parseNdjsonLine('{"task":"t"}').payload).to.equal('{}')
    })

    it('names the problem of a bad line', () => {
      expect(usageError(() => parseNdjsonLine('{"task":')).message).to.match(/^invalid JSON \(/)
      expect(usageError(() => parseNdjsonLine('[1]')).message).to.equal('expected a JSON object, got an array')
      expect(usageError(() => parseNdjsonLine('{"payload":{}}')).message).to.equal('missing "task"')
      expect(usageError(() => parseNdjsonLine('{"task":""}')).message).to.equal('task is empty')
      expect(usageError(() => parseNdjsonLine('{"task":"t","priority":"urgent"}')).message).to.contain(
        '"urgent" is not a priority name',
      )
      expect(usageError(() => parseNdjsonLine('{"task":"t","runAt":"soon"}')).message).to.contain(
        'runAt "soon" is not an ISO 8601 date-time',
      )
      expect(usageError(() => parseNdjsonLine('{"task":"t","run_at":"2030-01-01T00:00:00Z"}')).message).to.equal(
        'unknown field "run_at" (did you mean "runAt"?)',
      )
      expect(usageError(() => parseNdjsonLine('{"task":"t","maxAttempts":0}')).message).to.contain('outside 1..32767')
      expect(usageError(() => parseNdjsonLine('{"task":"t","flags":"x"}')).message).to.contain('must be an array')
    })
  })
})

describe('payload numbers exactly as written (no database)', () => {
  it('keeps every number lexeme of --payload and NDJSON payloads as written', () => {
    for (const lexeme of [
      '9007199254740993',
      '1e999',
      '1E+5',
      '-2.5e-8',
      '1.50',
      '0.0000001',
      '-0',
      '123456789012345678901234',
      '0.1',
      '12345.678',
      '-12',
      '0.000001',
    ]) {
      expect(parsePayloadJson(`{"v":${lexeme}}`), lexeme).to.equal(`{"v":${lexeme}}`)
      expect(parseNdjsonLine(`{"task":"t","payload":{"v":[${lexeme}]}}`).payload, lexeme).to.equal(`{"v":[${lexeme}]}`)
    }
  })

  it('gives back random numbers of any precision and form exactly (fast and exact paths agree)', () => {
    let seed = 42
    const random = (): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31
      return seed / 2 ** 31
    }
    for (let i = 0; i < 3000; i++) {
      const magnitude = 10 ** Math.floor(random() * 60 - 30)
      const value = (random() - 0.5) * magnitude
      const lexeme = i % 3 === 0 ? value.toPrecision(1 + Math.floor(random() * 21)) : String(value)
      expect(parsePayloadJson(`[${lexeme}]`), lexeme).to.equal(`[${lexeme}]`)
    }
  })

  it('refuses a payload whose keys repeat with different values only when its numbers need the exact path', () => {
    expect(parsePayloadJson('{"a":1,"a":2}')).to.equal('{"a":2}')
    expect(() => parsePayloadJson('{"a":1e999,"a":2}')).to.throw(UsageError, /ambiguous.*Duplicate key/)
  })

  it('names an unknown NDJSON field __proto__ as such (no alias from the prototype)', () => {
    expect(() => parseNdjsonLine('{"task":"t","__proto__":{}}')).to.throw(UsageError, /^unknown field "__proto__"$/)
    expect(() => parseNdjsonLine('{"task":"t","constructor":1}')).to.throw(UsageError, /^unknown field "constructor"$/)
  })
})

describe('strings PostgreSQL cannot store (no database)', () => {
  it('refuses U+0000 and lone surrogates in task, queue, job key and flags; keeps surrogate pairs', () => {
    for (const bad of ['a\u0000b', 'x\ud800', '\udc00y', 'z\udbff\u0041']) {
      expect(() => validateTask(bad), JSON.stringify(bad)).to.throw(UsageError, /^task contains/)
      expect(() => validateQueue(bad), JSON.stringify(bad)).to.throw(UsageError, /^queue contains/)
      expect(() => validateJobKey(bad), JSON.stringify(bad)).to.throw(UsageError, /^job key contains/)
      expect(() => prepareJob('t', {}, {flags: [bad]}), JSON.stringify(bad)).to.throw(UsageError, /^flags contains/)
    }
    expect(validateTask('send_😀')).to.equal('send_😀')
  })

  it('refuses escaped lone surrogates in payloads, but not escaped backslashes or pairs', () => {
    expect(() => parsePayloadJson('{"s":"\\ud800"}')).to.throw(UsageError, /lone UTF-16 surrogate/)
    expect(() => parsePayloadJson('{"s":"\\udc00"}')).to.throw(UsageError, /lone UTF-16 surrogate/)
    expect(() => parsePayloadJson('{"s":"\\ud800\\u0041", "n": 1e999}')).to.throw(UsageError, /lone UTF-16 surrogate/)
    expect(parsePayloadJson('{"s":"\\\\ud800"}')).to.equal('{"s":"\\\\ud800"}')
    expect(parsePayloadJson('{"s":"\\ud83d\\ude00"}')).to.equal('{"s":"😀"}')
    expect(parsePayloadJson('{"s":"\\ud83d\\ude00","n":1e999}')).to.equal('{"s":"😀","n":1e999}')
  })
})
