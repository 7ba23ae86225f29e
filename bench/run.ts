/**
 * `npm run bench [-- --quick] [-- --only name,name]`: runs every bench/*.bench.ts suite side by
 * side with its reference on one throwaway PostgreSQL, several rounds, and rewrites
 * bench/RESULTS.md (medians, ratios, targets, pass/fail).
 */
import {mkdtempSync, readdirSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath, pathToFileURL} from 'node:url'

import pg from 'pg'

import {EmbeddedPostgres} from '../src/lib/embedded/postgres.js'
import {describeTarget, evaluate, formatNumber} from './lib/stats.js'
import type {BenchSuite, Metric} from './lib/types.js'

const here = path.dirname(fileURLToPath(import.meta.url))

interface SuiteOutcome {
  suite: BenchSuite
  metrics: Metric[]
  error?: string
  seconds: number
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2)
  const quick = argv.includes('--quick')
  const onlyArg =
    argv.find((a) => a.startsWith('--only='))?.slice('--only='.length) ??
    (argv.includes('--only') ? argv[argv.indexOf('--only') + 1] : undefined)
  const only = onlyArg ? new Set(onlyArg.split(',')) : undefined
  const noWrite = argv.includes('--no-write')
  const rounds = quick ? 1 : 3
  const started = Date.now()

  const suites: BenchSuite[] = []
  for (const file of readdirSync(here)
    .filter((f) => f.endsWith('.bench.ts'))
    .sort()) {
    const module = (await import(pathToFileURL(path.join(here, file)).href)) as {suite?: BenchSuite}
    if (module.suite && (!only || only.has(module.suite.name))) suites.push(module.suite)
  }

  const base = process.env.BENCH_DATABASE_URL
  let server: EmbeddedPostgres | undefined
  let adminUrl = base
  const dir = mkdtempSync(path.join(os.tmpdir(), 'backfill-bench-'))
  if (!adminUrl) {
    // tmpfs keeps the disk of a noisy VM out of the figures; fsync stays on (server defaults).
    const pgDir = mkdtempSync(path.join(existsShm() ? '/dev/shm' : os.tmpdir(), 'bfb-'))
    server = new EmbeddedPostgres({dir: pgDir, settings: {max_connections: 300, shared_buffers: '256MB'}})
    await server.start()
    adminUrl = server.url
  }
  const pgVersion = await query(adminUrl, 'show server_version')
  const outcomes: SuiteOutcome[] = []
  try {
    for (const suite of suites) {
      const database = `bench_${suite.name.replace(/\W/g, '_')}`
      await query(adminUrl, `drop database if exists ${database} with (force)`)
      await query(adminUrl, `create database ${database}`)
      const url = urlForDatabase(adminUrl, database, server)
      const workDir = mkdtempSync(path.join(dir, `${suite.name}-`))
      const t0 = Date.now()
      process.stderr.write(`\n== ${suite.name} (issue #${suite.issue}): ${suite.description}\n`)
      try {
        const metrics = await suite.run({url, quick, rounds, workDir, log: (m) => process.stderr.write(`   ${m}\n`)})
        outcomes.push({suite, metrics, seconds: (Date.now() - t0) / 1000})
      } catch (error) {
        outcomes.push({
          suite,
          metrics: [],
          error: (error as Error).stack ?? String(error),
          seconds: (Date.now() - t0) / 1000,
        })
        process.stderr.write(`   FAILED: ${(error as Error).message}\n`)
      } finally {
        await query(adminUrl, `drop database if exists ${database} with (force)`).catch(() => undefined)
      }
    }
  } finally {
    await server?.destroy()
    rmSync(dir, {recursive: true, force: true})
  }

  const command = `npm run bench${argv.length > 0 ? ` -- ${argv.join(' ')}` : ''}`
  const report = renderReport(outcomes, {
    command,
    quick,
    rounds,
    pgVersion,
    seconds: (Date.now() - started) / 1000,
    server: base ? 'BENCH_DATABASE_URL' : 'embedded (tmpfs, fsync on)',
  })
  process.stdout.write(report)
  if (!noWrite && !only) writeFileSync(path.join(here, 'RESULTS.md'), report)
  else if (!noWrite) writeFileSync(path.join(here, `RESULTS.partial.md`), report)
  if (outcomes.some((o) => o.error)) process.exitCode = 1
}

function existsShm(): boolean {
  try {
    return readdirSync('/dev/shm') !== undefined
  } catch {
    return false
  }
}

async function query(url: string, text: string): Promise<string> {
  const client = new pg.Client({connectionString: url})
  await client.connect()
  try {
    const result = await client.query(text)
    const row = result.rows[0] as Record<string, unknown> | undefined
    return row ? String(Object.values(row)[0]) : ''
  } finally {
    await client.end()
  }
}

function urlForDatabase(url: string, database: string, server: EmbeddedPostgres | undefined): string {
  if (server) return server.urlForDatabase(database)
  const u = new URL(url)
  u.pathname = `/${database}`
  return u.toString()
}

function renderReport(
  outcomes: SuiteOutcome[],
  info: {command: string; quick: boolean; rounds: number; pgVersion: string; seconds: number; server: string},
): string {
  const cpu = os.cpus()
  const lines: string[] = [
    '# Benchmark results',
    '',
    `Generated by \`${info.command}\` on ${new Date().toISOString().slice(0, 10)} (${info.quick ? 'quick mode, 1 round' : `${info.rounds} rounds, medians`}; total ${Math.round(info.seconds)} s).`,
    '',
    `Machine: ${cpu.length} × ${cpu[0]?.model.trim() ?? 'unknown CPU'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM, ${os.type()} ${os.release()}, Node ${process.version}, PostgreSQL ${info.pgVersion} (${info.server}).`,
    '',
    'Each figure is the median of the rounds; ours and the reference run in the same process run, one after the other, on the same database server. Ratios are ours ÷ reference. This machine is shared and noisy: compare ratios, not absolute numbers.',
    '',
  ]
  for (const outcome of outcomes) {
    const {suite} = outcome
    lines.push(`## ${suite.name} (issue #${suite.issue})`, '', suite.description, '')
    if (outcome.error) {
      lines.push('**The suite failed:**', '', '```', outcome.error.split('\n').slice(0, 8).join('\n'), '```', '')
      continue
    }
    lines.push('| metric | ours | reference | ratio | target | result | notes |', '|---|---|---|---|---|---|---|')
    for (const metric of outcome.metrics) {
      const e = evaluate(metric)
      const result = e.pass === null ? '' : e.pass ? 'pass' : '**miss**'
      const ref =
        e.reference === null
          ? '–'
          : `${formatNumber(e.reference)} ${metric.unit}${metric.referenceName ? ` (${metric.referenceName})` : ''}`
      const ratio = e.ratio === null ? '–' : `${e.ratio.toFixed(2)}×`
      lines.push(
        `| ${metric.name} | ${formatNumber(e.ours)} ${metric.unit} | ${ref} | ${ratio} | ${describeTarget(metric.target, metric.unit)} | ${result} | ${(metric.notes ?? []).join('; ')} |`,
      )
    }
    lines.push('', `(${outcome.seconds.toFixed(0)} s)`, '')
  }
  return `${lines.join('\n')}\n`
}

await main()
// Pools left behind by a failed suite must not keep the process alive.
setTimeout(() => process.exit(), 1000).unref()
