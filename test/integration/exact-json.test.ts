import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import {expect} from 'chai'

import {parseJson, type CliResult} from '../support/cli.js'
import {TestSchema, testUrl} from '../support/db.js'
import {insertDlq} from '../support/dlq.js'
import {runInProcess} from '../support/in-process.js'

/** Payload numbers exactly as written, and large documents under --json (in process). */
describe('payloads exactly as written; large --json documents (in process)', function () {
  this.timeout(120_000)
  let t: TestSchema
  let dir: string
  const cli = (args: string[]): Promise<CliResult> =>
    runInProcess([...args, '--schema', t.schema], {env: {DATABASE_URL: testUrl()}})
  const stored = async (): Promise<string[]> =>
    (await t.query<{p: string}>(`select payload::text as p from ${t.quoted}._private_jobs order by id`)).map((r) => r.p)

  const EXACT = '{"id":9007199254740993,"n":1e999,"price":1.50,"tiny":0.0000001,"neg":-0,"s":"1e5"}'

  beforeEach(async () => {
    t = await TestSchema.create({migrated: true, prefix: 'exact'})
    dir = mkdtempSync(path.join(os.tmpdir(), 'bf-exact-'))
  })
  afterEach(async () => {
    await t.drop()
    rmSync(dir, {recursive: true, force: true})
  })

  it('enqueue --payload, --payload-file and --ndjson store every number as written, and --json shows it', async () => {
    const single = await cli(['enqueue', 'big_ids', '--payload', EXACT, '--json'])
    expect(single.code, single.stderr).to.equal(0)
    expect(single.stdout).to.contain('"payload": {"id":9007199254740993,"n":1e999,"price":1.50')
    const file = path.join(dir, 'p.json')
    writeFileSync(file, EXACT)
    expect((await cli(['enqueue', 'big_ids', '--payload-file', file])).code).to.equal(0)
    const ndjson = path.join(dir, 'jobs.ndjson')
    writeFileSync(ndjson, `{"task":"big_ids","payload":${EXACT}}\n{"task":"small","payload":{"id":7}}\n`)
    const bulk = await cli(['enqueue', '--ndjson', ndjson, '--json'])
    expect(bulk.code, bulk.stderr).to.equal(0)
    expect(await stored()).to.deep.equal([EXACT, EXACT, EXACT, '{"id":7}'])
    const dry = await cli(['enqueue', 'big_ids', '--payload', EXACT, '--dry-run', '--json'])
    expect(dry.stdout).to.contain(EXACT)
    // jobs show: pretty, exact, in text and --json.
    const [job] = await t.query<{id: string}>(`select id from ${t.quoted}._private_jobs order by id limit 1`)
    const shown = await cli(['jobs', 'show', job!.id])
    expect(shown.stdout).to.contain('"id": 9007199254740993').and.contain('"n": 1e999').and.contain('"price": 1.50')
    const shownJson = await cli(['jobs', 'show', job!.id, '--json'])
    expect(shownJson.stdout).to.contain('"payload": {"id":9007199254740993,"n":1e999')
    expect(parseJson<{job: Record<string, unknown>}>(shownJson).job).not.to.have.property('payloadText')
    const listed = await cli(['jobs', 'list', '--json'])
    expect(listed.stdout).to.contain('"payload": {"id":9007199254740993,"n":1e999').and.not.contain('"payloadText"')
    expect((await cli(['jobs', 'list'])).stdout).to.contain('{"id":9007199254740993')
  })

  it('dlq show and dlq list --json show the jsonb payload exactly (1e999 as jsonb stores it)', async () => {
    const [id] = await insertDlq(t, [{task: 'big_ids'}])
    await t.query(`update ${t.quoted}.backfill_dlq set payload = $1::jsonb where id = $2`, [EXACT, id])
    // jsonb stores numbers as numeric: 1e999 becomes 1 followed by 999 zeros, 1.50 keeps its scale.
    const [row] = await t.query<{p: string}>(`select payload::text as p from ${t.quoted}.backfill_dlq where id = $1`, [
      id,
    ])
    expect(row!.p)
      .to.contain('"id": 9007199254740993')
      .and.contain(`"n": 1${'0'.repeat(999)}`)
    const shown = await cli(['dlq', 'show', id!])
    expect(shown.code, shown.stderr).to.equal(0)
    expect(shown.stdout).to.contain('"id": 9007199254740993').and.contain('"price": 1.50')
    const listed = await cli(['dlq', 'list', '--json'])
    expect(listed.stdout).to.contain('"id": 9007199254740993')
    const doc = parseJson<{entries: {payload: {price: number}}[]}>(listed)
    expect(doc.entries[0]!.payload.price).to.equal(1.5)
    expect(JSON.stringify(doc.entries[0])).not.to.contain('payloadText')
    expect((await cli(['dlq', 'show', id!, '--json'])).stdout).to.contain('"id": 9007199254740993')
    // Dry-run samples of retry and purge, and of the jobs commands, too.
    for (const args of [
      ['dlq', 'retry', '--all', '--dry-run', '--json'],
      ['dlq', 'purge', '--all', '--dry-run', '--json'],
    ]) {
      const dry = await cli(args)
      expect(dry.code, dry.stderr).to.equal(0)
      expect(dry.stdout, args.join(' ')).to.contain('"id": 9007199254740993').and.not.contain('"payloadText"')
    }
    await cli(['enqueue', 'big_ids', '--payload', EXACT])
    const jobsDry = await cli(['jobs', 'remove', '--all', '--dry-run', '--json'])
    expect(jobsDry.code, jobsDry.stderr).to.equal(0)
    expect(jobsDry.stdout).to.contain('"payload": {"id":9007199254740993').and.not.contain('"payloadText"')
  })

  it('a 10 MB payload: enqueue --json commits and reports success; dlq list/show --json print it', async () => {
    const big = JSON.stringify({blob: 'x'.repeat(10 * 1024 * 1024), id: 1})
    const file = path.join(dir, 'big.json')
    writeFileSync(file, big)
    const result = await cli(['enqueue', 'big', '--payload-file', file, '--json'])
    expect(result.code, result.stderr.slice(0, 500)).to.equal(0)
    const doc = parseJson<{status: string; job: {payload: {blob: string}}}>(result)
    expect(doc.status).to.equal('enqueued')
    expect(doc.job.payload.blob.length).to.equal(10 * 1024 * 1024)
    expect(await t.query(`select id from ${t.quoted}._private_jobs`)).to.have.length(1)
    const [id] = await insertDlq(t, [{task: 'big', payload: {blob: 'y'.repeat(10 * 1024 * 1024)}}])
    for (const args of [
      ['dlq', 'list', '--json'],
      ['dlq', 'show', id!, '--json'],
    ]) {
      const out = await cli(args)
      expect(out.code, `${args.join(' ')}: ${out.stderr.slice(0, 500)}`).to.equal(0)
      expect(out.stdout.length).to.be.greaterThan(10 * 1024 * 1024)
      parseJson(out)
    }
    const text = await cli(['dlq', 'show', id!])
    expect(text.code).to.equal(0)
    expect(text.stdout).to.contain('y'.repeat(1000))
  })

  it('--payload-file: a UTF-8 byte-order mark is dropped (as --ndjson does); bytes that are not UTF-8 are refused', async () => {
    const bom = path.join(dir, 'bom.json')
    writeFileSync(bom, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"name":"Zoë"}')]))
    const ok = await cli(['enqueue', 'utf8', '--payload-file', bom])
    expect(ok.code, ok.stderr).to.equal(0)
    const latin1 = path.join(dir, 'latin1.json')
    writeFileSync(latin1, Buffer.from('{"name":"Zo\xeb"}', 'latin1'))
    const refused = await cli(['enqueue', 'utf8', '--payload-file', latin1, '--json'])
    expect(refused.code).to.equal(2)
    expect(parseJson<{error: {code: string; message: string}}>(refused).error).to.deep.include({
      code: 'E_INVALID_PAYLOAD',
      message: `payload file ${latin1} is not valid UTF-8`,
    })
    expect(await stored()).to.deep.equal(['{"name":"Zoë"}'])
  })

  it('documented: a payload that went through the DLQ (jsonb) comes back with its keys in jsonb order', async () => {
    const written = '{"zeta":1,"alpha":{"b":2,"a":1},"mid":[3,2]}'
    expect((await cli(['enqueue', 'reorder', '--payload', written])).code).to.equal(0)
    await t.query(`update ${t.quoted}._private_jobs set attempts = max_attempts, last_error = 'boom'`)
    const captured = await cli(['dlq', 'capture', '--yes'])
    expect(captured.code, captured.stderr).to.equal(0)
    const retried = await cli(['dlq', 'retry', '--all', '--yes'])
    expect(retried.code, retried.stderr).to.equal(0)
    const [again] = await stored()
    // jsonb keeps one copy of each key, shorter keys first: same value, different text.
    expect(again).to.equal('{"mid": [3, 2], "zeta": 1, "alpha": {"a": 1, "b": 2}}')
    expect(JSON.parse(again!)).to.deep.equal(JSON.parse(written))
  })
})
