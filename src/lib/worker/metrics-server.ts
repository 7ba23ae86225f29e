import http from 'node:http'
import type {AddressInfo} from 'node:net'

import type {Registry} from 'prom-client'

import {ConfigError} from '../errors.js'
import type {HealthProbes, ProbeResult} from './health.js'

export interface MetricsServer {
  url: string
  /** Base URL (http://host:port) for the probe paths. */
  baseUrl: string
  port: number
  close(): Promise<void>
}

export interface ServeMetricsOptions {
  port: number
  host?: string
  /** More series served after the registry's, when present (the queue metrics while this process computes them). */
  extra?: () => Registry | undefined
  /** /healthz and /readyz; without them /healthz answers ok and /readyz is not served. */
  probes?: HealthProbes
  /** Named in the error when the port is taken (default --metrics-port). */
  portFlag?: string
}

/**
 * Serves a registry at GET /metrics, and the probes at GET /healthz (liveness) and
 * GET /readyz (readiness): 200 or 503 with a one-line reason. Binds to loopback unless told
 * otherwise.
 */
export async function serveMetrics(registry: Registry, options: ServeMetricsOptions): Promise<MetricsServer> {
  const host = options.host ?? '127.0.0.1'
  const server = http.createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0]
    if (request.method === 'GET' && path === '/metrics') {
      const extra = options.extra?.()
      Promise.all([registry.metrics(), extra?.metrics() ?? '']).then(
        ([own, more]) => {
          response.writeHead(200, {'content-type': registry.contentType})
          response.end(more ? `${own.endsWith('\n') || own === '' ? own : `${own}\n`}${more}` : own)
        },
        (error: Error) => {
          response.writeHead(500, {'content-type': 'text/plain'})
          response.end(error.message)
        },
      )
      return
    }
    if (request.method === 'GET' && path === '/healthz') {
      return probe(response, options.probes ? options.probes.live() : {ok: true, reason: 'ok'})
    }
    if (request.method === 'GET' && path === '/readyz' && options.probes) {
      return probe(response, options.probes.ready())
    }
    response.writeHead(404, {'content-type': 'text/plain'})
    response.end(`not found: try /metrics${options.probes ? ', /healthz or /readyz' : ''}\n`)
  })
  // Probes must answer even when keep-alive sockets linger from a scraper.
  server.keepAliveTimeout = 5000
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(
        new ConfigError(
          `cannot serve metrics on ${host}:${options.port}: ${error.code === 'EADDRINUSE' ? 'address in use' : error.message}`,
          {
            code: 'E_METRICS_PORT',
            cause: error,
            suggestions: [`choose another ${options.portFlag ?? '--metrics-port'} (0 picks a free one)`],
          },
        ),
      ),
    )
    server.listen(options.port, host, () => resolve())
  })
  const address = server.address() as AddressInfo
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address
  const baseUrl = `http://${shownHost}:${address.port}`
  return {
    url: `${baseUrl}/metrics`,
    baseUrl,
    port: address.port,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}

function probe(response: http.ServerResponse, result: ProbeResult): void {
  response.writeHead(result.ok ? 200 : 503, {'content-type': 'text/plain'})
  response.end(`${result.ok ? 'ok' : 'fail'}: ${result.reason}\n`)
}
