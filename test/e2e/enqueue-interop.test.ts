import {expect} from 'chai'
import {Logger, run, runOnce, type TaskList} from 'graphile-worker'
import pg from 'pg'

import {BackfillClient} from '../../src/lib/client/client.js'
import {runCli} from '../support/cli.js'
import {TestSchema} from '../support/db.js'

const quiet = new Logger(() => () => undefined)

function pool(t: TestSchema): pg.Pool {
  const p = new pg.Pool({connectionString: t.url, max: 12})
  p.on('error', () => undefined)
  p.on('connect', (client) => client.on('error', () => undefined))
  return p
}

/** The shutdown order that keeps graphile-worker 0.17.3 from losing the last completion (embedded-db.md). */
async function endPool(p: pg.Pool): Promise<void> {
  for (let i = 0; i < 200 && p.totalCount - p.idleCount > 0; i += 1)
    await new Promise((resolve) => setTimeout(resolve, 10))
  await p.end()
}

async function remaining(t: TestSchema): Promise<number> {
  return Number((await t.query<{n: string}>(`select count(*) as n from ${t.quoted}._private_jobs`))[0]!.n)
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe('enqueued jobs run on plain graphile-worker (interoperability)', function () {
  this.timeout(120_000)
  let t: TestSchema
  beforeEach(async () => {
    t = await TestSchema.create({migrated: true, prefix: 'interop'})
  })
  afterEach(async () => {
    await t.drop()
  })

  it('a job enqueued with `backfill enqueue` is run by graphile-worker runOnce with the same payload', async () => {
    const payload = {to: 'ada@example.com', tags: ['a', 'ü'], n: 1.5, nested: {ok: true}}
    const single = await runCli([
      'enqueue',
      'send_email',
      '--schema',
      t.schema,
      '--payload',
      JSON.stringify(payload),
      '--priority',
      'fast',
    ])
    expect(single.code, single.stderr).to.equal(0)
    const bulk = await runCli(['enqueue', '--schema', t.schema, '--ndjson', '-'], {
      input: '{"task":"send_email","payload":{"bulk":1}}\n{"task":"send_email","payload":{"bulk":2}}\n',
    })
    expect(bulk.code, bulk.stderr).to.equal(0)
    const seen: {payload: unknown; id: string; attempts: number}[] = []
    const taskList: TaskList = {
      send_email: async (received, helpers) => {
        seen.push({payload: received, id: helpers.job.id, attempts: helpers.job.attempts})
      },
    }
    const p = pool(t)
    try {
      await runOnce({pgPool: p, schema: t.schema, concurrency: 1, taskList, logger: quiet, noHandleSignals: true})
    } finally {
      await endPool(p)
    }
    expect(seen).to.have.length(3)
    // priority -5 runs before the two bulk (0) jobs.
    expect(seen[0]!.payload).to.deep.equal(payload)
    expect(seen[0]!.id).to.equal(single.stdout.trim())
    expect(seen.slice(1).map((s) => s.payload)).to.have.deep.members([{bulk: 1}, {bulk: 2}])
    expect(seen.every((s) => s.attempts === 1)).to.equal(true)
    expect(await remaining(t)).to.equal(0)
  })

  it("priorities order execution as the crate's: lower first, whichever way the job was added", async () => {
    const client = await BackfillClient.fromDatabase(t.db, {ensureSchema: false})
    // Added in the reverse of the expected order, through all three paths.
    for (const [name, priority] of [
      ['bulk_lowest', 'bulk-lowest'],
      ['bulk_low', 'bulk-low'],
      ['bulk', 'bulk'],
    ]) {
      const result = await runCli([
        'enqueue',
        'record',
        '--schema',
        t.schema,
        '--payload',
        JSON.stringify({name}),
        '--priority',
        priority!,
      ])
      expect(result.code, result.stderr).to.equal(0)
    }
    await client.enqueueMany([
      {task: 'record', payload: {name: 'fast'}, priority: -5},
      {task: 'record', payload: {name: 'custom_-7'}, priority: -7},
    ])
    await t.query(`select ${t.quoted}.add_job('record', '{"name":"critical_sql"}'::json, priority => -10)`)
    await client.enqueue('record', {name: 'emergency'}, {priority: -20})
    const order: string[] = []
    const p = pool(t)
    try {
      await runOnce({
        pgPool: p,
        schema: t.schema,
        concurrency: 1,
        logger: quiet,
        noHandleSignals: true,
        taskList: {record: async (payload) => void order.push((payload as {name: string}).name)},
      })
    } finally {
      await endPool(p)
    }
    expect(order).to.deep.equal(['emergency', 'critical_sql', 'custom_-7', 'fast', 'bulk', 'bulk_low', 'bulk_lowest'])
  })

  it('serial queue jobs run one at a time across a worker with free slots; parallel jobs do not wait', async () => {
    const serial = Array.from({length: 5}, (_, i) =>
      JSON.stringify({task: 'slow', payload: {kind: 'serial', i}, queue: 'user:42'}),
    ).join('\n')
    const parallel = Array.from({length: 5}, (_, i) =>
      JSON.stringify({task: 'slow', payload: {kind: 'parallel', i}}),
    ).join('\n')
    const result = await runCli(['enqueue', '--schema', t.schema, '--ndjson', '-'], {input: `${serial}\n${parallel}\n`})
    expect(result.code, result.stderr).to.equal(0)
    const running = {serial: 0, parallel: 0}
    const peak = {serial: 0, parallel: 0}
    const serialOrder: number[] = []
    const p = pool(t)
    const runner = await run({
      pgPool: p,
      schema: t.schema,
      concurrency: 8,
      pollInterval: 100,
      logger: quiet,
      noHandleSignals: true,
      taskList: {
        slow: async (payload) => {
          const {kind, i} = payload as {kind: 'serial' | 'parallel'; i: number}
          running[kind] += 1
          peak[kind] = Math.max(peak[kind], running[kind])
          if (kind === 'serial') serialOrder.push(i)
          await sleep(150)
          running[kind] -= 1
        },
      },
    })
    try {
      for (let i = 0; i < 300 && (await remaining(t)) > 0; i += 1) await sleep(50)
    } finally {
      await runner.stop()
      await endPool(p)
    }
    expect(await remaining(t)).to.equal(0)
    expect(peak.serial).to.equal(1)
    expect(peak.parallel).to.be.greaterThan(1)
    expect(serialOrder).to.have.length(5)
  })
})
