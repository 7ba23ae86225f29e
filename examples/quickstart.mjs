#!/usr/bin/env node
// The main job on the embedded development database, in one command (`npm run demo`):
// start PostgreSQL from the npm binaries, install the schema, run a worker on the example
// tasks while example jobs are enqueued (some fail into the DLQ), then show the DLQ triage.
// Nothing else needs to be installed or running. The database keeps running afterwards
// (explore it with `npx backfill status --embedded`; stop it with `npx backfill dev stop`).
import {spawn} from 'node:child_process'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const bin = path.join(root, 'bin', 'run.js')
const env = {...process.env, BACKFILL_EMBEDDED: '1'}
delete env.DATABASE_URL
const timeoutMs = Number(process.env.DEMO_TIMEOUT_MS ?? 120_000)

function backfill(args, {quiet = false} = {}) {
  if (!quiet) process.stderr.write(`\n$ backfill ${args.join(' ')}\n`)
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], {
      cwd: root,
      env,
      stdio: ['ignore', 'pipe', quiet ? 'pipe' : 'inherit'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => {
      stdout += d
      if (!quiet) process.stdout.write(d)
    })
    child.stderr?.on('data', (d) => (stderr += d))
    child.on('close', (code) =>
      code === 0 ? resolve(stdout) : reject(new Error(`backfill ${args.join(' ')} exited ${code}\n${stderr}`)),
    )
  })
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

await backfill(['dev', 'start'])
await backfill(['migrate'])

process.stderr.write('\n$ backfill worker --tasks examples/tasks --crontab examples/crontab --concurrency 8 &\n')
const worker = spawn(
  process.execPath,
  [
    bin,
    'worker',
    '--tasks',
    'examples/tasks',
    '--crontab',
    'examples/crontab',
    '--concurrency',
    '8',
    '--dlq-interval',
    '5',
  ],
  {
    cwd: root,
    env,
    stdio: ['ignore', 'inherit', 'inherit'],
  },
)
const workerExit = new Promise((resolve) => worker.on('exit', (code) => resolve(code)))

try {
  await sleep(1000)
  await backfill(['enqueue', '--ndjson', 'examples/jobs.ndjson'])
  await backfill([
    'enqueue',
    'send_email',
    '--payload',
    '{"to":"ada@example.com","subject":"Hello from the quick start"}',
    '--priority',
    'fast',
  ])

  // Wait until nothing is waiting, running or scheduled for a retry: the flaky jobs succeed on
  // their second attempt (after about 2.7 s), the failing ones exhaust their 2 attempts.
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const status = JSON.parse(await backfill(['status', '--json'], {quiet: true}))
    if (status.totals.jobs === 0) break
    if (Date.now() > deadline)
      throw new Error(`jobs still pending after ${timeoutMs} ms: ${JSON.stringify(status.totals)}`)
    await sleep(1000)
  }
} finally {
  worker.kill('SIGTERM')
  const code = await workerExit
  if (code !== 0) process.exitCode = 1
}

await backfill(['status'])
await backfill(['dlq', 'stats'])
process.stderr.write(`
Next steps (the development database is still running):
  npx backfill dlq list --embedded                      # what failed, newest first
  npx backfill dlq retry --embedded --task failing --limit 2 --yes   # canary retry
  npx backfill dlq retry --embedded --all --dry-run     # what a full retry would do
  npx backfill ui --embedded                            # the web console on http://127.0.0.1:4000/
  npx backfill dev stop                                 # stop the database (data kept in .backfill/)
`)
