import http from 'node:http'
import type {AddressInfo} from 'node:net'

import type {ConnectionTarget} from '../connection.js'
import {createPool, Database, DEFAULT_STATEMENT_TIMEOUT_MS, opsSessionLimits} from '../db.js'
import {ConfigError} from '../errors.js'
import type {SchemaName} from '../identifiers.js'
import {hasCredentials, isLoopbackAddress, type AuthConfig} from './auth.js'
import {createConsoleHandler, type ConsoleHandler, type ConsoleOptions} from './handler.js'

export const DEFAULT_UI_PORT = 4000
export const DEFAULT_UI_HOST = '127.0.0.1'

/**
 * A database handle for the console: its own small pool whose every connection carries a
 * statement timeout, so no page can hold the database it is meant to help. end() closes it.
 */
export function openConsoleDatabase(options: {
  target: ConnectionTarget
  schema: SchemaName
  statementTimeoutMs?: number
  max?: number
  onError?: (error: Error) => void
}): Database {
  // The operations' limits (statement, lock wait, idle transaction); 0 turns them off.
  const limits = opsSessionLimits(options.statementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS)
  const pool = createPool(
    options.target,
    {applicationName: 'backfill ui', max: options.max ?? 5, limits},
    options.onError,
  )
  const db = Database.fromPool(pool, {target: options.target, schema: options.schema})
  const end = async (): Promise<void> => {
    if (!pool.ending) await pool.end()
  }
  return Object.assign(db, {end})
}

/** Hosts that listen on loopback only. */
export function isLoopbackBind(host: string): boolean {
  return host === 'localhost' || isLoopbackAddress(host.replace(/^\[(.*)\]$/, '$1'))
}

/** Refuses to serve other machines without credentials: what `backfill ui --host` checks first. */
export function checkBind(host: string, auth: AuthConfig, hasHook = false): void {
  if (isLoopbackBind(host) || hasCredentials(auth) || hasHook) return
  throw new ConfigError(
    `refusing to listen on ${host} without authentication: anyone who can reach it could act on your jobs`,
    {
      code: 'E_UNSAFE_BIND',
      suggestions: [
        'set BACKFILL_UI_TOKEN (bearer token and login form) or BACKFILL_UI_USERS (basic auth) first',
        `or keep the default --host ${DEFAULT_UI_HOST} and reach it through an SSH tunnel`,
      ],
    },
  )
}

export interface ConsoleServer {
  url: string
  handler: ConsoleHandler
  server: http.Server
  close(): Promise<void>
}

/** Serves the console on host:port (loopback by default; refused elsewhere without credentials). */
export async function startConsoleServer(
  options: ConsoleOptions & {host?: string; port?: number},
): Promise<ConsoleServer> {
  const host = options.host ?? DEFAULT_UI_HOST
  checkBind(host, options.auth ?? {}, options.authenticate !== undefined)
  const handler = createConsoleHandler({
    ...options,
    allowedHosts: options.allowedHosts ?? (isLoopbackBind(host) ? 'loopback' : undefined),
  })
  const server = http.createServer(handler)
  server.headersTimeout = 20_000
  server.requestTimeout = 120_000
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(
        new ConfigError(
          `cannot serve the console on ${host}:${options.port ?? DEFAULT_UI_PORT}: ${error.code === 'EADDRINUSE' ? 'address in use' : error.message}`,
          {code: 'E_UI_PORT', cause: error, suggestions: ['choose another --port (0 picks a free one)']},
        ),
      ),
    )
    server.listen(options.port ?? DEFAULT_UI_PORT, host, () => resolve())
  })
  const address = server.address() as AddressInfo
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address
  return {
    url: `http://${shownHost}:${address.port}${handler.prefix}/`,
    handler,
    server,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}
