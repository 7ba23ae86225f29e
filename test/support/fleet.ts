import {type ChildProcessWithoutNullStreams, spawn} from 'node:child_process'
import net from 'node:net'

import {BIN, cleanEnv, ROOT} from './cli.js'
import {testUrl} from './db.js'

/** A long-running process (the CLI or a server binary) with its output collected. */
export class ServerProcess {
  readonly child: ChildProcessWithoutNullStreams
  /** stdout and stderr interleaved. */
  output = ''
  stdout = ''
  readonly exited: Promise<{code: number | null; signal: NodeJS.Signals | null}>

  constructor(command: string, args: string[], env: NodeJS.ProcessEnv, cwd = ROOT) {
    this.child = spawn(command, args, {cwd, env, stdio: ['pipe', 'pipe', 'pipe']})
    this.child.stdout.setEncoding('utf8').on('data', (d: string) => {
      this.output += d
      this.stdout += d
    })
    this.child.stderr.setEncoding('utf8').on('data', (d: string) => (this.output += d))
    this.exited = new Promise((resolve) => this.child.on('exit', (code, signal) => resolve({code, signal})))
  }

  /** The real CLI (bin/run.js) against the test database unless env says otherwise. */
  static cli(args: string[], env: Record<string, string | undefined> = {}): ServerProcess {
    return new ServerProcess(process.execPath, [BIN, ...args], cleanEnv({DATABASE_URL: testUrl(), ...env}))
  }

  async waitFor(pattern: RegExp, timeoutMs = 20_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const match = this.output.match(pattern)
      if (match) return match
      if (this.child.exitCode !== null || this.child.signalCode !== null || Date.now() > deadline)
        throw new Error(`output never matched ${pattern} (exit ${this.child.exitCode}):\n${this.output}`)
      await new Promise((r) => setTimeout(r, 25))
    }
  }

  /** SIGTERM (SIGKILL after graceMs), by this process's own PID. */
  async stop(graceMs = 20_000): Promise<{code: number | null; signal: NodeJS.Signals | null}> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGTERM')
      const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs)
      const result = await this.exited
      clearTimeout(timer)
      return result
    }
    return this.exited
  }
}

/** Prometheus text → `name{labels}` → value. */
export function parseSeries(text: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const at = line.lastIndexOf(' ')
    out.set(line.slice(0, at), Number(line.slice(at + 1)))
  }
  return out
}

/** Metric family names a scrape declares (# TYPE lines), with the series names they produce. */
export function servedNames(text: string): Set<string> {
  const names = new Set<string>()
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)/.exec(line)
    if (type) {
      const [, name, kind] = type as unknown as [string, string, string]
      names.add(name)
      if (kind === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(`${name}${s}`)
      if (kind === 'summary') for (const s of ['_sum', '_count']) names.add(`${name}${s}`)
    }
  }
  return names
}

export async function scrape(url: string): Promise<string> {
  const response = await fetch(url)
  if (!response.ok) throw new Error(`GET ${url}: ${response.status}`)
  return response.text()
}

export async function probe(url: string): Promise<{status: number; body: string}> {
  const response = await fetch(url)
  return {status: response.status, body: await response.text()}
}

export async function waitUntil(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

/** A loopback TCP port free right now (for a server the test starts). */
export async function freePort(): Promise<number> {
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const {port} = server.address() as net.AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}
