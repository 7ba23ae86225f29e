import {spawn} from 'node:child_process'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {testUrl} from './db.js'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
export const BIN = path.join(ROOT, 'bin', 'run.js')

export interface CliResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

export interface CliOptions {
  /** Extra environment; DATABASE_URL defaults to the test database (null removes it). */
  env?: Record<string, string | undefined>
  databaseUrl?: string | null
  input?: string
  timeoutMs?: number
  cwd?: string
}

/** Environment without anything of the developer's that would change our behaviour. */
export function cleanEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (
      /^(PG|DATABASE_URL$|GRAPHILE_|BACKFILL_|NO_COLOR$|FORCE_COLOR$|CONCURRENCY$|POLL_INTERVAL_MS$|DLQ_|FAST_QUEUE|BULK_QUEUE)/.test(
        key,
      )
    )
      continue
    env[key] = value
  }
  for (const [key, value] of Object.entries(extra)) {
    if (value === undefined) delete env[key]
    else env[key] = value
  }
  return env
}

/** Runs the real built binary (bin/run.js → dist) and collects its output. */
export function runCli(args: string[], options: CliOptions = {}): Promise<CliResult> {
  const databaseUrl = options.databaseUrl === undefined ? testUrl() : options.databaseUrl
  const env = cleanEnv({...(databaseUrl === null ? {} : {DATABASE_URL: databaseUrl}), ...options.env})
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env,
      cwd: options.cwd ?? ROOT,
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({code, signal, stdout, stderr})
    })
    if (options.input !== undefined) child.stdin.end(options.input)
    else child.stdin.end()
  })
}

/** Parses stdout as exactly one JSON document. */
export function parseJson<T = Record<string, unknown>>(result: CliResult): T {
  try {
    return JSON.parse(result.stdout) as T
  } catch {
    throw new Error(
      `stdout is not one JSON document (exit ${result.code}):\n${result.stdout}\nstderr:\n${result.stderr}`,
    )
  }
}
