/**
 * Bulk enqueue (issue 3): the same jobs through `backfill enqueue --ndjson FILE` (a real process,
 * start-up included), through the library's enqueueMany, and through ONE raw add_jobs call
 * (graphile-worker's own perfTest statement) as the reference. Every measurement gets a fresh
 * schema, so no run pays for another's rows.
 */
import {createWriteStream, existsSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import pg from 'pg'

import {BackfillClient} from '../src/lib/client/client.js'
import {targetFromUrl} from '../src/lib/connection.js'
import {Database} from '../src/lib/db.js'
import {parseSchemaName} from '../src/lib/identifiers.js'
import {BULK_FLAG, DEFAULT_MAX_ATTEMPTS} from '../src/lib/jobs/priority.js'
import {migrate} from '../src/lib/schema/migrate.js'
import {timedRun} from './lib/process.js'
import type {BenchContext, BenchSuite, Metric} from './lib/types.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const BIN = path.join(ROOT, 'bin', 'run.js')
const TASK = 'log_if_999'

async function writeNdjson(file: string, count: number): Promise<void> {
  const out = createWriteStream(file)
  const chunk = 10_000
  for (let start = 0; start < count; start += chunk) {
    let text = ''
    for (let i = start; i < Math.min(count, start + chunk); i += 1) text += `{"task":"${TASK}","payload":{"id":${i}}}\n`
    if (!out.write(text)) await new Promise<void>((resolve) => out.once('drain', () => resolve()))
  }
  await new Promise<void>((resolve, reject) => out.end((error?: Error | null) => (error ? reject(error) : resolve())))
}

async function freshSchema(url: string, name: string): Promise<void> {
  const db = Database.connect({target: targetFromUrl(url, 'flag-or-env'), schema: parseSchemaName(name), max: 2})
  try {
    await db.execScript(`drop schema if exists "${name}" cascade`)
    await migrate(db)
  } finally {
    await db.end()
  }
}

async function dropSchema(url: string, name: string): Promise<void> {
  const client = new pg.Client({connectionString: url})
  await client.connect()
  try {
    await client.query(`drop schema if exists "${name}" cascade`)
  } finally {
    await client.end()
  }
}

async function countJobs(url: string, schema: string): Promise<number> {
  const client = new pg.Client({connectionString: url})
  await client.connect()
  try {
    return Number((await client.query(`select count(*) as n from "${schema}"._private_jobs`)).rows[0].n)
  } finally {
    await client.end()
  }
}

/** The reference: the rows backfill writes (bulk flag, 8 attempts), in one add_jobs call, as graphile's perfTest does. */
async function rawAddJobs(url: string, schema: string, count: number): Promise<number> {
  const client = new pg.Client({connectionString: url})
  await client.connect()
  try {
    const started = performance.now()
    const specs = Array.from({length: count}, (_, i) => ({
      identifier: TASK,
      payload: {id: i},
      max_attempts: DEFAULT_MAX_ATTEMPTS,
      priority: 0,
      flags: [BULK_FLAG],
    }))
    await client.query(
      `select 1 from "${schema}".add_jobs(array(select json_populate_recordset(null::"${schema}".job_spec, $1::json)))`,
      [JSON.stringify(specs)],
    )
    return performance.now() - started
  } finally {
    await client.end()
  }
}

async function library(url: string, schema: string, count: number): Promise<number> {
  const client = await BackfillClient.connect(url, {schema, ensureSchema: false, maxConnections: 2})
  try {
    const jobs = Array.from({length: count}, (_, i) => ({task: TASK, payload: {id: i}}))
    const started = performance.now()
    await client.enqueueMany(jobs)
    return performance.now() - started
  } finally {
    await client.end()
  }
}

async function cli(url: string, schema: string, file: string): Promise<{ms: number; rssMb: number | null}> {
  const env: NodeJS.ProcessEnv = {...process.env, DATABASE_URL: url}
  delete env.GRAPHILE_WORKER_SCHEMA
  const run = await timedRun(process.execPath, [BIN, 'enqueue', '--ndjson', file, '--schema', schema, '--quiet'], {
    env,
    cwd: ROOT,
  })
  if (run.code !== 0) throw new Error(`backfill enqueue exited ${run.code}: ${run.stderr.slice(0, 500)}`)
  return {ms: run.ms, rssMb: run.peakRssMb}
}

export const suite: BenchSuite = {
  name: 'enqueue',
  issue: 3,
  description:
    'Bulk enqueue of trivial jobs ({"id":i}): `backfill enqueue --ndjson FILE` as a process (start-up included), the library\'s enqueueMany, and one raw add_jobs call of the same rows (bulk flag, 8 attempts) as the reference; a fresh schema for every measurement.',
  async run(ctx: BenchContext): Promise<Metric[]> {
    if (!existsSync(path.join(ROOT, 'dist', 'commands', 'enqueue.js')))
      throw new Error('dist/ is missing or stale: run npm run build first')
    const count = ctx.quick ? 20_000 : 200_000
    const bigCount = ctx.quick ? 200_000 : 1_000_000
    const file = path.join(ctx.workDir, `jobs-${count}.ndjson`)
    const bigFile = path.join(ctx.workDir, `jobs-${bigCount}.ndjson`)
    await writeNdjson(file, count)
    await writeNdjson(bigFile, bigCount)

    const raw: number[] = []
    const lib: number[] = []
    const viaCli: number[] = []
    const rss: number[] = []
    for (let round = 0; round < ctx.rounds; round += 1) {
      // Rotate the order so no path always runs first (cold caches) or last.
      const steps: (() => Promise<void>)[] = [
        async () => {
          const schema = `bench_raw_${round}`
          await freshSchema(ctx.url, schema)
          const ms = await rawAddJobs(ctx.url, schema, count)
          if ((await countJobs(ctx.url, schema)) !== count)
            throw new Error('raw add_jobs wrote the wrong number of jobs')
          raw.push(count / (ms / 1000))
          await dropSchema(ctx.url, schema)
        },
        async () => {
          const schema = `bench_lib_${round}`
          await freshSchema(ctx.url, schema)
          const ms = await library(ctx.url, schema, count)
          if ((await countJobs(ctx.url, schema)) !== count)
            throw new Error('enqueueMany wrote the wrong number of jobs')
          lib.push(count / (ms / 1000))
          await dropSchema(ctx.url, schema)
        },
        async () => {
          const schema = `bench_cli_${round}`
          await freshSchema(ctx.url, schema)
          const run = await cli(ctx.url, schema, file)
          if ((await countJobs(ctx.url, schema)) !== count)
            throw new Error('backfill enqueue wrote the wrong number of jobs')
          viaCli.push(count / (run.ms / 1000))
          if (run.rssMb !== null) rss.push(run.rssMb)
          await dropSchema(ctx.url, schema)
        },
      ]
      for (let i = 0; i < steps.length; i += 1) await steps[(i + round) % steps.length]!()
      ctx.log(
        `round ${round + 1}: raw ${Math.round(raw.at(-1)!)} jobs/s, enqueueMany ${Math.round(lib.at(-1)!)} jobs/s, CLI ${Math.round(viaCli.at(-1)!)} jobs/s, CLI peak RSS ${rss.at(-1)?.toFixed(0) ?? '–'} MB`,
      )
    }

    // Memory must not grow with the file: one run over a file five to ten times larger.
    const bigSchema = 'bench_cli_big'
    await freshSchema(ctx.url, bigSchema)
    const big = await cli(ctx.url, bigSchema, bigFile)
    if ((await countJobs(ctx.url, bigSchema)) !== bigCount)
      throw new Error('backfill enqueue (large file) wrote the wrong number of jobs')
    await dropSchema(ctx.url, bigSchema)
    const bigRate = Math.round(bigCount / (big.ms / 1000))
    ctx.log(`large file: ${bigCount} lines, ${bigRate} jobs/s, peak RSS ${big.rssMb?.toFixed(0) ?? '–'} MB`)

    // What every CLI run pays before its first job: process and oclif start, connect, schema check.
    const emptyFile = path.join(ctx.workDir, 'empty.ndjson')
    await writeNdjson(emptyFile, 0)
    await freshSchema(ctx.url, bigSchema)
    const startup = await cli(ctx.url, bigSchema, emptyFile)
    await dropSchema(ctx.url, bigSchema)
    ctx.log(`CLI start-up (empty input): ${(startup.ms / 1000).toFixed(2)} s`)

    const thousands = (n: number): string => `${n / 1000}k`
    return [
      {
        name: `bulk enqueue ${thousands(count)} jobs from NDJSON (CLI, process start included)`,
        unit: 'jobs/s',
        referenceName: 'one raw add_jobs call',
        higherIsBetter: true,
        target: {kind: 'ratio-min', value: 0.7},
        sample: {ours: viaCli, reference: raw},
        notes: [
          `includes ${(startup.ms / 1000).toFixed(2)} s of process start-up, connect and schema check (an empty input's run time)`,
        ],
      },
      {
        name: `bulk enqueue ${thousands(count)} jobs (library enqueueMany)`,
        unit: 'jobs/s',
        referenceName: 'one raw add_jobs call',
        higherIsBetter: true,
        target: {kind: 'ratio-min', value: 0.9},
        sample: {ours: lib, reference: raw},
      },
      {
        name: `CLI peak RSS, ${thousands(count)}-line file`,
        unit: 'MB',
        higherIsBetter: false,
        target: {kind: 'max', value: 200},
        sample: {ours: rss},
      },
      {
        name: `CLI peak RSS, ${thousands(bigCount)}-line file`,
        unit: 'MB',
        higherIsBetter: false,
        target: {kind: 'max', value: 200},
        sample: {ours: big.rssMb === null ? [] : [big.rssMb]},
        notes: [`${bigRate.toLocaleString('en-US')} jobs/s, one run`],
      },
    ]
  },
}
