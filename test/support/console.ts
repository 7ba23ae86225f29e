import {targetFromUrl} from '../../src/lib/connection.js'
import type {ConsoleOptions} from '../../src/lib/console/handler.js'
import {openConsoleDatabase, startConsoleServer, type ConsoleServer} from '../../src/lib/console/server.js'
import type {Database} from '../../src/lib/db.js'
import {parseSchemaName} from '../../src/lib/identifiers.js'
import type {TestSchema} from './db.js'

export interface RunningConsole extends ConsoleServer {
  db: Database
  /** http://127.0.0.1:port (no trailing slash, no prefix). */
  origin: string
  stop(): Promise<void>
}

/** A console on a free loopback port over the test schema (its own pool with a statement timeout). */
export async function startConsole(
  t: TestSchema,
  options: Partial<ConsoleOptions> & {host?: string} = {},
): Promise<RunningConsole> {
  const db = openConsoleDatabase({target: targetFromUrl(t.url, 'flag-or-env'), schema: parseSchemaName(t.schema)})
  const server = await startConsoleServer({database: db, port: 0, ...options})
  const origin = new URL(server.url).origin
  return {
    ...server,
    db,
    origin,
    stop: async () => {
      await server.close()
      await db.end()
    },
  }
}

export interface Answer<T = Record<string, unknown>> {
  status: number
  headers: Headers
  body: T
}

/** A small API client: JSON in and out, a CSRF token fetched once per client (as the pages do). */
export class ApiClient {
  private csrf: string | undefined
  constructor(
    readonly origin: string,
    readonly headers: Record<string, string> = {},
  ) {}

  async get<T = Record<string, unknown>>(path: string, headers: Record<string, string> = {}): Promise<Answer<T>> {
    const res = await fetch(`${this.origin}${path}`, {headers: {...this.headers, ...headers}, redirect: 'manual'})
    return {status: res.status, headers: res.headers, body: (await parse(res)) as T}
  }

  async token(): Promise<string> {
    this.csrf ??= ((await this.get<{csrfToken: string}>('/api/v1/session')).body.csrfToken as string) ?? ''
    return this.csrf
  }

  async post<T = Record<string, unknown>>(
    path: string,
    body: Record<string, unknown> = {},
    headers: Record<string, string> = {},
    options: {csrf?: boolean} = {},
  ): Promise<Answer<T>> {
    const csrf: Record<string, string> = options.csrf === false ? {} : {'x-csrf-token': await this.token()}
    const res = await fetch(`${this.origin}${path}`, {
      method: 'POST',
      headers: {'content-type': 'application/json', ...this.headers, ...csrf, ...headers},
      body: JSON.stringify(body),
      redirect: 'manual',
    })
    return {status: res.status, headers: res.headers, body: (await parse(res)) as T}
  }
}

async function parse(res: Response): Promise<unknown> {
  const text = await res.text()
  if ((res.headers.get('content-type') ?? '').includes('application/json')) return JSON.parse(text)
  return text
}
