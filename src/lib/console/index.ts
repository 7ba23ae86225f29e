/** The web console and admin HTTP API, embeddable as a node:http handler. */
export {
  createConsoleHandler,
  type ConsoleHandler,
  type ConsoleOptions,
  type PageContext,
  type PageRenderer,
  type PageResponse,
} from './handler.js'
export {
  startConsoleServer,
  openConsoleDatabase,
  checkBind,
  isLoopbackBind,
  DEFAULT_UI_HOST,
  DEFAULT_UI_PORT,
  type ConsoleServer,
} from './server.js'
export {authFromEnv, hasCredentials, safeEqual, type AuthConfig, type Identity} from './auth.js'
export {SharedCache} from './cache.js'
export {
  estimateThroughput,
  ThroughputRing,
  type ThroughputEstimate,
  type ThroughputPoint,
  type ThroughputSample,
} from './throughput.js'
export {openApiDocument} from './openapi.js'
export {ROUTES, type Route} from './routes.js'
export {HttpError} from './errors.js'
export type {
  Capabilities,
  DlqHistoryDocument,
  DlqPurgeDocument,
  DlqRetryDocument,
  DlqStatsDocument,
  JobActionDocument,
  OverviewDocument,
} from './operations.js'
export {locksReport, type LocksListResult, type LocksReportOptions} from '../locks/report.js'
