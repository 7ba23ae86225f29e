/**
 * `npm run screenshots`: renders the console's main pages with seeded data into docs/img/
 * (the README shows them). A throwaway embedded PostgreSQL, a console on a free loopback
 * port, and Debian's Chromium through playwright-core; nothing else is touched.
 */
import {mkdirSync, mkdtempSync, rmSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {targetFromUrl} from '../src/lib/connection.js'
import {openConsoleDatabase, startConsoleServer} from '../src/lib/console/server.js'
import {Database} from '../src/lib/db.js'
import {captureNow} from '../src/lib/dlq/capture-run.js'
import {EmbeddedPostgres} from '../src/lib/embedded/postgres.js'
import {parseSchemaName} from '../src/lib/identifiers.js'
import {migrate} from '../src/lib/schema/migrate.js'
import {launchBrowser} from '../test/support/browser.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const OUT = path.join(ROOT, 'docs', 'img')

async function seed(db: Database): Promise<{jobId: string; dlqId: string}> {
  const q = async (text: string, params: unknown[] = []): Promise<{id: string}[]> =>
    (await db.pool.query<{id: string}>(text, params)).rows
  const s = db.quotedSchema
  const tasks = ['send_email', 'resize_image', 'sync_account', 'charge_card', 'webhook_deliver']
  for (const [i, task] of tasks.entries()) {
    await q(
      `select ${s}.add_job($1, json_build_object('n', g), queue_name => case when g % 4 = 0 then 'account:' || (g % 7) end,
         run_at => now() + case when g % 5 = 0 then interval '20 minutes' else - (g * interval '3 seconds') end, priority => g % 3)
       from generate_series(1, $2::int) g`,
      [task, 40 + i * 37],
    )
  }
  // Retrying, then exhausted jobs with realistic errors, captured into the DLQ.
  await q(
    `update ${s}._private_jobs set attempts = 2, run_at = now() + interval '4 minutes',
       last_error = 'ETIMEDOUT connect 10.0.3.' || (id % 200) || ':443' where id % 9 = 1`,
  )
  const errors = [
    ['send_email', "SMTP 421 4.7.0 Try again later (user 'u_%s@example.com')"],
    ['charge_card', 'card_declined: insufficient funds for charge %s'],
    ['webhook_deliver', 'POST https://hooks.example.com/%s returned 502 Bad Gateway'],
    ['resize_image', 'image %s.png not found in bucket media-prod'],
  ] as const
  for (const [n, [task, error]] of errors.entries()) {
    await q(
      `with picked as (select j.id from ${s}._private_jobs j join ${s}._private_tasks t on t.id = j.task_id
         where t.identifier = $1 and j.attempts = 0 order by j.id limit $2)
       update ${s}._private_jobs j set attempts = max_attempts, last_error = replace($3, '%s', (j.id * 7919 % 100000)::text)
       from picked where j.id = picked.id`,
      [task, [26, 11, 7, 3][n], error],
    )
  }
  await captureNow(db)
  // A live worker (fresh heartbeat) holding three jobs, and a dead one holding one.
  await q(
    `insert into ${s}.backfill_workers (pool_id, hostname, pid, started_at, last_heartbeat_at, version, metadata) values
     ('pool-1a2b3c4d5e6f708192', 'worker-a', 4211, now() - interval '3 hours', now(), 'demo', '{"heartbeatIntervalMs": 10000}'),
     ('pool-9f8e7d6c5b4a392817', 'worker-b', 977, now() - interval '5 hours', now() - interval '25 minutes', 'demo', '{"heartbeatIntervalMs": 10000}')`,
  )
  await q(
    `update ${s}._private_jobs set locked_by = 'pool-1a2b3c4d5e6f708192', locked_at = now() - interval '40 seconds', attempts = attempts + 1
     where id in (select id from ${s}._private_jobs where attempts = 0 and job_queue_id is null order by id limit 3)`,
  )
  await q(
    `update ${s}._private_jobs set locked_by = 'pool-9f8e7d6c5b4a392817', locked_at = now() - interval '26 minutes', attempts = attempts + 1
     where id in (select id from ${s}._private_jobs where attempts = 0 and job_queue_id is null order by id desc limit 1)`,
  )
  const [job] = await q(`select id::text as id from ${s}._private_jobs where attempts = 2 order by id limit 1`)
  const [entry] = await q(`select id::text as id from ${s}.backfill_dlq order by id limit 1`)
  return {jobId: job!.id, dlqId: entry!.id}
}

/**
 * The overview's throughput sparkline samples counters on each overview load, at most one sample
 * per 5 s: load it every 5.5 s while work happens in between (n jobs arrive and graphile's own
 * complete_jobs() completes them, as a worker would), so the screenshot shows a real estimate and
 * the other pages still show the seeded queue as it was.
 */
async function throughputHistory(db: Database, origin: string): Promise<void> {
  const s = db.quotedSchema
  const completed = [34, 52, 41, 66, 58, 73, 49, 80, 62, 71]
  await fetch(`${origin}/api/v1/overview`)
  for (const [i, n] of completed.entries()) {
    await new Promise((resolve) => setTimeout(resolve, 5500))
    await db.pool.query(
      `select ${s}.add_job('send_email', json_build_object('n', 10000 * $2::int + g)) from generate_series(1, $1::int) g`,
      [n, i],
    )
    await db.pool.query(
      `select ${s}.complete_jobs(array(select id from ${s}._private_jobs
         where locked_at is null and attempts = 0 and run_at <= now() order by id desc limit $1))`,
      [n],
    )
    // The live worker keeps beating (the dead one does not).
    await db.pool.query(
      `update ${s}.backfill_workers set last_heartbeat_at = now() where pool_id = 'pool-1a2b3c4d5e6f708192'`,
    )
    await fetch(`${origin}/api/v1/overview`)
    process.stderr.write(`throughput sample ${i + 1}/${completed.length}\n`)
  }
}

async function main(): Promise<void> {
  const pgDir = mkdtempSync(path.join(os.tmpdir(), 'bf-shots-pg-'))
  const server = new EmbeddedPostgres({dir: pgDir, ephemeral: true})
  await server.start()
  const target = targetFromUrl(server.url, 'flag-or-env')
  const schema = parseSchemaName('graphile_worker')
  const setup = Database.connect({target, schema})
  const db = openConsoleDatabase({target, schema})
  const browser = await launchBrowser({viewport: {width: 1280, height: 860}, colorScheme: 'light'})
  try {
    await migrate(setup)
    const {jobId, dlqId} = await seed(setup)
    const consoleServer = await startConsoleServer({database: db, port: 0})
    const origin = new URL(consoleServer.url).origin
    mkdirSync(OUT, {recursive: true})
    const page = await browser.context.newPage()
    const shoot = async (name: string, url: string, action?: () => Promise<void>): Promise<void> => {
      await page.goto(`${origin}${url}`)
      if (action) await action()
      await page.screenshot({path: path.join(OUT, `console-${name}.png`), fullPage: false})
      process.stderr.write(`docs/img/console-${name}.png\n`)
    }
    await throughputHistory(setup, origin)
    await shoot('overview', '/')
    await shoot('dlq-groups', '/dlq')
    await shoot('dlq-retry-preview', '/dlq', async () => {
      await page
        .getByRole('button', {name: /Retry group/})
        .first()
        .click()
      await page.waitForSelector('#preview-count')
    })
    await shoot('dlq-entry', `/dlq/${dlqId}`)
    await shoot('jobs', `/jobs?q=${encodeURIComponent('--state retrying --state ready')}`)
    await shoot('job', `/jobs/${jobId}`)
    await shoot('locks', '/locks')
    await page.emulateMedia({colorScheme: 'dark'})
    await page.setViewportSize({width: 390, height: 844})
    await shoot('overview-dark-narrow', '/')
    await consoleServer.close()
  } finally {
    await browser.close()
    await db.end()
    await setup.end()
    await server.destroy()
    rmSync(pgDir, {recursive: true, force: true})
  }
}

await main()
