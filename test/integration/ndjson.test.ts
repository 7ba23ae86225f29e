import {PassThrough, Readable} from 'node:stream'

import {expect} from 'chai'

import {enqueueNdjson, MAX_LINE_BYTES, type SkippedLine} from '../../src/lib/client/ndjson.js'
import {InterruptedError, UsageError} from '../../src/lib/errors.js'
import {BULK_FLAG} from '../../src/lib/jobs/priority.js'
import {TestSchema} from '../support/db.js'

async function count(t: TestSchema): Promise<number> {
  return Number((await t.query<{n: string}>(`select count(*) as n from ${t.quoted}._private_jobs`))[0]!.n)
}

function lines(n: number, make: (i: number) => string = (i) => JSON.stringify({task: 'job', payload: {i}})): string {
  let text = ''
  for (let i = 0; i < n; i += 1) text += `${make(i)}\n`
  return text
}

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise
  } catch (error) {
    return error as Error
  }
  throw new Error('expected a rejection')
}

describe('bulk enqueue from NDJSON (library, real PostgreSQL)', () => {
  let t: TestSchema
  beforeEach(async () => {
    t = await TestSchema.create({migrated: true, prefix: 'nd'})
  })
  afterEach(async () => {
    await t.drop()
  })

  it('streams: it reads ahead of the database by about two batches, never the whole input', async () => {
    const total = 6000
    const perChunk = 10
    let produced = 0
    let enqueued = 0
    let maxAhead = 0
    async function* source(): AsyncGenerator<string> {
      for (let i = 0; i < total; i += perChunk) {
        maxAhead = Math.max(maxAhead, produced - enqueued)
        produced += perChunk
        yield lines(perChunk, (k) => JSON.stringify({task: 'job', payload: {i: i + k}}))
      }
    }
    const result = await enqueueNdjson(t.db, source(), {batchSize: 100, onProgress: (p) => (enqueued = p.enqueued)})
    expect(result).to.deep.include({lines: total, jobs: total, enqueued: total, skipped: 0})
    expect(await count(t)).to.equal(total)
    // One batch being filled, one in flight, one chunk: far below the 6000 of a whole-input read.
    expect(maxAhead).to.be.at.most(2 * 100 + 2 * perChunk)
    expect(maxAhead).to.be.at.least(100)
  })

  it('all or nothing: an invalid line after batches were sent rolls everything back and names the line', async () => {
    const input = lines(3000) + '{"task": "job", "priority": "urgent"}\n' + lines(10)
    const error = await rejection(enqueueNdjson(t.db, Readable.from([input]), {batchSize: 500}))
    expect(error).to.be.instanceOf(UsageError)
    expect(error.message).to.equal(
      'line 3001: priority "urgent" is not a priority name or an integer; nothing was enqueued',
    )
    expect((error as UsageError).details).to.deep.include({line: 3001})
    expect(await count(t)).to.equal(0)
  })

  it('--skip-invalid: enqueues the valid lines and reports every invalid one with its line number', async () => {
    const input = [
      '{"task":"a","payload":{"n":1}}',
      '{"task":"a","payload":',
      '{"task":"a","maxAttempts":0}',
      '',
      '{"payload":{}}',
      '{"task":"b","runAt":"yesterday"}',
      '{"task":"b","priority":-5}',
    ].join('\n')
    const seen: SkippedLine[] = []
    const result = await enqueueNdjson(t.db, Readable.from([input]), {skipInvalid: true, onSkip: (s) => seen.push(s)})
    expect(result).to.deep.include({lines: 7, jobs: 2, enqueued: 2, skipped: 4})
    expect(result.skippedLines.map((s) => s.line)).to.deep.equal([2, 3, 5, 6])
    expect(result.skippedLines[0]!.reason).to.match(/^invalid JSON/)
    expect(result.skippedLines[2]!.reason).to.equal('missing "task"')
    expect(seen).to.deep.equal(result.skippedLines)
    const rows = await t.query<{priority: number; flags: Record<string, boolean> | null}>(
      `select priority, flags from ${t.quoted}._private_jobs order by priority`,
    )
    expect(rows).to.deep.equal([
      {priority: -5, flags: null},
      {priority: 0, flags: {[BULK_FLAG]: true}},
    ])
  })

  it('handles CRLF, a byte-order mark, blank lines, a last line without newline, and characters split across chunks', async () => {
    const text =
      '\uFEFF{"task":"crlf","payload":{"s":"é"}}\r\n\r\n{"task":"crlf","payload":{"s":"日本"}}\n\n{"task":"crlf","payload":{"s":"😀"}}'
    const bytes = Buffer.from(text, 'utf8')
    // One byte per chunk: every multi-byte character is split.
    const chunks = Array.from(bytes, (b) => Buffer.from([b]))
    const result = await enqueueNdjson(t.db, Readable.from(chunks), {})
    expect(result).to.deep.include({lines: 5, jobs: 3, enqueued: 3})
    const rows = await t.query<{payload: {s: string}}>(`select payload from ${t.quoted}._private_jobs order by id`)
    expect(rows.map((r) => r.payload.s).sort()).to.deep.equal(['é', '日本', '😀'].sort())
  })

  it('repeated keys, both key modes and unsafe_dedupe in one input behave like successive add_job calls', async () => {
    const input =
      lines(4, (i) => JSON.stringify({task: 'k', jobKey: 'same', payload: {i}})) +
      '{"task":"k","jobKey":"d","payload":{"v":1}}\n{"task":"k","jobKey":"d","jobKeyMode":"unsafe_dedupe","payload":{"v":2}}\n'
    const result = await enqueueNdjson(t.db, Readable.from([input]), {batchSize: 1000})
    expect(result.enqueued).to.equal(6)
    const rows = await t.query<{key: string; payload: unknown; revision: number}>(
      `select key, payload, revision from ${t.quoted}._private_jobs order by key`,
    )
    expect(rows).to.deep.equal([
      {key: 'd', payload: {v: 1}, revision: 1},
      {key: 'same', payload: {i: 3}, revision: 3},
    ])
  })

  it('dry run validates every line and writes nothing', async () => {
    const input = lines(20) + 'not json\n' + lines(5)
    const result = await enqueueNdjson(t.db, Readable.from([input]), {dryRun: true})
    expect(result).to.deep.include({dryRun: true, lines: 26, jobs: 25, enqueued: 0, skipped: 1})
    expect(result.skippedLines[0]!.line).to.equal(21)
    expect(await count(t)).to.equal(0)
  })

  it('an abort (SIGINT in the CLI) rolls back, also while waiting on a quiet pipe', async () => {
    const pipe = new PassThrough()
    const controller = new AbortController()
    const pending = enqueueNdjson(t.db, pipe, {batchSize: 10, signal: controller.signal})
    pipe.write(lines(55))
    await new Promise((resolve) => setTimeout(resolve, 200))
    controller.abort()
    const error = await rejection(pending)
    expect(error).to.be.instanceOf(InterruptedError)
    expect(error.message).to.equal('interrupted after 55 lines; nothing was enqueued')
    expect(await count(t)).to.equal(0)
  })

  it('refuses a line longer than the limit instead of buffering without bound', async () => {
    const chunk = 'x'.repeat(1024 * 1024)
    async function* endless(): AsyncGenerator<string> {
      yield '{"task":"ok"}\n{"task":"big","payload":"'
      for (let i = 0; i < MAX_LINE_BYTES / chunk.length + 2; i += 1) yield chunk
      throw new Error('read past the limit')
    }
    const error = await rejection(enqueueNdjson(t.db, endless(), {}))
    expect(error).to.be.instanceOf(UsageError)
    expect(error.message).to.equal('line 2 is longer than 16 MiB; nothing was enqueued')
    expect(await count(t)).to.equal(0)
  })
})
