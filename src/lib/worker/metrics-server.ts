import http from 'node:http'
import type {AddressInfo} from 'node:net'

import type {Registry} from 'prom-client'

import {ConfigError} from '../errors.js'

export interface MetricsServer {
  url: string
  close(): Promise<void>
}

/** Serves a registry at GET /metrics (and /healthz). Binds to loopback unless told otherwise. */
export async function serveMetrics(registry: Registry, options: {port: number; host?: string}): Promise<MetricsServer> {
  const host = options.host ?? '127.0.0.1'
  const server = http.createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0]
    if (request.method === 'GET' && path === '/metrics') {
      registry.metrics().then(
        (text) => {
          response.writeHead(200, {'content-type': registry.contentType})
          response.end(text)
        },
        (error: Error) => {
          response.writeHead(500, {'content-type': 'text/plain'})
          response.end(error.message)
        },
      )
      return
    }
    if (request.method === 'GET' && path === '/healthz') {
      response.writeHead(200, {'content-type': 'text/plain'})
      response.end('ok\n')
      return
    }
    response.writeHead(404, {'content-type': 'text/plain'})
    response.end('not found: try /metrics\n')
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(
        new ConfigError(
          `cannot serve metrics on ${host}:${options.port}: ${error.code === 'EADDRINUSE' ? 'address in use' : error.message}`,
          {
            code: 'E_METRICS_PORT',
            cause: error,
            suggestions: ['choose another --metrics-port (0 picks a free one)'],
          },
        ),
      ),
    )
    server.listen(options.port, host, () => resolve())
  })
  const address = server.address() as AddressInfo
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address
  return {
    url: `http://${shownHost}:${address.port}/metrics`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  }
}
