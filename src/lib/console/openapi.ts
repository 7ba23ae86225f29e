import {BACKFILL_VERSION} from '../version.js'
import {ROUTES} from './routes.js'

type Schema = Record<string, unknown>

const str = {type: 'string'}
const num = {type: 'number'}
const int = {type: 'integer'}
const bool = {type: 'boolean'}
const time = {type: 'string', format: 'date-time'}
const nullable = (schema: Schema): Schema => ({...schema, nullable: true})
const obj = (properties: Record<string, Schema>, extra: Schema = {}): Schema => ({
  type: 'object',
  required: Object.keys(properties),
  properties,
  ...extra,
})
const arr = (items: Schema): Schema => ({type: 'array', items})
const ref = (name: string): Schema => ({$ref: `#/components/schemas/${name}`})
const anyObject = {type: 'object'}

const counts = {ready: int, scheduled: int, running: int, retrying: int, exhausted: int}
const dlqEntry = obj({
  id: str,
  taskIdentifier: str,
  queueName: str,
  priority: int,
  jobKey: nullable(str),
  attempts: nullable(int),
  maxAttempts: nullable(int),
  failureReason: str,
  errorText: str,
  failedAt: time,
  requeuedCount: int,
})
const jobEntry = obj({
  id: str,
  taskIdentifier: str,
  queueName: nullable(str),
  state: str,
  priority: int,
  attempts: int,
  maxAttempts: int,
  runAt: time,
  createdAt: time,
  lastError: nullable(str),
})
const dlqStats = {
  total: int,
  oldest: nullable(time),
  newest: nullable(time),
  byTask: arr(obj({taskIdentifier: str, count: int})),
  byQueue: arr(obj({queueName: str, count: int})),
  groups: arr(obj({fingerprint: str, taskIdentifier: str, count: int, sampleError: str})),
}
const preview = {stats: obj(dlqStats), sample: arr(dlqEntry)}
const confirm = obj({token: str, expiresAt: time})
const selection = obj({
  spec: anyObject,
  selector: anyObject,
  takenAt: time,
  matched: int,
  count: int,
  byTask: arr(anyObject),
  sample: arr(jobEntry),
})

/** Response documents: the CLI's --json shapes (required fields; more may appear). */
export const SCHEMAS: Record<string, Schema> = {
  Error: obj({
    error: obj({code: str, message: str, exitCode: int, suggestions: arr(str)}),
  }),
  Session: obj({
    identity: obj({name: str, method: str}),
    readOnly: bool,
    capabilities: obj({actionsEnabled: bool, canWrite: bool, reason: nullable(str), role: str}),
    csrfToken: str,
  }),
  Status: obj({
    schema: str,
    at: time,
    totals: obj({...counts, jobs: int, dlq: nullable(int)}),
    tasks: arr(obj({task: str, ...counts, dlq: int})),
    queues: arr(obj({queue: nullable(str), ...counts, dlq: int})),
    serialQueues: int,
    dlq: obj({exists: bool, entries: int, oldestFailedAt: nullable(time)}),
    locks: obj({live: anyObject, dead: anyObject, unknown: anyObject, stale: anyObject}),
    workers: arr(obj({id: str, runtime: str, state: str, heartbeatAgeMs: num})),
    durationMs: num,
  }),
  Overview: obj({
    status: ref('Status'),
    dlq: nullable(obj({...dlqStats, groupsShown: int})),
    throughput: nullable(
      obj({
        estimate: bool,
        samples: int,
        points: arr(obj({at: time, intervalMs: num, completed: nullable(int)})),
        completed: int,
        spanMs: num,
        perMinute: nullable(num),
      }),
    ),
  }),
  JobList: obj({sort: str, jobs: arr(jobEntry), nextCursor: nullable(str)}),
  JobShow: obj({
    job: jobEntry,
    payloadText: str,
    why: str,
    owner: nullable(anyObject),
    queue: nullable(anyObject),
    dlq: nullable(anyObject),
  }),
  JobAction: {
    ...obj({dryRun: bool, selection}),
    properties: {
      dryRun: bool,
      selection,
      confirm,
      run: str,
      done: int,
      movedToDlq: int,
      skipped: anyObject,
      batches: int,
      interrupted: bool,
    },
  },
  EnqueueOutcome: obj({status: str}),
  DlqStats: obj({...dlqStats, selection: anyObject}),
  DlqList: obj({entries: arr(dlqEntry), nextCursor: nullable(str), uncaptured: nullable(anyObject)}),
  DlqShow: obj({entry: dlqEntry, caseId: str, history: arr(obj({at: time, event: str}))}),
  DlqHistory: obj({
    runs: arr(
      obj({
        run: str,
        action: str,
        startedAt: time,
        count: int,
        osUser: nullable(str),
        hostname: nullable(str),
        reason: nullable(str),
      }),
    ),
  }),
  DlqRetry: {
    ...obj({dryRun: bool, selection: anyObject}),
    properties: {
      dryRun: bool,
      selection: anyObject,
      ...preview,
      confirm,
      run: str,
      retried: int,
      skipped: anyObject,
      batches: int,
    },
  },
  DlqPurge: {
    ...obj({dryRun: bool, selection: anyObject}),
    properties: {dryRun: bool, selection: anyObject, ...preview, confirm, run: str, purged: int, batches: int},
  },
  LocksList: obj({
    schema: str,
    at: time,
    owners: arr(obj({owner: nullable(str), family: str, liveness: str, reason: str, jobLocks: int, queueLocks: int})),
    locks: arr(obj({kind: str, owner: nullable(str), liveness: str, ageMs: num, key: str})),
    totals: obj({jobs: int, queues: int, byLiveness: anyObject}),
    omitted: int,
    workers: arr(anyObject),
    evidence: obj({registry: bool, rustHeartbeats: bool}),
  }),
  LocksClean: {
    ...obj({
      schema: str,
      dryRun: bool,
      jobLocks: int,
      queueLocks: int,
      released: anyObject,
      kept: anyObject,
      locks: arr(anyObject),
    }),
  },
  SchemaStatus: obj({
    schema: str,
    database: str,
    schemaExists: bool,
    graphile: anyObject,
    backfill: anyObject,
    findings: arr(obj({severity: str, code: str, message: str})),
    actionNeeded: bool,
  }),
}

const PARAM_DOCS: Record<string, string> = {
  q: 'A whole selection in the CLI\'s words, e.g. "--task send_email --state retrying 42".',
  id: 'Ids (repeatable).',
  task: 'Task identifier (repeatable).',
  queue: "Serial queue name (repeatable; '' = parallel).",
  'job-key': 'Job key (repeatable).',
  since: 'ISO 8601, or a duration ago (2h).',
  until: 'ISO 8601, or a duration ago.',
  'older-than': 'A duration (30d).',
  error: 'Substring of the last error (case-insensitive).',
  limit: 'At most this many (page size; for actions, the first N in id order: a canary).',
  state: 'Job state (repeatable): ready, scheduled, running, retrying, exhausted, blocked.',
  group: 'Failure-group fingerprint (dlq stats).',
  dryRun: 'true: preview only; the answer carries confirm.token.',
  confirm: "A preview's confirm.token: change exactly what it showed (once; a repeat replays the answer).",
  yes: "true: act at once without a preview (as the CLI's --yes).",
  all: 'Allow an empty selection.',
  reason: 'Why, recorded in the audit trail.',
}

/** The OpenAPI 3.0 document of the routes this console serves (state-changing ones left out when read-only). */
export function openApiDocument(options: {prefix?: string; readOnly?: boolean} = {}): Schema {
  const paths: Record<string, Record<string, Schema>> = {}
  for (const route of ROUTES) {
    if (options.readOnly && route.write) continue
    const pathParams = [...route.path.matchAll(/\{(\w+)\}/g)].map((m) => m[1] as string)
    const parameters: Schema[] = pathParams.map((name) => ({name, in: 'path', required: true, schema: str}))
    if (route.method === 'GET')
      for (const name of route.params)
        parameters.push({name, in: 'query', required: false, schema: str, description: PARAM_DOCS[name] ?? name})
    const operation: Schema = {
      operationId: `${route.method.toLowerCase()}${route.path
        .replace(/\/api\/v1/, '')
        .replace(/[{}]/g, '')
        .replace(/[/-](\w)/g, (_m, c: string) => c.toUpperCase())}`,
      summary: route.summary,
      ...(route.cli
        ? {
            description: `Answers with the document of \`backfill ${route.cli} --json\`.${route.crate ? ` Covers the Rust crate's ${route.crate}.` : ''}`,
          }
        : route.crate
          ? {description: `Covers the Rust crate's ${route.crate}.`}
          : {}),
      parameters,
      responses: {
        200: {description: 'OK', content: {'application/json': {schema: ref(route.response)}}},
        default: {
          description: 'The error envelope (as the CLI under --json)',
          content: {'application/json': {schema: ref('Error')}},
        },
      },
      'x-state-changing': route.write,
    }
    if (route.method === 'POST') {
      operation.requestBody = {
        required: false,
        content: {
          'application/json': {
            schema: {
              type: 'object',
              properties: Object.fromEntries(route.params.map((p) => [p, {description: PARAM_DOCS[p] ?? p}])),
            },
          },
          'application/x-www-form-urlencoded': {schema: {type: 'object'}},
        },
      }
      operation.parameters = [
        ...parameters,
        {
          name: 'X-CSRF-Token',
          in: 'header',
          required: false,
          schema: str,
          description: 'Required unless authenticated by a bearer token.',
        },
        {
          name: 'Idempotency-Key',
          in: 'header',
          required: false,
          schema: str,
          description:
            'A repeat of the same request with the same key replays the first answer; the key with another request is refused (422).',
        },
      ]
    }
    const entry = (paths[route.path] ??= {})
    entry[route.method.toLowerCase()] = operation
  }
  return {
    openapi: '3.0.3',
    info: {
      title: 'backfill admin API',
      version: BACKFILL_VERSION,
      description:
        "The JSON admin API of `backfill ui`: the same library calls and documents as the CLI under --json; errors in the CLI's error envelope.",
    },
    servers: [{url: options.prefix ?? ''}],
    components: {
      schemas: SCHEMAS,
      securitySchemes: {
        bearer: {type: 'http', scheme: 'bearer', description: 'BACKFILL_UI_TOKEN'},
        basic: {type: 'http', scheme: 'basic', description: 'BACKFILL_UI_USERS'},
        session: {type: 'apiKey', in: 'cookie', name: 'backfill_session'},
      },
    },
    security: [{bearer: []}, {basic: []}, {session: []}],
    paths,
  }
}
