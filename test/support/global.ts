/**
 * Mocha global fixture: unless TEST_DATABASE_URL points at a server, start a throwaway
 * PostgreSQL (the same launcher `backfill dev` uses) on a unix socket in a temp dir.
 */
import {mkdtempSync} from 'node:fs'
import {existsSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import pg from 'pg'

import {EmbeddedPostgres} from '../../src/lib/embedded/postgres.js'

let server: EmbeddedPostgres | undefined

export async function mochaGlobalSetup(): Promise<void> {
  if (process.env.TEST_DATABASE_URL) return
  const base = existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir()
  const dir = mkdtempSync(path.join(base, 'bft-'))
  server = new EmbeddedPostgres({dir, ephemeral: true, settings: {max_connections: 300}})
  const started = Date.now()
  await server.start()
  const admin = new pg.Client({connectionString: server.url})
  await admin.connect()
  await admin.query('create database backfill_test')
  await admin.end()
  process.env.TEST_DATABASE_URL = server.urlForDatabase('backfill_test')
  process.env.TEST_ADMIN_DATABASE_URL = server.url
  process.env.TEST_POSTGRES_DIR = dir
  process.stderr.write(`test PostgreSQL ${server.dataDir} ready in ${Date.now() - started} ms\n`)
}

export async function mochaGlobalTeardown(): Promise<void> {
  await server?.destroy()
}
