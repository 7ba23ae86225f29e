import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import {expect} from 'chai'

import {parseJson, type CliResult} from '../support/cli.js'
import {TestSchema, testUrl} from '../support/db.js'
import {runInProcess} from '../support/in-process.js'
import {enqueueNdjson} from '../../src/lib/client/ndjson.js'

/** Lines PostgreSQL would refuse are caught before it, with their line numbers (in process). */
describe('enqueue --ndjson: lines PostgreSQL cannot store (in process)', function () {
  this.timeout(120_000)
  let t: TestSchema
  let dir: string
  const cli = (args: string[]): Promise<CliResult> =>
    runInProcess(['enqueue', ...args, '--schema', t.schema], {env: {DATABASE_URL: testUrl()}})
  const count = async (): Promise<number> => (await t.query(`select id from ${t.quoted}._private_jobs`)).length
  const file = (name: string, text: string | Buffer): string => {
    const at = path.join(dir, name)
    writeFileSync(at, text)
    return at
  }

  beforeEach(async () => {
    t = await TestSchema.create({migrated: true, prefix: 'ndbad'})
    dir = mkdtempSync(path.join(os.tmpdir(), 'bf-ndbad-'))
  })
  afterEach(async () => {
    await t.drop()
    rmSync(dir, {recursive: true, force: true})
  })

  const BAD_LINES = [
    '{"task":"a\\u0000b"}',
    '{"task":"t","queue":"q\\u0000"}',
    '{"task":"t","jobKey":"k\\u0000"}',
    '{"task":"t","flags":["f\\u0000"]}',
    '{"task":"t","payload":{"s":"x\\u0000"}}',
    '{"task":"t","payload":{"k\\u0000":1}}',
    '{"task":"t\\ud800"}',
    '{"task":"t","queue":"\\udc00q"}',
    '{"task":"t","payload":{"s":"\\ud800"}}',
    '{"task":"t","payload":{"s":"\\udc00x"}}',
  ]

  it('a NUL or a lone surrogate in any field: exit 2 naming the line, nothing enqueued', async () => {
    for (const bad of BAD_LINES) {
      const source = file('bad.ndjson', `{"task":"ok"}\n${bad}\n{"task":"ok"}\n`)
      const result = await cli(['--ndjson', source, '--json'])
      expect(result.code, `${bad}: ${result.stdout}`).to.equal(2)
      const error = parseJson<{error: {message: string; details: {line: number}}}>(result).error
      expect(error.details.line, bad).to.equal(2)
      expect(error.message, bad).to.match(/^line 2: .*(U\+0000|lone UTF-16 surrogate)/)
      expect(await count()).to.equal(0)
    }
  })

  it('--skip-invalid skips them and enqueues the rest; a good emoji pair is stored', async () => {
    const source = file(
      'mixed.ndjson',
      ['{"task":"ok","payload":{"e":"\\ud83d\\ude00"}}', ...BAD_LINES, '{"task":"ok"}'].join('\n'),
    )
    const result = await cli(['--ndjson', source, '--skip-invalid', '--json'])
    expect(result.code, result.stdout + result.stderr).to.equal(0)
    const doc = parseJson<{enqueued: number; skipped: number; skippedLines: {line: number}[]}>(result)
    expect(doc.enqueued).to.equal(2)
    expect(doc.skipped).to.equal(BAD_LINES.length)
    expect(doc.skippedLines.map((s) => s.line)).to.deep.equal(BAD_LINES.map((_, i) => i + 2))
    const [first] = await t.query<{p: string}>(
      `select payload::text as p from ${t.quoted}._private_jobs order by id limit 1`,
    )
    expect(JSON.parse(first!.p)).to.deep.equal({e: '😀'})
  })

  it('a line over 16 MiB: exit 2 naming it, or skipped with --skip-invalid (also as the last line)', async () => {
    const huge = `{"task":"big","payload":"${'x'.repeat(17 * 1024 * 1024)}"}`
    for (const [name, text, skippedLines] of [
      ['middle.ndjson', `{"task":"ok"}\n${huge}\n{"task":"ok"}\n`, [2]],
      ['last.ndjson', `{"task":"ok"}\n{"task":"ok"}\n${huge}`, [3]],
    ] as const) {
      const source = file(name, text)
      const refused = await cli(['--ndjson', source])
      expect(refused.code, refused.stderr).to.equal(2)
      expect(refused.stderr).to.contain(`line ${skippedLines[0]} is longer than 16 MiB; nothing was enqueued`)
      expect(await count()).to.equal(0)
      const skipped = await cli(['--ndjson', source, '--skip-invalid', '--json'])
      expect(skipped.code, skipped.stderr).to.equal(0)
      const doc = parseJson<{lines: number; enqueued: number; skippedLines: {line: number; reason: string}[]}>(skipped)
      expect(doc).to.include({lines: 3, enqueued: 2})
      expect(doc.skippedLines).to.deep.equal([{line: skippedLines[0], reason: 'longer than 16 MiB'}])
      await t.query(`delete from ${t.quoted}._private_jobs`)
    }
  })

  it('bytes that are not UTF-8: exit 2 naming the line, or skipped with --skip-invalid', async () => {
    const source = file(
      'latin1.ndjson',
      Buffer.concat([
        Buffer.from('{"task":"ok","payload":{"name":"Zoë 😀"}}\n'),
        Buffer.from('{"task":"ok","payload":{"name":"Zo\xeb"}}\n', 'latin1'),
        Buffer.from('{"task":"ok"}\n{"task":"cut","payload":"'),
        Buffer.from([0xe2, 0x82]), // a character cut off by the end of the input
      ]),
    )
    const refused = await cli(['--ndjson', source])
    expect(refused.code, refused.stderr).to.equal(2)
    expect(refused.stderr).to.contain('line 2: not valid UTF-8; nothing was enqueued')
    expect(await count()).to.equal(0)
    const skipped = await cli(['--ndjson', source, '--skip-invalid', '--json'])
    expect(skipped.code, skipped.stderr).to.equal(0)
    const doc = parseJson<{enqueued: number; skippedLines: {line: number; reason: string}[]}>(skipped)
    expect(doc.enqueued).to.equal(2)
    expect(doc.skippedLines).to.deep.equal([
      {line: 2, reason: 'not valid UTF-8'},
      {line: 4, reason: 'not valid UTF-8'},
    ])
  })

  it('UTF-8 split across chunks at every byte is read as it is; a bad byte is found on its line', async () => {
    const lines = ['{"task":"a","payload":"Zoë 😀 日本"}', '{"task":"b","payload":"ok"}']
    const bytes = Buffer.from(`${lines.join('\n')}\n`)
    async function* byteByByte(data: Buffer): AsyncGenerator<Buffer> {
      for (let i = 0; i < data.length; i += 1) yield data.subarray(i, i + 1)
    }
    const good = await enqueueNdjson(t.db, byteByByte(bytes))
    expect(good.enqueued).to.equal(2)
    const [first] = await t.query<{p: string}>(
      `select payload::text as p from ${t.quoted}._private_jobs order by id limit 1`,
    )
    expect(JSON.parse(first!.p)).to.equal('Zoë 😀 日本')
    const bad = Buffer.concat([
      bytes,
      Buffer.from('{"task":"c","payload":"'),
      Buffer.from([0xf0, 0x9f, 0x98]),
      Buffer.from('"}\n'),
    ])
    const result = await enqueueNdjson(t.db, byteByByte(bad), {skipInvalid: true})
    expect(result.skippedLines).to.deep.equal([{line: 3, reason: 'not valid UTF-8'}])
    expect(result.enqueued).to.equal(2)
  })
})
