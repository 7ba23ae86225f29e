import type {IncomingMessage} from 'node:http'

import {parsePriority, parseRunAt, validateFlags} from '../client/spec.js'
import type {Actor} from '../dlq/audit.js'
import type {Database} from '../db.js'
import {UsageError} from '../errors.js'
import {JOB_SORTS, MAX_JOB_PAGE_SIZE, type JobSort} from '../jobs/list.js'
import type {JobActionSpec} from '../jobs/actions.js'
import type {JobEntry} from '../jobs/entries.js'
import {jobDocument} from '../json-document.js'
import type {LivenessOptions} from '../locks/owners.js'
import {parseDuration} from '../duration.js'
import {parseTimeAgo} from '../selector.js'
import type {Identity} from './auth.js'
import type {SharedCache} from './cache.js'
import {HttpError} from './errors.js'
import * as ops from './operations.js'
import {dlqSelectorFrom, jobSelectorFrom, type Params} from './params.js'
import type {PendingStore, StoredResponse} from './store.js'
import type {ThroughputRing} from './throughput.js'

/** A plan waiting for confirmation (jobs action, DLQ retry/purge, locks clean). */
export type Plan = (ops.JobActionPlan | ops.RetryPlan | ops.PurgePlan | ops.LocksPlan) & {
  /** The reason given with the preview (a confirmation may give its own). */
  reason?: string
}

export interface RouteContext {
  req: IncomingMessage
  params: Params
  path: Record<string, string>
  identity: Identity
  remoteAddress: string
  db: Database
  cache: SharedCache
  pending: PendingStore<Plan>
  /** The overview's throughput samples (one ring per console). */
  throughput: ThroughputRing
  readOnly: boolean
  liveness: LivenessOptions | undefined
  /** The Idempotency-Key header, if any. */
  idempotencyKey: string | undefined
  csrfToken: string
}

/** One API route: its method and path (OpenAPI syntax), whether it changes state, its document. */
export interface Route {
  method: 'GET' | 'POST'
  path: string
  write: boolean
  summary: string
  /** Query/body parameter names (the CLI's flag names). */
  params: readonly string[]
  /** Name of the response schema in the OpenAPI document. */
  response: string
  /** The CLI command whose --json document this route answers with. */
  cli?: string
  /** The Rust crate admin router's route this one covers. */
  crate?: string
  handle: (ctx: RouteContext) => Promise<StoredResponse>
}

const SELECTOR = ['q', 'id', 'task', 'queue', 'job-key', 'since', 'until', 'older-than', 'error', 'limit'] as const
const JOB_SELECTOR = [...SELECTOR, 'state', 'flag', 'priority', 'time-field'] as const
const DLQ_SELECTOR = [...SELECTOR, 'group'] as const
const CONFIRM = ['dryRun', 'confirm', 'yes', 'all', 'reason'] as const

const ok = (body: unknown): StoredResponse => ({status: 200, body})

/** Who acted, as the audit trail records it: the console identity and the client's address. */
export function actorOf(ctx: Pick<RouteContext, 'identity' | 'remoteAddress'>): Actor {
  return {osUser: `console:${ctx.identity.name}`, hostname: ctx.remoteAddress}
}

/** A longer-lived entry (costly, slow-changing reads) stays within 5× the configured ttl. */
function cached<T>(ctx: RouteContext, key: string, load: () => Promise<T>, ttlMs?: number): Promise<T> {
  return ctx.cache.get(key, load, ttlMs === undefined ? undefined : Math.min(ttlMs, ctx.cache.ttlMs * 5))
}

function queryKey(ctx: RouteContext): string {
  return `${ctx.req.method} ${ctx.req.url ?? ''}`
}

/**
 * run() once per Idempotency-Key header (if any): a repeat of the same request (action and
 * parameters) replays the first answer; the key reused for another request is refused, as
 * replaying the first answer would report a change that was never made.
 */
async function idempotent(
  ctx: RouteContext,
  scope: string,
  run: () => Promise<StoredResponse>,
): Promise<StoredResponse> {
  if (ctx.idempotencyKey === undefined) return run()
  const once = ctx.pending.once(ctx.identity.name, ctx.idempotencyKey, `${scope}\n${ctx.params.fingerprint()}`, run)
  if (!once)
    throw new HttpError(422, 'E_IDEMPOTENCY_KEY_REUSED', 'this Idempotency-Key was used for another request', {
      suggestions: ['send a new Idempotency-Key for each distinct request; repeat a key only to retry the same one'],
    })
  const result = await once.result
  return once.replay ? {...result, replay: true} : result
}

/**
 * The confirm protocol of every state-changing action: dryRun=true answers the preview and a
 * confirm token; confirm=<token> changes exactly what was previewed (once: a repeat replays the
 * answer), and only through the action (scope) that previewed it; yes=true acts at once, as the
 * CLI's --yes (an Idempotency-Key header makes a repeat replay). Anything else is refused, as
 * the CLI refuses off a terminal without --yes.
 */
async function confirmFlow<P extends Plan>(
  ctx: RouteContext,
  scope: string,
  makePlan: () => Promise<{plan: P; preview: unknown}>,
  perform: (plan: P, reason: string | undefined) => Promise<unknown>,
): Promise<StoredResponse> {
  const {params} = ctx
  const owner = ctx.identity.name
  const act = async (plan: P): Promise<StoredResponse> => {
    try {
      const body = await perform(plan, params.string('reason') ?? plan.reason)
      return ok(body)
    } finally {
      ctx.cache.clear()
    }
  }
  const token = params.string('confirm')
  if (token !== undefined) {
    const confirmed = ctx.pending.confirm(owner, scope, token, (plan) => act(plan as P))
    if (!confirmed)
      throw new HttpError(409, 'E_PREVIEW_EXPIRED', 'this preview is unknown or expired: nothing was changed', {
        suggestions: ['preview again (dryRun=true) and confirm the new preview'],
      })
    const result = await confirmed.result
    return confirmed.replay ? {...result, replay: true} : result
  }
  if (params.bool('dryRun')) {
    const {plan, preview} = await makePlan()
    const {token: confirmToken, expiresAt} = ctx.pending.put(owner, scope, {...plan, reason: params.string('reason')})
    return ok({...(preview as object), confirm: {token: confirmToken, expiresAt}})
  }
  if (params.bool('yes')) {
    return idempotent(ctx, scope, async () => act((await makePlan()).plan))
  }
  throw new UsageError('refusing to change anything without a confirmation', {
    code: 'E_CONFIRMATION_REQUIRED',
    suggestions: [
      "send dryRun=true to preview, then confirm=<the preview's confirm.token>; or yes=true to act at once",
    ],
  })
}

function jobSpecFrom(action: string, params: Params): JobActionSpec {
  switch (action) {
    case 'remove':
      return {action: 'remove', toDlq: params.bool('to-dlq') || undefined}
    case 'fail':
      return {action: 'fail', message: params.string('message'), capture: params.bool('capture') || undefined}
    case 'run-now':
      return {action: 'run_now', resetAttempts: params.bool('reset-attempts') || undefined}
    case 'reschedule': {
      const runAt = params.string('run-at')
      const delay = params.string('delay')
      if (runAt !== undefined && delay !== undefined)
        throw new UsageError('run-at and delay are alternatives; give one of them', {code: 'E_USAGE'})
      return {
        action: 'reschedule',
        runAt: runAt === undefined ? undefined : (parseRunAt(runAt, 'run-at') ?? undefined),
        delayMs: delay === undefined ? undefined : parseDuration(delay, 'delay'),
        priority: params.int('priority', {min: -32768, max: 32767}),
        maxAttempts: params.int('max-attempts', {min: 1, max: 32767}),
        resetAttempts: params.bool('reset-attempts') || undefined,
      }
    }
    default:
      throw new HttpError(404, 'E_NOT_FOUND', `no job action "${action}"`, {
        suggestions: ['actions: run-now, reschedule, remove, fail'],
      })
  }
}

/** The API's routes, in the order the OpenAPI document lists them. */
export const ROUTES: readonly Route[] = [
  {
    method: 'GET',
    path: '/api/v1/session',
    write: false,
    summary: 'Who is signed in, whether actions are available (and why not), the CSRF token for POSTs.',
    params: [],
    response: 'Session',
    handle: async (ctx) => {
      const caps = await cached(ctx, 'capabilities', () => ops.capabilities(ctx.db, ctx.readOnly), 10_000)
      return ok({identity: ctx.identity, readOnly: ctx.readOnly, capabilities: caps, csrfToken: ctx.csrfToken})
    },
  },
  {
    method: 'GET',
    path: '/api/v1/overview',
    write: false,
    summary:
      'The overview page: status (as `status --json`), the DLQ with its largest failure groups, and estimated throughput.',
    params: [],
    response: 'Overview',
    crate: 'GET /health, GET /status',
    handle: async (ctx) =>
      ok(
        await cached(ctx, 'overview', () => ops.overview(ctx.db, {liveness: ctx.liveness, throughput: ctx.throughput})),
      ),
  },
  {
    method: 'GET',
    path: '/api/v1/status',
    write: false,
    summary: 'Jobs per state, task and queue; oldest ready age; locks by liveness; workers.',
    params: ['queues'],
    response: 'Status',
    cli: 'status',
    crate: 'GET /status, GET /queues, GET /queues/{name}/stats',
    handle: async (ctx) => {
      const queueLimit = ctx.params.int('queues', {min: 0, max: 10_000})
      return ok(
        await cached(ctx, `status:${queueLimit}`, async () => {
          const {queueStatus} = await import('../health/status.js')
          return queueStatus(ctx.db, {...ctx.liveness, queueLimit})
        }),
      )
    },
  },
  {
    method: 'GET',
    path: '/api/v1/jobs',
    write: false,
    summary: 'One keyset page of jobs, newest or next-to-run first, narrowed by the selector.',
    params: [...JOB_SELECTOR, 'sort', 'cursor'],
    response: 'JobList',
    cli: 'jobs list',
    handle: async (ctx) => {
      const selector = jobSelectorFrom(ctx.params, MAX_JOB_PAGE_SIZE)
      const sort = (ctx.params.string('sort') ?? 'newest') as JobSort
      if (!(JOB_SORTS as readonly string[]).includes(sort))
        throw new UsageError(`invalid sort "${sort}": expected one of ${JOB_SORTS.join(', ')}`, {code: 'E_USAGE'})
      return ok(
        await cached(ctx, queryKey(ctx), () =>
          ops.jobsList(ctx.db, {selector, sort, cursor: ctx.params.string('cursor'), liveness: ctx.liveness}),
        ),
      )
    },
  },
  {
    method: 'POST',
    path: '/api/v1/jobs',
    write: true,
    summary: 'Enqueue one job (task, payload, queue, priority, runAt, maxAttempts, jobKey, jobKeyMode, flags).',
    params: ['task', 'payload', 'queue', 'priority', 'runAt', 'maxAttempts', 'jobKey', 'jobKeyMode', 'flags'],
    response: 'EnqueueOutcome',
    cli: 'enqueue',
    crate: 'POST /jobs',
    handle: async (ctx) => {
      const body = ctx.params
      const run = async (): Promise<StoredResponse> => {
        const payloadText = body.get('payload')
        let payload: unknown = {}
        if (payloadText !== undefined) {
          try {
            payload = JSON.parse(payloadText)
          } catch {
            throw new UsageError('payload is not valid JSON', {code: 'E_BAD_PAYLOAD'})
          }
        }
        const priority = body.get('priority')
        const spec = {
          queue: body.string('queue') ?? null,
          priority:
            priority === undefined ? undefined : /^-?\d+$/.test(priority) ? Number(priority) : (priority as never),
          runAt: parseRunAt(body.string('runAt'), 'runAt'),
          maxAttempts: body.int('maxAttempts'),
          jobKey: body.string('jobKey') ?? null,
          jobKeyMode: body.string('jobKeyMode') as never,
          flags: body.all('flags') ? validateFlags(body.all('flags'), 'flags') : undefined,
        }
        const outcome = await ops.enqueueAudited(
          ctx.db,
          {task: body.get('task') ?? '', payload, spec},
          {actor: actorOf(ctx)},
        )
        ctx.cache.clear()
        return {status: outcome.status === 'enqueued' && outcome.action === 'created' ? 201 : 200, body: outcome}
      }
      return idempotent(ctx, 'enqueue', run)
    },
  },
  {
    method: 'GET',
    path: '/api/v1/jobs/{id}',
    write: false,
    summary: 'Everything about one job: payload, state and why, lock owner and liveness, serial queue, DLQ history.',
    params: [],
    response: 'JobShow',
    cli: 'jobs show',
    crate: 'GET /jobs/{id} (a 501 stub there)',
    handle: async (ctx) => ok(await ops.jobShow(ctx.db, {id: ctx.path.id, liveness: ctx.liveness})),
  },
  {
    method: 'GET',
    path: '/api/v1/job-keys/{key}',
    write: false,
    summary: 'The job with this job key (as `jobs show --job-key`).',
    params: [],
    response: 'JobShow',
    cli: 'jobs show --job-key',
    handle: async (ctx) => ok(await ops.jobShow(ctx.db, {jobKey: ctx.path.key, liveness: ctx.liveness})),
  },
  {
    method: 'POST',
    path: '/api/v1/jobs/actions/{action}',
    write: true,
    summary:
      'run-now, reschedule (run-at | delay, priority, max-attempts, reset-attempts), remove (to-dlq), fail (message, capture) on a selection: preview, then confirm.',
    params: [
      ...JOB_SELECTOR,
      ...CONFIRM,
      'to-dlq',
      'message',
      'capture',
      'reset-attempts',
      'run-at',
      'delay',
      'priority',
      'max-attempts',
    ],
    response: 'JobAction',
    cli: 'jobs run-now | reschedule | remove | fail',
    crate: 'DELETE /jobs/{id}/cancel (a 501 stub there)',
    handle: async (ctx) => {
      const spec = jobSpecFrom(ctx.path.action ?? '', ctx.params)
      return confirmFlow(
        ctx,
        `jobs ${ctx.path.action ?? ''}`,
        async () => {
          const plan = await ops.planJobAction(ctx.db, spec, jobSelectorFrom(ctx.params), ctx.params.bool('all'))
          // As `jobs … --dry-run --json` writes it: the sample's payloads exactly as stored.
          const sample = plan.selection.sample.map(jobDocument) as unknown as JobEntry[]
          return {plan, preview: {dryRun: true, selection: {...plan.selection, sample}}}
        },
        (plan, reason) => ops.performJobPlan(ctx.db, plan, {actor: actorOf(ctx), reason}),
      )
    },
  },
  {
    method: 'GET',
    path: '/api/v1/dlq/groups',
    write: false,
    summary: 'DLQ triage: totals, counts per task and queue, failure groups (as `dlq stats --json`).',
    params: [...DLQ_SELECTOR],
    response: 'DlqStats',
    cli: 'dlq stats',
    crate: 'GET /dlq/stats',
    handle: async (ctx) => {
      const selector = dlqSelectorFrom(ctx.params)
      return ok(await cached(ctx, queryKey(ctx), () => ops.dlqGroups(ctx.db, selector), 5000))
    },
  },
  {
    method: 'GET',
    path: '/api/v1/dlq',
    write: false,
    summary: 'One keyset page of DLQ entries, newest first.',
    params: [...DLQ_SELECTOR, 'cursor'],
    response: 'DlqList',
    cli: 'dlq list',
    crate: 'GET /dlq',
    handle: async (ctx) => {
      const selector = dlqSelectorFrom(ctx.params, 10_000)
      return ok(
        await cached(ctx, queryKey(ctx), () => ops.dlqList(ctx.db, {selector, cursor: ctx.params.string('cursor')})),
      )
    },
  },
  {
    method: 'GET',
    path: '/api/v1/dlq/history',
    write: false,
    summary: 'The audit trail of DLQ and jobs actions, newest first (as `dlq history --json`).',
    params: ['action', 'since', 'limit'],
    response: 'DlqHistory',
    cli: 'dlq history',
    handle: async (ctx) => {
      const since = ctx.params.string('since')
      return ok(
        await ops.dlqAudit(ctx.db, {
          action: ctx.params.string('action'),
          since: since === undefined ? undefined : parseTimeAgo(since, 'since'),
          limit: ctx.params.int('limit', {min: 1, max: 10_000}),
        }),
      )
    },
  },
  {
    method: 'GET',
    path: '/api/v1/dlq/{id}',
    write: false,
    summary: 'One DLQ entry: payload, full error, retry history.',
    params: [],
    response: 'DlqShow',
    cli: 'dlq show',
    crate: 'GET /dlq/{id}',
    handle: async (ctx) => ok(await ops.dlqShow(ctx.db, ctx.path.id ?? '')),
  },
  {
    method: 'POST',
    path: '/api/v1/dlq/retry',
    write: true,
    summary:
      'Retry DLQ entries exactly once (limit N for a canary; priority, max-attempts, run-at, delay, key-conflict, default-queue): preview, then confirm.',
    params: [
      ...DLQ_SELECTOR,
      ...CONFIRM,
      'priority',
      'max-attempts',
      'run-at',
      'delay',
      'key-conflict',
      'default-queue',
    ],
    response: 'DlqRetry',
    cli: 'dlq retry',
    crate: 'POST /dlq/{id}/requeue, POST /dlq/batch-requeue',
    handle: async (ctx) => {
      const p = ctx.params
      const keyConflict = (p.string('key-conflict') ?? 'skip') as 'skip' | 'replace'
      if (!['skip', 'replace'].includes(keyConflict))
        throw new UsageError(`invalid key-conflict "${keyConflict}": expected skip or replace`, {code: 'E_USAGE'})
      const defaultQueue = (p.string('default-queue') ?? 'parallel') as 'parallel' | 'serial'
      if (!['parallel', 'serial'].includes(defaultQueue))
        throw new UsageError(`invalid default-queue "${defaultQueue}": expected parallel or serial`, {code: 'E_USAGE'})
      const runAtText = p.string('run-at')
      const delay = p.string('delay')
      if (runAtText !== undefined && delay !== undefined)
        throw new UsageError('run-at and delay are alternatives; give one of them', {code: 'E_USAGE'})
      const runAt =
        runAtText !== undefined
          ? (parseRunAt(runAtText, 'run-at') ?? undefined)
          : delay !== undefined
            ? new Date(Date.now() + parseDuration(delay, 'delay'))
            : undefined
      const priorityText = p.string('priority')
      const options: ops.RetryPlan['options'] = {
        priority:
          priorityText === undefined
            ? undefined
            : parsePriority(/^-?\d+$/.test(priorityText) ? Number(priorityText) : priorityText, 'priority'),
        maxAttempts: p.int('max-attempts', {min: 1, max: 32767}),
        runAt,
        keyConflict,
        defaultQueue,
      }
      const selection = dlqSelectorFrom(p)
      return confirmFlow(
        ctx,
        'dlq retry',
        () => ops.planRetry(ctx.db, selection, p.bool('all'), options),
        (plan, reason) => ops.performRetry(ctx.db, plan, {actor: actorOf(ctx), reason}),
      )
    },
  },
  {
    method: 'POST',
    path: '/api/v1/dlq/purge',
    write: true,
    summary: 'Delete DLQ entries for good, in batches: preview, then confirm.',
    params: [...DLQ_SELECTOR, ...CONFIRM],
    response: 'DlqPurge',
    cli: 'dlq purge',
    crate: 'DELETE /dlq/{id}, POST /dlq/cleanup, POST /dlq/batch-delete',
    handle: async (ctx) => {
      const selection = dlqSelectorFrom(ctx.params)
      return confirmFlow(
        ctx,
        'dlq purge',
        () => ops.planPurge(ctx.db, selection, ctx.params.bool('all')),
        (plan, reason) => ops.performPurge(ctx.db, plan, {actor: actorOf(ctx), reason}),
      )
    },
  },
  {
    method: 'GET',
    path: '/api/v1/locks',
    write: false,
    summary: 'Job and queue locks with their owner, runtime and liveness (and why).',
    params: ['owner', 'liveness', 'limit'],
    response: 'LocksList',
    cli: 'locks list',
    crate: 'GET /locks/status',
    handle: async (ctx) => {
      const liveness = ctx.params.all('liveness')
      for (const l of liveness ?? [])
        if (!['live', 'dead', 'unknown'].includes(l))
          throw new UsageError(`invalid liveness "${l}": expected live, dead or unknown`, {code: 'E_USAGE'})
      return ok(
        await cached(ctx, queryKey(ctx), () =>
          ops.locks(ctx.db, {
            ...ctx.liveness,
            owners: ctx.params.all('owner'),
            liveness: liveness as ('live' | 'dead' | 'unknown')[] | undefined,
            limit: ctx.params.int('limit', {min: 1, max: 100_000}),
          }),
        ),
      )
    },
  },
  {
    method: 'POST',
    path: '/api/v1/locks/clean',
    write: true,
    summary:
      "Release dead owners' locks (and stale ones of owners without liveness; force for live ones): preview, then confirm.",
    params: ['dryRun', 'confirm', 'yes', 'owner', 'force', 'stale-job-lock-timeout', 'stale-queue-lock-timeout'],
    response: 'LocksClean',
    cli: 'locks clean',
    crate: 'POST /locks/cleanup',
    handle: async (ctx) => {
      const p = ctx.params
      const jobTimeout = p.string('stale-job-lock-timeout')
      const queueTimeout = p.string('stale-queue-lock-timeout')
      const options = {
        ...ctx.liveness,
        owners: p.all('owner'),
        force: p.bool('force'),
        staleJobLockTimeoutMs:
          jobTimeout === undefined ? undefined : parseDuration(jobTimeout, 'stale-job-lock-timeout'),
        staleQueueLockTimeoutMs:
          queueTimeout === undefined ? undefined : parseDuration(queueTimeout, 'stale-queue-lock-timeout'),
      }
      return confirmFlow(
        ctx,
        'locks clean',
        () => ops.planLockClean(ctx.db, options),
        (plan, reason) =>
          ops.performLockClean(ctx.db, plan, {
            actor: actorOf(ctx),
            reason,
            who: `${ctx.identity.name} from ${ctx.remoteAddress}`,
          }),
      )
    },
  },
  {
    method: 'GET',
    path: '/api/v1/schema',
    write: false,
    summary: 'Schema doctor: revision, pending migrations, Node/Rust hazards, DLQ objects (as `schema status --json`).',
    params: [],
    response: 'SchemaStatus',
    cli: 'schema status',
    handle: async (ctx) => ok(await cached(ctx, 'schema', () => ops.schema(ctx.db), 10_000)),
  },
]
