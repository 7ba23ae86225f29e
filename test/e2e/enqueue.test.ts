import {spawn, spawnSync} from 'node:child_process'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import {expect} from 'chai'

import {BIN, cleanEnv, parseJson, runCli} from '../support/cli.js'
import {sql, testUrl, TestSchema, uniqueName} from '../support/db.js'
import {runInProcess} from '../support/in-process.js'

interface Row {
  id: string
  task: string
  queue: string | null
  payload: unknown
  priority: number
  max_attempts: number
  key: string | null
  flags: Record<string, boolean> | null
  run_at: Date
}

async function rows(t: TestSchema): Promise<Row[]> {
  return t.query<Row>(
    `select j.id, t.identifier as task, q.queue_name as queue, j.payload, j.priority, j.max_attempts, j.key, j.flags, j.run_at
     from ${t.quoted}._private_jobs j join ${t.quoted}._private_tasks t on t.id = j.task_id
     left join ${t.quoted}._private_job_queues q on q.id = j.job_queue_id order by j.id`,
  )
}

describe('backfill enqueue (real binary)', () => {
  let t: TestSchema
  let dir: string
  before(async () => {
    t = await TestSchema.create({migrated: true, prefix: 'enq'})
    dir = mkdtempSync(path.join(os.tmpdir(), 'bf-enqueue-'))
  })
  after(async () => {
    await t.drop()
    rmSync(dir, {recursive: true, force: true})
  })
  beforeEach(async () => {
    await t.query(`delete from ${t.quoted}._private_jobs`)
  })
  const cli = (args: string[], input?: string) =>
    runCli(['enqueue', '--schema', t.schema, ...args], input === undefined ? {} : {input})
  const file = (name: string, text: string): string => {
    const target = path.join(dir, name)
    writeFileSync(target, text)
    return target
  }

  describe('one job', () => {
    it('prints the job id on stdout and writes the job with the crate defaults and the bulk flag', async () => {
      const result = await cli(['send_email', '--payload', '{"to":"ada@example.com"}'])
      expect(result.code, result.stderr).to.equal(0)
      const [row] = await rows(t)
      expect(result.stdout).to.equal(`${row!.id}\n`)
      expect(row).to.deep.include({task: 'send_email', queue: null, priority: 0, max_attempts: 8, key: null})
      expect(row!.payload).to.deep.equal({to: 'ada@example.com'})
      expect(row!.flags).to.deep.equal({'backfill:bulk': true})
      expect(result.stderr).to.contain(
        `enqueued job ${row!.id}: send_email, priority 0 (bulk_default), parallel, max attempts 8`,
      )
    })

    it('--json prints the whole job; every option reaches graphile-worker', async () => {
      const result = await cli([
        'charge',
        '--payload',
        '{"amount":5}',
        '--priority',
        'critical',
        '--queue',
        'user:42',
        '--run-at',
        '2031-02-03T04:05:06+01:00',
        '--job-key',
        'charge:42',
        '--max-attempts',
        '3',
        '--flag',
        'tenant:7',
        '--flag',
        'audit',
        '--json',
      ])
      expect(result.code, result.stderr).to.equal(0)
      const json = parseJson<{status: string; action: string; job: Record<string, unknown>}>(result)
      expect(json).to.deep.include({status: 'enqueued', action: 'created'})
      expect(json.job).to.deep.include({
        taskIdentifier: 'charge',
        queueName: 'user:42',
        priority: -10,
        maxAttempts: 3,
        key: 'charge:42',
        runAt: '2031-02-03T03:05:06.000Z',
        revision: 0,
      })
      expect(json.job.payload).to.deep.equal({amount: 5})
      expect(json.job.flags).to.deep.equal(['audit', 'tenant:7'])
      const [row] = await rows(t)
      expect(row).to.deep.include({id: json.job.id, queue: 'user:42', priority: -10, max_attempts: 3, key: 'charge:42'})
      expect(row!.flags).to.deep.equal({'tenant:7': true, audit: true})

      const again = await cli(['charge', '--payload', '{"amount":6}', '--job-key', 'charge:42', '--priority', '-3'])
      expect(again.code).to.equal(0)
      expect(again.stderr).to.contain(`replaced job ${json.job.id}`)
      expect(await rows(t)).to.have.length(1)
    })

    it('--delay runs later; --payload-file reads a file or stdin', async () => {
      const before = Date.now()
      const delayed = await cli(['later', '--delay', '10m'])
      expect(delayed.code, delayed.stderr).to.equal(0)
      const fromFile = await cli(['from_file', '--payload-file', file('payload.json', '{"a": [1, 2]}\n')])
      expect(fromFile.code, fromFile.stderr).to.equal(0)
      const fromStdin = await cli(['from_stdin', '--payload-file', '-'], '{"b": true}')
      expect(fromStdin.code, fromStdin.stderr).to.equal(0)
      const [later, a, b] = await rows(t)
      expect(later!.run_at.getTime() - before).to.be.within(9 * 60_000, 11 * 60_000)
      expect(a!.payload).to.deep.equal({a: [1, 2]})
      expect(b!.payload).to.deep.equal({b: true})
    })

    it('bad input: a clear error, exit 2, and no job added', async () => {
      const cases: [string[], RegExp][] = [
        [['t', '--payload', '{"to":'], /^Error: --payload is not valid JSON: /],
        [['t', '--payload', "{to: 'x'}"], /^Error: --payload is not valid JSON/],
        [[''], /^Error: TASK is empty/],
        [['t'.repeat(129)], /^Error: TASK is 129 characters long; graphile-worker allows at most 128/],
        [
          ['t', '--priority', 'urgent'],
          /^Error: --priority "urgent" is not a priority name or an integer\n.*emergency, critical, fast, bulk, bulk-low, bulk-lowest/,
        ],
        [['t', '--priority', '32768'], /^Error: --priority 32768 is outside -32768..32767/],
        [['t', '--priority=-32769'], /^Error: --priority -32769 is outside -32768..32767/],
        [['t', '--max-attempts', '0'], /^Error: --max-attempts 0 is outside 1..32767/],
        [['t', '--max-attempts=-1'], /^Error: --max-attempts -1 is outside 1..32767/],
        [['t', '--run-at', 'tomorrow'], /^Error: --run-at "tomorrow" is not an ISO 8601 date-time with a time zone/],
        [['t', '--run-at', '2030-01-01T10:00:00'], /^Error: --run-at .* with a time zone\n.*2030-01-31T09:00:00Z/],
        [['t', '--delay', 'soon'], /^Error: --delay "soon" is not a duration/],
        [
          ['t', '--job-key', 'k'.repeat(513)],
          /^Error: --job-key is 513 characters long; graphile-worker allows at most 512/,
        ],
        [
          ['t', '--payload-file', path.join(dir, 'missing.json')],
          /^Error: --payload-file .*missing.json: no such file/,
        ],
        [['t', '--job-key-mode', 'merge'], /^Error: Expected --job-key-mode=merge to be one of/],
        [['t', '--job-key-mode', 'preserve_run_at'], /^Error: --job-key-mode needs --job-key/],
        [
          ['t', '--run-at', '2030-01-01T10:00:00Z', '--delay', '1m'],
          /^Error: --delay cannot also be provided when using --run-at/,
        ],
        [['--payload', '{}'], /^Error: missing TASK/],
        [['t', '--flag', ''], /^Error: --flag must be non-empty strings/],
      ]
      // Argument errors need no process of their own: in-process, from the sources (fast).
      for (const [args, message] of cases) {
        const result = await runInProcess(['enqueue', '--schema', t.schema, ...args], {env: {DATABASE_URL: testUrl()}})
        expect(result.code, `${args.join(' ')}: ${result.stderr}`).to.equal(2)
        expect(result.stderr, args.join(' ')).to.match(message)
        expect(result.stdout, args.join(' ')).to.equal('')
      }
      const json = await cli(['t', '--priority', 'urgent', '--json'])
      expect(parseJson<{error: {code: string; exitCode: number}}>(json).error).to.deep.include({
        code: 'E_INVALID_JOB',
        exitCode: 2,
      })
      expect(await rows(t)).to.have.length(0)
    })

    it('an un-migrated schema is exit 4 and is not created', async () => {
      const schema = uniqueName('nomig')
      const single = await runCli(['enqueue', 't', '--schema', schema])
      expect(single.code).to.equal(4)
      expect(single.stderr).to.match(new RegExp(`^Error: schema "${schema}" does not exist`))
      expect(single.stderr).to.contain(`run: backfill migrate --schema ${schema}`)
      const bulk = await runCli(['enqueue', '--ndjson', '-', '--schema', schema], {input: '{"task":"t"}\n'})
      expect(bulk.code).to.equal(4)
      expect(await sql('select 1 from pg_namespace where nspname = $1', [schema])).to.have.length(0)
    })

    it('--dry-run shows the job and touches nothing (no database needed)', async () => {
      const result = await runCli(
        ['enqueue', 'send_email', '--payload', '{"x":1}', '--priority', 'fast', '--dry-run', '--json'],
        {databaseUrl: null},
      )
      expect(result.code, result.stderr).to.equal(0)
      expect(parseJson<{status: string; job: {priority: number; flags: null}}>(result)).to.deep.include({
        status: 'dry-run',
      })
    })
  })

  describe('bulk NDJSON', () => {
    const jobLines = (n: number, make = (i: number) => ({task: 'bulk_job', payload: {i}})): string =>
      Array.from({length: n}, (_, i) => JSON.stringify(make(i))).join('\n') + '\n'

    it('from a file: every line enqueued, summary on stdout, no progress bar when stderr is not a terminal', async () => {
      const result = await cli(['--ndjson', file('jobs.ndjson', jobLines(2500)), '--batch-size', '1000'])
      expect(result.code, result.stderr).to.equal(0)
      expect(result.stdout).to.match(/^enqueued 2500 jobs from .*jobs\.ndjson in \d+\.\d\d s \([\d,]+ jobs\/s\)\n$/)
      expect(result.stderr).not.to.contain('\r')
      const all = await rows(t)
      expect(all).to.have.length(2500)
      expect(all.every((r) => r.task === 'bulk_job' && r.max_attempts === 8 && r.flags?.['backfill:bulk'])).to.equal(
        true,
      )
    })

    it('from a pipe, with TASK and flags as defaults for missing fields; --json summary', async () => {
      const input =
        '{"payload":{"id":1}}\n{"payload":{"id":2},"priority":"emergency","queue":null}\n{"task":"other","maxAttempts":2}\n'
      const result = await cli(
        ['reindex', '--ndjson', '-', '--priority', 'bulk-low', '--queue', 'index', '--max-attempts', '4', '--json'],
        input,
      )
      expect(result.code, result.stderr).to.equal(0)
      const json = parseJson<Record<string, unknown>>(result)
      expect(json).to.deep.include({source: 'stdin', lines: 3, jobs: 3, enqueued: 3, skipped: 0, dryRun: false})
      expect(json.jobsPerSecond).to.be.a('number')
      const all = await rows(t)
      expect(
        all.map((r) => [r.task, r.priority, r.queue, r.max_attempts, Boolean(r.flags?.['backfill:bulk'])]),
      ).to.have.deep.members([
        ['reindex', 5, 'index', 4, true],
        ['reindex', -20, null, 4, false],
        ['other', 5, 'index', 2, true],
      ])
    })

    it('one bad line: exit 2 naming the line and its problem, and nothing enqueued (also from a pipe)', async () => {
      const input = jobLines(7000) + '{"task":"bulk_job","runAt":"next tuesday"}\n' + jobLines(3)
      const result = await cli(['--ndjson', '-', '--batch-size', '1000'], input)
      expect(result.code).to.equal(2)
      expect(result.stderr).to.match(
        /^Error: line 7001: runAt "next tuesday" is not an ISO 8601 date-time with a time zone; nothing was enqueued\n/,
      )
      expect(result.stderr).to.contain('--skip-invalid')
      expect(result.stdout).to.equal('')
      expect(await rows(t)).to.have.length(0)
    })

    it('--skip-invalid enqueues the good lines and reports each skipped line', async () => {
      const input = '{"task":"a"}\n{"task":"a","payload":{oops}}\n{"task":"a","priority":99999}\n{"task":"b"}\n'
      const result = await cli(['--ndjson', file('mixed.ndjson', input), '--skip-invalid', '--json'])
      expect(result.code, result.stderr).to.equal(0)
      const json = parseJson<{enqueued: number; skipped: number; skippedLines: {line: number; reason: string}[]}>(
        result,
      )
      expect(json).to.deep.include({enqueued: 2, skipped: 2})
      expect(json.skippedLines.map((s) => s.line)).to.deep.equal([2, 3])
      expect(result.stderr).to.match(/line 2 skipped: invalid JSON/)
      expect(result.stderr).to.contain('line 3 skipped: priority 99999 is outside -32768..32767')
      expect(await rows(t)).to.have.length(2)
    })

    it('refuses what does not apply to bulk, and a missing file, with exit 2', async () => {
      for (const args of [
        ['--ndjson', path.join(dir, 'nope.ndjson')],
        ['--ndjson', '-', '--job-key', 'k'],
        ['--ndjson', '-', '--payload', '{}'],
        ['t', '--skip-invalid'],
      ]) {
        const result = await cli(args, '')
        expect(result.code, `${args.join(' ')}: ${result.stderr}`).to.equal(2)
      }
    })

    it('--dry-run validates every line, lists the invalid ones, and enqueues nothing', async () => {
      const input = jobLines(3) + 'nope\n' + jobLines(2)
      const result = await cli(['--ndjson', '-', '--dry-run'], input)
      expect(result.code).to.equal(2)
      expect(result.stderr).to.contain('line 4 skipped: invalid JSON')
      expect(result.stderr).to.contain('1 of 6 job lines are invalid')
      const ok = await cli(['--ndjson', '-', '--dry-run'], jobLines(4))
      expect(ok.code, ok.stderr).to.equal(0)
      expect(ok.stdout).to.equal('4 valid jobs in 4 lines of stdin (dry run: nothing enqueued)\n')
      expect(await rows(t)).to.have.length(0)
    })

    it('draws a progress bar on stderr when it is a terminal (under script(1))', async function () {
      if (spawnSync('script', ['--version']).status !== 0) this.skip()
      const source = file('progress.ndjson', jobLines(30_000))
      const command = [
        process.execPath,
        BIN,
        'enqueue',
        '--schema',
        t.schema,
        '--ndjson',
        source,
        '--batch-size',
        '1000',
      ]
        .map((a) => `'${a}'`)
        .join(' ')
      const result = spawnSync('script', ['-qec', command, '/dev/null'], {
        env: cleanEnv({DATABASE_URL: t.url, NO_COLOR: '1'}),
        encoding: 'utf8',
        timeout: 60_000,
      })
      expect(result.status, result.stdout).to.equal(0)
      expect(result.stdout).to.match(/\r\[[#.]{24}\] +\d+% {2}[\d,]+ jobs {2}[\d,]+ jobs\/s/)
      expect(result.stdout).to.contain('enqueued 30000 jobs')
      expect(await rows(t)).to.have.length(30_000)
    })

    it('Ctrl-C while reading a pipe: exit 130 and the transaction is rolled back', async () => {
      const child = spawn(
        process.execPath,
        [BIN, 'enqueue', '--schema', t.schema, '--ndjson', '-', '--batch-size', '100'],
        {
          env: cleanEnv({DATABASE_URL: t.url}),
          stdio: ['pipe', 'pipe', 'pipe'],
        },
      )
      let stderr = ''
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
      const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
      child.stdin.write(jobLines(1000))
      // Wait until batches were written inside the open transaction.
      for (let i = 0; i < 300; i += 1) {
        const busy = await t.query(
          `select 1 from pg_stat_activity where application_name = 'backfill enqueue' and state = 'idle in transaction' and query like '%add_jobs%'`,
        )
        if (busy.length > 0) break
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      child.kill('SIGINT')
      expect(await exited, stderr).to.equal(130)
      // The count depends on how far the reader got when the signal came (between batches or after the last).
      expect(stderr).to.match(/Error: interrupted after \d+ lines; nothing was enqueued/)
      expect(await rows(t)).to.have.length(0)
    })
  })
})
