import type {DlqEntry, ListResult, ShowResult} from '../dlq/entries.js'
import type {FailureGroup} from '../dlq/stats.js'
import type {CleanLocksResult} from '../locks/clean.js'
import type {LocksListResult} from '../locks/report.js'
import type {JobEntry} from '../jobs/entries.js'
import type {ListJobsResult} from '../jobs/list.js'
import type {ShowJobResult} from '../jobs/show.js'
import type {SchemaStatus} from '../health/doctor.js'
import type {JobStateCounts, StatusResult} from '../health/status.js'
import {prettyPayload} from '../json-document.js'
import {asBackfillError, HttpError, statusFor} from './errors.js'
import type {PageContext, PageRenderer, PageResponse} from './handler.js'
import {html, num, Safe, shortDuration, table, truncate, when, type Column} from './html.js'
import type {
  Capabilities,
  DlqHistoryDocument,
  DlqPurgeDocument,
  DlqRetryDocument,
  DlqStatsDocument,
  JobActionDocument,
  OverviewDocument,
} from './operations.js'
import type {ThroughputEstimate} from './throughput.js'

interface Session {
  identity: {name: string; method: string}
  readOnly: boolean
  capabilities: Capabilities
  csrfToken: string
}

interface Page {
  title: string
  active: string
  body: Safe
  refresh?: number
  status?: number
}

const NAV: [string, string][] = [
  ['/', 'Overview'],
  ['/jobs', 'Jobs'],
  ['/dlq', 'DLQ'],
  ['/history', 'History'],
  ['/locks', 'Locks'],
  ['/schema', 'Schema'],
]

const JOB_ACTIONS: Record<string, {label: string; danger?: boolean; extra?: Record<string, string>}> = {
  'run-now': {label: 'Run now'},
  reschedule: {label: 'Reschedule +1h', extra: {delay: '1h'}},
  remove: {label: 'Remove', danger: true},
  'remove-to-dlq': {label: 'Move to DLQ', danger: true, extra: {'to-dlq': 'true'}},
  fail: {label: 'Fail permanently', danger: true},
}

/** Keys of a page's filter carried into links and forms (the CLI selector's flag names). */
const FILTER_KEYS = ['q', 'task', 'queue', 'job-key', 'state', 'error', 'since', 'until', 'older-than', 'group', 'id']

/** The server-rendered pages: each calls the same API routes (in process) as the JSON API. */
export function createPages(): PageRenderer {
  return {
    async render(ctx: PageContext): Promise<PageResponse | undefined> {
      const session = (await ctx.api('GET', '/api/v1/session')).body as Session
      const u = (path: string): string => `${ctx.prefix}${path}`
      let page: Page | undefined
      try {
        page = await route(ctx, session, u)
      } catch (raw) {
        const error = asBackfillError(raw)
        page = {
          title: 'Error',
          active: '',
          status: statusFor(error),
          body: html`<h1>Something went wrong</h1>
            <div class="banner error" role="alert">
              <p>${ctx.scrub(error.message)}</p>
              ${
                error.suggestions.length
                  ? html`<ul>
                      ${error.suggestions.map((s) => html`<li>${ctx.scrub(s)}</li>`)}
                    </ul>`
                  : ''
              }
              <p class="muted">${error.code}</p>
            </div>
            <p><a href="${u('/')}">Back to the overview</a></p>`,
        }
      }
      if (!page) return undefined
      return {status: page.status ?? 200, body: layout(ctx, session, page, u).html}
    },
  }
}

async function route(ctx: PageContext, session: Session, u: (p: string) => string): Promise<Page | undefined> {
  const {pathname: path, method} = ctx
  const can = session.capabilities.actionsEnabled
  const form = (): Record<string, unknown> => formValues(ctx)
  if (method === 'GET') {
    if (path === '/') return overview(ctx, session, u)
    if (path === '/jobs') return jobsPage(ctx, session, u)
    const job = /^\/jobs\/(\d+)$/.exec(path)
    if (job) return jobPage(ctx, session, u, job[1] as string)
    if (path === '/dlq') return groupsPage(ctx, session, u)
    if (path === '/dlq/entries') return entriesPage(ctx, session, u)
    const entry = /^\/dlq\/(\d+)$/.exec(path)
    if (entry) return entryPage(ctx, session, u, entry[1] as string)
    if (path === '/history') return historyPage(ctx)
    if (path === '/locks') return locksPage(ctx, session, u)
    if (path === '/schema') return schemaPage(ctx)
    return undefined
  }
  if (method === 'POST') {
    const action = /^\/jobs\/actions\/([\w-]+)$/.exec(path)
    const kind = action
      ? 'jobs'
      : path === '/dlq/retry'
        ? 'retry'
        : path === '/dlq/purge'
          ? 'purge'
          : path === '/locks/clean'
            ? 'locks'
            : undefined
    if (kind === undefined) return undefined
    if (!can) throw new HttpError(404, 'E_NOT_FOUND', `actions are off: ${session.capabilities.reason ?? 'read-only'}`)
    const values = form()
    const name = action?.[1] ?? ''
    if (name === 'remove-to-dlq') values['to-dlq'] = 'true'
    const apiPath =
      kind === 'jobs' ? `/api/v1/jobs/actions/${name === 'remove-to-dlq' ? 'remove' : name}` : `/api/v1${path}`
    if (values.confirm !== undefined) {
      const result = await ctx.api('POST', apiPath, values)
      return resultPage(kind, result.body, u)
    }
    const preview = await ctx.api('POST', apiPath, {...values, dryRun: 'true'})
    return previewPage(session, kind, path, preview.body, values, u)
  }
  return undefined
}

function formValues(ctx: PageContext): Record<string, unknown> {
  const values: Record<string, unknown> = {}
  for (const key of [
    ...FILTER_KEYS,
    'limit',
    'reason',
    'confirm',
    'all',
    'to-dlq',
    'delay',
    'message',
    'reset-attempts',
    'force',
    'key-conflict',
  ]) {
    const all = ctx.params.all(key, key === 'queue')
    if (all) values[key] = all.length === 1 ? all[0] : all
  }
  return values
}

// --- layout ------------------------------------------------------------------------------------

function layout(ctx: PageContext, session: Session, page: Page, u: (p: string) => string): Safe {
  const signedIn = session.identity.method !== 'anonymous'
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <meta name="color-scheme" content="light dark" />
        <title>${page.title} · backfill</title>
        <link rel="stylesheet" href="${u('/assets/console.css')}" />
        <script src="${u('/assets/console.js')}" defer></script>
      </head>
      <body>
        <a class="skip" href="#main">Skip to content</a>
        <header>
          <span class="brand">backfill</span>
          <nav aria-label="Sections">
            ${NAV.map(
              ([path, label]) =>
                html`<a href="${u(path)}" ${page.active === path ? new Safe(' aria-current="page"') : ''}>${label}</a>`,
            )}
          </nav>
          <span class="who">
            ${session.readOnly || !session.capabilities.actionsEnabled ? html`<span class="pill">read-only</span>` : ''}
            <span>${session.identity.name}</span>
            ${
              signedIn
                ? html`<form class="inline" method="post" action="${u('/logout')}">
                    <input type="hidden" name="_csrf" value="${session.csrfToken}" /><button>Sign out</button>
                  </form>`
                : ''
            }
          </span>
        </header>
        <main id="main" ${page.refresh ? new Safe(` data-refresh="${page.refresh}"`) : ''}>
          ${!session.capabilities.actionsEnabled && session.capabilities.reason ? html`<p class="banner">Actions are off: ${session.capabilities.reason}.</p>` : ''}
          ${page.body}
        </main>
      </body>
    </html>`
}

function csrf(session: Session): Safe {
  return html`<input type="hidden" name="_csrf" value="${session.csrfToken}" />`
}

function hidden(values: Record<string, unknown>): Safe {
  return html`${Object.entries(values).flatMap(([k, v]) =>
    (Array.isArray(v) ? v : [v])
      .filter((x) => x !== undefined && x !== null)
      .map((x) => html`<input type="hidden" name="${k}" value="${String(x)}" />`),
  )}`
}

function liveness(value: string | null | undefined): Safe {
  if (!value) return html``
  return html`<span class="pill ${value}">${value}</span>`
}

function filterBar(ctx: PageContext, action: string, hint: string): Safe {
  const q = ctx.params.get('q') ?? ''
  return html`<form class="filter" method="get" action="${action}" role="search">
    <label for="filter"
      >Filter (the CLI's selector flags, e.g. ${hint})
      <input
        id="filter"
        type="search"
        name="q"
        value="${q}"
        placeholder="${hint}"
        autocomplete="off"
        spellcheck="false"
    /></label>
    <button>Apply</button>
    ${q || ctx.params.has('group') || ctx.params.has('task') ? html`<a href="${action}">Clear</a>` : ''}
  </form>`
}

function currentFilter(ctx: PageContext): Record<string, unknown> {
  const values: Record<string, unknown> = {}
  for (const key of FILTER_KEYS) {
    const all = ctx.params.all(key, key === 'queue')
    if (all) values[key] = all.length === 1 ? all[0] : all
  }
  return values
}

function queryString(values: Record<string, unknown>): string {
  const params = new URLSearchParams()
  for (const [k, v] of Object.entries(values))
    for (const x of Array.isArray(v) ? v : [v]) if (x !== undefined) params.append(k, String(x))
  const text = params.toString()
  return text ? `?${text}` : ''
}

// --- overview ----------------------------------------------------------------------------------

/** Estimated completions per sampled interval as SVG bars (no script), with a text summary. */
function sparkline(tp: ThroughputEstimate): Safe {
  const w = 240
  const h = 40
  const points = tp.points
  const summary =
    tp.perMinute === null
      ? 'Throughput: collecting samples (the estimate appears after a few refreshes).'
      : `Throughput ≈ ${num(Math.round(tp.perMinute))} jobs/min over the last ${shortDuration(tp.spanMs)} ` +
        `(estimate: ${num(tp.completed)} completed in ${points.length} sampled intervals).`
  const max = Math.max(1, ...points.map((p) => p.completed ?? 0))
  const step = points.length > 0 ? w / points.length : w
  const bars = points.map((p, i) => {
    const v = p.completed ?? 0
    const bh = p.completed === null ? 0 : Math.max(1, (v / max) * (h - 2))
    return html`<rect
      x="${(i * step).toFixed(1)}"
      y="${(h - bh).toFixed(1)}"
      width="${Math.max(1, step - 1).toFixed(1)}"
      height="${bh.toFixed(1)}"
      fill="currentColor"
      ><title>${p.completed === null ? 'unknown (counter reset)' : `≈ ${num(v)}`} at ${p.at}</title></rect
    >`
  })
  return html`<section aria-labelledby="throughput-h" id="throughput">
    <h2 id="throughput-h">Throughput</h2>
    <svg
      class="sparkline"
      role="img"
      aria-label="${summary}"
      width="${w}"
      height="${h}"
      viewBox="0 0 ${w} ${h}"
      xmlns="http://www.w3.org/2000/svg"
    >
      ${bars}
    </svg>
    <p class="muted" id="throughput-summary">
      ${summary} Estimated from counters the console samples on refresh: job ids issued, minus growth of the jobs table,
      minus DLQ captures (graphile-worker deletes completed jobs, so they cannot be counted).
    </p>
  </section>`
}

async function overview(ctx: PageContext, _session: Session, u: (p: string) => string): Promise<Page> {
  const doc = (await ctx.api('GET', '/api/v1/overview')).body as OverviewDocument
  const s: StatusResult = doc.status
  const t = s.totals
  const card = (label: string, value: string, href?: string): Safe =>
    html`<div class="card">
      <div class="n">${href ? html`<a href="${href}">${value}</a>` : value}</div>
      <div class="l">${label}</div>
    </div>`
  return {
    title: 'Overview',
    active: '/',
    refresh: 5,
    body: html`<h1>Overview <span class="muted">schema ${s.schema}</span></h1>
      <p class="refresh">
        Updated ${when(s.at)} · refreshes every 5 s
        <button type="button" id="refresh-toggle" hidden>Pause auto refresh</button>
      </p>
      <section aria-label="Totals" class="cards">
        ${card('jobs', num(t.jobs), u('/jobs'))} ${card('ready', num(t.ready), u('/jobs?state=ready'))}
        ${card('scheduled', num(t.scheduled), u('/jobs?state=scheduled'))}
        ${card('running', num(t.running), u('/jobs?state=running'))}
        ${card('retrying', num(t.retrying), u('/jobs?state=retrying'))}
        ${card('exhausted', num(t.exhausted), u('/jobs?state=exhausted'))}
        ${card('DLQ entries', t.dlq === null ? 'no table' : num(t.dlq), u('/dlq'))}
        ${card('oldest ready', shortDuration(t.oldestReadyAgeMs))}
      </section>
      ${doc.throughput ? sparkline(doc.throughput) : ''}
      <h2>Workers</h2>
      ${table(
        [
          {header: 'Worker', class: 'mono', rowHeader: true, cell: (w) => w.id},
          {header: 'Runtime', cell: (w) => w.runtime},
          {header: 'Host', wide: true, cell: (w) => (w.hostname ? `${w.hostname}:${w.pid}` : '')},
          {header: 'State', cell: (w) => html`${liveness(w.state)} <span class="muted">${w.reason}</span>`},
          {header: 'Heartbeat', cell: (w) => `${shortDuration(w.heartbeatAgeMs)} ago`},
          {header: 'Jobs', num: true, cell: (w) => num(w.jobLocks)},
        ],
        s.workers,
        {empty: 'No worker seen in the last hour (backfill workers and Rust workers with heartbeats show here).'},
      )}
      <p>
        Locks: jobs ${num(s.locks.live.jobs)} live,
        <span class="${s.locks.dead.jobs > 0 ? 'dead' : ''}">${num(s.locks.dead.jobs)} dead</span>,
        ${num(s.locks.unknown.jobs)} unknown · queues ${num(s.locks.live.queues)} live, ${num(s.locks.dead.queues)}
        dead, ${num(s.locks.unknown.queues)} unknown · <a href="${u('/locks')}">locks</a>
      </p>
      <h2>DLQ: largest failure groups</h2>
      ${
        doc.dlq === null
          ? html`<p class="muted">No DLQ table in this schema.</p>`
          : doc.dlq.groups.length === 0
            ? html`<p class="muted">The DLQ is empty.</p>`
            : groupsTable(doc.dlq.groups, u, undefined)
      }
      <h2>Per task</h2>
      ${table(
        [
          {
            header: 'Task',
            rowHeader: true,
            cell: (x) => html`<a href="${u(`/jobs${queryString({task: x.task})}`)}">${x.task}</a>`,
          },
          ...stateColumns<TaskStatus>(),
        ],
        s.tasks,
        {empty: 'No jobs.'},
      )}
      <h2>Per queue</h2>
      ${table(
        [
          {header: 'Queue', rowHeader: true, cell: (x) => x.name},
          ...stateColumns<QueueRow>(),
          {header: 'Locked by', wide: true, cell: (x) => x.lockedBy},
        ],
        queueRows(s, u),
        {empty: 'No jobs.'},
      )}`,
  }
}

type StateRow = JobStateCounts & {dlq: number}
type TaskStatus = StatusResult['tasks'][number]
type QueueRow = StateRow & {name: Safe; lockedBy: Safe | string}

/** The job-state columns of the overview's per-task and per-queue tables. */
function stateColumns<T extends StateRow>(): Column<T>[] {
  const count = (header: string, key: 'ready' | 'scheduled' | 'running' | 'retrying' | 'exhausted' | 'dlq') => ({
    header,
    num: true,
    cell: (x: T) => num(x[key]),
  })
  return [
    count('Ready', 'ready'),
    count('Scheduled', 'scheduled'),
    count('Running', 'running'),
    count('Retrying', 'retrying'),
    count('Exhausted', 'exhausted'),
    count('DLQ', 'dlq'),
    {header: 'Oldest ready', num: true, wide: true, cell: (x) => shortDuration(x.oldestReadyAgeMs)},
  ]
}

/** The queues shown, then the rest summed in one row. */
function queueRows(s: StatusResult, u: (p: string) => string): QueueRow[] {
  const rows: QueueRow[] = s.queues.map((x) => ({
    ...x,
    name:
      x.queue === null
        ? html`<span class="muted">(parallel jobs)</span>`
        : html`<a href="${u(`/jobs${queryString({queue: x.queue})}`)}">${x.queue}</a>`,
    lockedBy: x.lockedBy ? html`<span class="mono">${x.lockedBy}</span> ${liveness(x.lockLiveness)}` : '',
  }))
  if (s.otherQueues)
    rows.push({
      ...s.otherQueues,
      name: html`<span class="muted">(${num(s.otherQueues.queues)} more queues)</span>`,
      lockedBy: '',
    })
  return rows
}

function groupsTable(groups: FailureGroup[], u: (p: string) => string, session: Session | undefined): Safe {
  return table(
    [
      {
        header: 'Group',
        class: 'mono',
        rowHeader: true,
        cell: (g) => html`<a href="${u(`/dlq/entries?group=${g.fingerprint}`)}">${g.fingerprint}</a>`,
      },
      {header: 'Task', cell: (g) => g.taskIdentifier},
      {header: 'Entries', num: true, cell: (g) => num(g.count)},
      {header: 'First', wide: true, cell: (g) => when(g.firstSeen)},
      {header: 'Last', cell: (g) => when(g.lastSeen)},
      {header: 'Error (sample)', class: 'err', cell: (g) => truncate(g.sampleError, 160)},
      !!session && {
        header: 'Actions',
        cell: (g) =>
          html`<form class="inline" method="post" action="${u('/dlq/retry')}">
            ${csrf(session)}<input type="hidden" name="group" value="${g.fingerprint}" /><button
              class="primary"
              aria-label="Retry group ${g.fingerprint} (${g.count} entries): preview"
            >
              Retry…
            </button>
          </form>`,
      },
    ],
    groups,
  )
}

// --- jobs --------------------------------------------------------------------------------------

function jobsTable(jobs: JobEntry[], u: (p: string) => string, empty?: string): Safe {
  return table(
    [
      {header: 'ID', num: true, rowHeader: true, cell: (j) => html`<a href="${u(`/jobs/${j.id}`)}">${j.id}</a>`},
      {header: 'Task', cell: (j) => j.taskIdentifier},
      {header: 'Queue', wide: true, cell: (j) => j.queueName ?? html`<span class="muted">(parallel)</span>`},
      {
        header: 'State',
        cell: (j) => html`${j.state}${j.state === 'running' && j.owner ? html` ${liveness(j.owner.liveness)}` : ''}`,
      },
      {header: 'Priority', num: true, wide: true, cell: (j) => j.priority},
      {header: 'Attempts', num: true, cell: (j) => `${j.attempts}/${j.maxAttempts}`},
      {header: 'Run at', cell: (j) => when(j.runAt)},
      {header: 'Last error', wide: true, class: 'err', cell: (j) => truncate(j.lastError, 90)},
    ],
    jobs,
    {empty},
  )
}

async function jobsPage(ctx: PageContext, session: Session, u: (p: string) => string): Promise<Page> {
  const filter = currentFilter(ctx)
  const sort = ctx.params.string('sort')
  const cursor = ctx.params.string('cursor')
  const list = (
    await ctx.api(
      'GET',
      `/api/v1/jobs${queryString({...filter, ...(sort ? {sort} : {}), ...(cursor ? {cursor} : {})})}`,
    )
  ).body as ListJobsResult
  const narrowed = Object.keys(filter).length > 0
  return {
    title: 'Jobs',
    active: '/jobs',
    body: html`<h1>Jobs</h1>
      ${filterBar(ctx, u('/jobs'), '--task send_email --state retrying --since 2h')}
      <p class="muted">
        Sort:
        ${sort === 'next' ? html`<a href="${u(`/jobs${queryString(filter)}`)}">newest</a> · <strong>next to run</strong>` : html`<strong>newest</strong> · <a href="${u(`/jobs${queryString({...filter, sort: 'next'})}`)}">next to run</a>`}
      </p>
      ${jobsTable(list.jobs, u, cursor ? 'No more jobs.' : 'No job matches the selection.')}
      <nav class="pager" aria-label="Pages">
        ${cursor ? html`<a href="${u(`/jobs${queryString({...filter, ...(sort ? {sort} : {})})}`)}">First page</a>` : ''}${list.nextCursor ? html`<a href="${u(`/jobs${queryString({...filter, ...(sort ? {sort} : {}), cursor: list.nextCursor})}`)}">Next page</a>` : ''}
      </nav>
      ${
        session.capabilities.actionsEnabled && narrowed
          ? html`<h2>Act on every job of this selection</h2>
              <div class="actions">
                ${Object.entries(JOB_ACTIONS).map(
                  ([name, a]) =>
                    html`<form method="post" action="${u(`/jobs/actions/${name}`)}">
                      ${csrf(session)}${hidden({...filter, ...a.extra})}<button class="${a.danger ? 'danger' : ''}">
                        ${a.label}…
                      </button>
                    </form>`,
                )}
              </div>
              <p class="muted">Each shows a preview (count, tasks, sample) to confirm first.</p>`
          : ''
      }`,
  }
}

async function jobPage(ctx: PageContext, session: Session, u: (p: string) => string, id: string): Promise<Page> {
  const r = (await ctx.api('GET', `/api/v1/jobs/${id}`)).body as ShowJobResult
  const j = r.job
  return {
    title: `Job ${j.id}`,
    active: '/jobs',
    body: html`<h1>Job ${j.id} <span class="pill">${j.state}</span></h1>
      <p>${r.why}</p>
      <dl class="facts">
        <dt>Task</dt>
        <dd>${j.taskIdentifier}</dd>
        <dt>Queue</dt>
        <dd>
          ${j.queueName ?? '(parallel)'}${r.queue ? html` · ${num(r.queue.ahead)} ahead, ${num(r.queue.waiting)} waiting${r.queue.runningJobId ? html`, running <a href="${u(`/jobs/${r.queue.runningJobId}`)}">${r.queue.runningJobId}</a>` : ''}` : ''}
        </dd>
        <dt>Job key</dt>
        <dd>${j.key ?? '–'}</dd>
        <dt>Priority</dt>
        <dd>${j.priority}</dd>
        <dt>Attempts</dt>
        <dd>${j.attempts}/${j.maxAttempts}</dd>
        <dt>Run at</dt>
        <dd>${when(j.runAt)}</dd>
        <dt>Created</dt>
        <dd>${when(j.createdAt)}</dd>
        <dt>Flags</dt>
        <dd>${j.flags.join(', ') || '–'}</dd>
        <dt>Lock owner</dt>
        <dd>
          ${r.owner ? html`<span class="mono">${r.owner.id ?? '(none)'}</span> ${liveness(r.owner.liveness)} <span class="muted">${r.owner.reason}</span>` : '–'}
        </dd>
      </dl>
      ${
        session.capabilities.actionsEnabled
          ? html`<div class="actions">
              ${Object.entries(JOB_ACTIONS).map(
                ([name, a]) =>
                  html`<form method="post" action="${u(`/jobs/actions/${name}`)}">
                    ${csrf(session)}${hidden({id: j.id, ...a.extra})}<button class="${a.danger ? 'danger' : ''}">
                      ${a.label}…
                    </button>
                  </form>`,
              )}
            </div>`
          : ''
      }
      <h2>Payload</h2>
      <pre>${prettyPayload(r.payloadText)}</pre>
      <h2>Last error</h2>
      ${j.lastError ? html`<pre>${j.lastError}</pre>` : html`<p class="muted">None.</p>`}
      ${
        r.dlq && (r.dlq.entries.length > 0 || r.dlq.retriedFrom)
          ? html`<h2>DLQ history</h2>
              ${r.dlq.retriedFrom ? html`<p>Retried from DLQ entry <a href="${u(`/dlq/${r.dlq.retriedFrom.dlqId}`)}">${r.dlq.retriedFrom.dlqId}</a> ${when(r.dlq.retriedFrom.retriedAt)}.</p>` : ''}${r.dlq.entries.length > 0 ? entriesTable(r.dlq.entries, u) : ''}`
          : ''
      }`,
  }
}

// --- DLQ ---------------------------------------------------------------------------------------

async function groupsPage(ctx: PageContext, session: Session, u: (p: string) => string): Promise<Page> {
  const filter = currentFilter(ctx)
  const stats = (await ctx.api('GET', `/api/v1/dlq/groups${queryString(filter)}`)).body as DlqStatsDocument
  const can = session.capabilities.actionsEnabled
  return {
    title: 'DLQ',
    active: '/dlq',
    body: html`<h1>Dead letter queue: failure groups</h1>
      ${filterBar(ctx, u('/dlq'), '--task send_email --since 1d')}
      ${
        stats.total === 0
          ? html`<p>No DLQ entries match.</p>`
          : html`<p>
                ${num(stats.total)} entries, oldest ${when(stats.oldest)}, newest ${when(stats.newest)} ·
                <a href="${u(`/dlq/entries${queryString(filter)}`)}">all entries</a>
              </p>
              ${groupsTable(stats.groups, u, can ? session : undefined)}
              ${stats.groupsTruncated ? html`<p class="banner">${num(stats.ungrouped)} entries fell outside the groups tracked.</p>` : ''}
              <h2>Per task</h2>
              ${table(
                [
                  {
                    header: 'Task',
                    rowHeader: true,
                    cell: (t) =>
                      html`<a href="${u(`/dlq${queryString({task: t.taskIdentifier})}`)}">${t.taskIdentifier}</a>`,
                  },
                  {header: 'Entries', num: true, cell: (t) => num(t.count)},
                ],
                stats.byTask,
              )}
              ${
                can && Object.keys(filter).length > 0
                  ? html`<h2>Act on this selection</h2>
                      <div class="actions">
                        <form method="post" action="${u('/dlq/retry')}">
                          ${csrf(session)}${hidden(filter)}<label
                            >Canary: first
                            <input
                              type="number"
                              name="limit"
                              min="1"
                              size="6"
                              aria-label="At most this many entries" /></label
                          ><button class="primary">Retry…</button>
                        </form>
                        <form method="post" action="${u('/dlq/purge')}">
                          ${csrf(session)}${hidden(filter)}<button class="danger">Purge…</button>
                        </form>
                      </div>`
                  : ''
              }`
      }`,
  }
}

function entriesTable(entries: DlqEntry[], u: (p: string) => string, empty?: string): Safe {
  return table(
    [
      {header: 'ID', num: true, rowHeader: true, cell: (e) => html`<a href="${u(`/dlq/${e.id}`)}">${e.id}</a>`},
      {header: 'Task', cell: (e) => e.taskIdentifier},
      {
        header: 'Queue',
        wide: true,
        cell: (e) => (e.queueName === '' ? html`<span class="muted">(parallel)</span>` : e.queueName),
      },
      {header: 'Attempts', num: true, cell: (e) => `${e.attempts ?? '?'}/${e.maxAttempts ?? '?'}`},
      {header: 'Retried', num: true, wide: true, cell: (e) => (e.requeuedCount > 0 ? `${e.requeuedCount}×` : '')},
      {header: 'Failed', cell: (e) => when(e.failedAt)},
      {header: 'Error', class: 'err', cell: (e) => truncate(e.errorText, 120)},
    ],
    entries,
    {empty},
  )
}

async function entriesPage(ctx: PageContext, session: Session, u: (p: string) => string): Promise<Page> {
  const filter = currentFilter(ctx)
  const cursor = ctx.params.string('cursor')
  const list = (await ctx.api('GET', `/api/v1/dlq${queryString({...filter, ...(cursor ? {cursor} : {})})}`))
    .body as ListResult
  const can = session.capabilities.actionsEnabled
  return {
    title: 'DLQ entries',
    active: '/dlq',
    body: html`<h1>DLQ entries</h1>
      ${filterBar(ctx, u('/dlq/entries'), '--task send_email --error timeout')}
      ${list.uncaptured && list.uncaptured.total > 0 ? html`<p class="banner">${num(list.uncaptured.total)} exhausted jobs are still in the jobs table, not in the DLQ (capture them with <code>backfill dlq capture</code>).</p>` : ''}
      ${entriesTable(list.entries, u, 'No entries match.')}
      <nav class="pager" aria-label="Pages">
        ${cursor ? html`<a href="${u(`/dlq/entries${queryString(filter)}`)}">First page</a>` : ''}${list.nextCursor ? html`<a href="${u(`/dlq/entries${queryString({...filter, cursor: list.nextCursor})}`)}">Next page</a>` : ''}
      </nav>
      ${
        can && Object.keys(filter).length > 0
          ? html`<div class="actions">
              <form method="post" action="${u('/dlq/retry')}">
                ${csrf(session)}${hidden(filter)}<button class="primary">Retry these…</button>
              </form>
              <form method="post" action="${u('/dlq/purge')}">
                ${csrf(session)}${hidden(filter)}<button class="danger">Purge these…</button>
              </form>
            </div>`
          : ''
      }`,
  }
}

async function entryPage(ctx: PageContext, session: Session, u: (p: string) => string, id: string): Promise<Page> {
  const r = (await ctx.api('GET', `/api/v1/dlq/${id}`)).body as ShowResult
  const e = r.entry
  const payloadText = (e as unknown as {payload: {text?: string}}).payload?.text ?? JSON.stringify(e.payload)
  return {
    title: `DLQ entry ${e.id}`,
    active: '/dlq',
    body: html`<h1>DLQ entry ${e.id}</h1>
      <dl class="facts">
        <dt>Task</dt>
        <dd>${e.taskIdentifier}</dd>
        <dt>Queue</dt>
        <dd>${e.queueName === '' ? '(parallel)' : e.queueName}</dd>
        <dt>Job key</dt>
        <dd>${e.jobKey ?? '–'}</dd>
        <dt>Priority</dt>
        <dd>${e.priority}</dd>
        <dt>Attempts</dt>
        <dd>${e.attempts ?? '?'}/${e.maxAttempts ?? '?'}</dd>
        <dt>Failure reason</dt>
        <dd>${e.failureReason}</dd>
        <dt>Failed</dt>
        <dd>${when(e.failedAt)} · landed ${num(e.failureCount)} time(s)</dd>
        <dt>Retried before</dt>
        <dd>${num(e.requeuedCount)} time(s)${e.lastRequeuedAt ? html`, last ${when(e.lastRequeuedAt)}` : ''}</dd>
        <dt>Original job</dt>
        <dd>${e.originalJobId ?? '–'}</dd>
        ${
          e.notes
            ? html`<dt>Notes</dt>
                <dd>${e.notes}</dd>`
            : ''
        }
      </dl>
      ${
        session.capabilities.actionsEnabled
          ? html`<div class="actions">
              <form method="post" action="${u('/dlq/retry')}">
                ${csrf(session)}<input type="hidden" name="id" value="${e.id}" /><button
                  class="primary"
                  id="retry-entry"
                >
                  Retry…
                </button>
              </form>
              <form method="post" action="${u('/dlq/purge')}">
                ${csrf(session)}<input type="hidden" name="id" value="${e.id}" /><button class="danger">Purge…</button>
              </form>
            </div>`
          : ''
      }
      <h2>Payload</h2>
      <pre>${prettyPayload(payloadText)}</pre>
      <h2>Error</h2>
      <pre>
${typeof e.lastError === 'object' && e.lastError !== null ? JSON.stringify(e.lastError, null, 2) : e.errorText}</pre>
      <h2>History</h2>
      ${table(
        [
          {header: 'When', cell: (h) => when(h.at)},
          {header: 'Event', cell: (h) => h.event},
          {header: 'Entry', num: true, cell: (h) => h.dlqId ?? ''},
          {header: 'Job', num: true, cell: (h) => h.jobId ?? ''},
          {header: 'By', cell: (h) => [h.osUser, h.hostname].filter(Boolean).join('@') || (h.dbUser ?? '')},
          {header: 'Reason', cell: (h) => h.reason ?? ''},
        ],
        r.history,
        {empty: 'Never retried from the DLQ.'},
      )}`,
  }
}

async function historyPage(ctx: PageContext): Promise<Page> {
  const action = ctx.params.string('action')
  const doc = (await ctx.api('GET', `/api/v1/dlq/history${queryString({limit: '100', ...(action ? {action} : {})})}`))
    .body as DlqHistoryDocument
  return {
    title: 'History',
    active: '/history',
    body: html`<h1>Audit trail</h1>
      <p class="muted">
        Every retry, purge and capture of the DLQ and every jobs action, newest first (as
        <code>backfill dlq history</code>).
      </p>
      ${table(
        [
          {header: 'When', cell: (r) => when(r.startedAt)},
          {header: 'Action', cell: (r) => r.action},
          {header: 'Count', num: true, cell: (r) => num(r.count)},
          {header: 'Skipped', num: true, cell: (r) => (r.skipped ? num(r.skipped) : '')},
          {header: 'By', cell: (r) => [r.osUser, r.hostname].filter(Boolean).join('@')},
          {header: 'Role', wide: true, cell: (r) => r.dbUser},
          {header: 'Reason', cell: (r) => r.reason ?? ''},
        ],
        doc.runs,
        {empty: 'No actions recorded yet.'},
      )}`,
  }
}

// --- locks and schema --------------------------------------------------------------------------

async function locksPage(ctx: PageContext, session: Session, u: (p: string) => string): Promise<Page> {
  const doc = (await ctx.api('GET', '/api/v1/locks')).body as LocksListResult
  const {byLiveness, jobs, queues} = doc.totals
  return {
    title: 'Locks',
    active: '/locks',
    refresh: 10,
    body: html`<h1>Locks</h1>
      <p>
        ${num(jobs + queues)} locks (${num(jobs)} job, ${num(queues)} queue): ${num(byLiveness.dead)} held by dead
        owners, ${num(byLiveness.unknown)} by owners without liveness information, ${num(byLiveness.live)} by live
        owners. <button type="button" id="refresh-toggle" hidden>Pause auto refresh</button>
      </p>
      ${!doc.evidence.registry ? html`<p class="banner">No backfill_workers table: backfill workers' liveness cannot be proven (run backfill migrate).</p>` : ''}
      ${
        session.capabilities.actionsEnabled
          ? html`<div class="actions">
                <form method="post" action="${u('/locks/clean')}">
                  ${csrf(session)}<button class="primary">Clean locks…</button>
                </form>
              </div>
              <p class="muted">
                Releases dead owners' locks, and stale ones of owners without liveness; shows a preview first.
              </p>`
          : ''
      }
      <h2>Owners</h2>
      ${table(
        [
          {header: 'Owner', class: 'mono', rowHeader: true, cell: (o) => o.owner ?? '(none)'},
          {header: 'Runtime', cell: (o) => o.family},
          {header: 'Liveness', cell: (o) => liveness(o.liveness)},
          {header: 'Jobs', num: true, cell: (o) => num(o.jobLocks)},
          {header: 'Queues', num: true, cell: (o) => num(o.queueLocks)},
          {header: 'Oldest', num: true, cell: (o) => shortDuration(o.oldestLockAgeMs)},
          {header: 'Why', cell: (o) => o.reason},
        ],
        doc.owners,
        {empty: 'No locks.'},
      )}
      ${
        doc.locks.length > 0
          ? html`<h2>Locks (oldest first)</h2>
              ${table(
                [
                  {header: 'Kind', cell: (l) => l.kind},
                  {
                    header: 'Job',
                    num: true,
                    cell: (l) => (l.jobId ? html`<a href="${u(`/jobs/${l.jobId}`)}">${l.jobId}</a>` : '–'),
                  },
                  {header: 'Queue', cell: (l) => l.queueName ?? '–'},
                  {header: 'Task', cell: (l) => l.taskIdentifier ?? '–'},
                  {header: 'Owner', wide: true, class: 'mono', cell: (l) => l.owner ?? '(none)'},
                  {header: 'Liveness', cell: (l) => liveness(l.liveness)},
                  {header: 'Age', num: true, cell: (l) => shortDuration(l.ageMs)},
                ],
                doc.locks,
              )}
              ${doc.omitted > 0 ? html`<p class="muted">${num(doc.omitted)} more not shown.</p>` : ''}`
          : ''
      }`,
  }
}

async function schemaPage(ctx: PageContext): Promise<Page> {
  const s = (await ctx.api('GET', '/api/v1/schema')).body as SchemaStatus
  const g = s.graphile
  return {
    title: 'Schema',
    active: '/schema',
    body: html`<h1>Schema doctor <span class="muted">${s.schema} in ${s.database}</span></h1>
      <dl class="facts">
        <dt>graphile-worker</dt>
        <dd>
          ${!s.schemaExists ? 'schema does not exist' : !g.installed ? 'not installed' : html`revision ${g.revision} (bundled ${g.bundledVersion} knows up to ${g.highestKnown})${g.pending.length ? `, pending ${g.pending.join(', ')}` : ', no pending migrations'}`}
        </dd>
        <dt>Migration 19</dt>
        <dd>${s.migration19.applied ? `applied by ${s.migration19.by ?? 'unknown'}` : 'not applied'}</dd>
        <dt>Rust migration 20</dt>
        <dd>
          ${s.rust.migration20 || s.rust.workersTable ? `present (${s.rust.workers} workers seen, ${s.rust.liveWorkers} live)` : 'absent'}
        </dd>
        <dt>backfill objects</dt>
        <dd>
          DLQ
          ${s.backfill.dlq ? 'present' : 'missing'}${s.backfill.missing.length ? `, missing: ${s.backfill.missing.join(', ')}` : ', all present'}
        </dd>
        <dt>Locks</dt>
        <dd>${num(s.locks.recentJobLocks)} jobs locked in the last 4 h, ${num(s.locks.dead)} locks of dead workers</dd>
      </dl>
      <h2>Findings</h2>
      ${
        s.findings.length === 0
          ? html`<p class="banner ok">Nothing needs doing.</p>`
          : html`<ul>
              ${s.findings.map(
                (f) =>
                  html`<li>
                    <span class="pill ${f.severity === 'error' ? 'dead' : f.severity === 'warning' ? 'unknown' : ''}"
                      >${f.severity}</span
                    >
                    ${f.message}${f.action ? html`<br /><span class="muted">→ ${f.action}</span>` : ''}
                  </li>`,
              )}
            </ul>`
      }`,
  }
}

// --- previews and results ----------------------------------------------------------------------

type Kind = 'jobs' | 'retry' | 'purge' | 'locks'

function previewPage(
  session: Session,
  kind: Kind,
  path: string,
  body: unknown,
  values: Record<string, unknown>,
  u: (p: string) => string,
): Page {
  const token = (body as {confirm: {token: string}}).confirm.token
  const confirmForm = (label: string, danger: boolean, count: number): Safe =>
    count === 0
      ? html`<p>Nothing to do: no match.</p>`
      : html`<form method="post" action="${u(path)}">
          ${csrf(session)}<input type="hidden" name="confirm" value="${token}" />
          <label
            >Reason (recorded in the audit trail)
            <input type="text" name="reason" value="${String(values.reason ?? '')}" size="40"
          /></label>
          <button class="${danger ? 'danger' : 'primary'}" id="confirm">${label}</button>
          <a href="${u(kind === 'jobs' ? '/jobs' : kind === 'locks' ? '/locks' : '/dlq')}">Cancel</a>
        </form>`
  if (kind === 'retry' || kind === 'purge') {
    const doc = body as DlqRetryDocument & {dryRun: true}
    const stats = doc.stats
    const verb = kind === 'retry' ? 'retry' : 'delete for good'
    return {
      title: kind === 'retry' ? 'Retry: preview' : 'Purge: preview',
      active: '/dlq',
      body: html`<h1>${kind === 'retry' ? 'Retry' : 'Purge'}: preview (nothing changed yet)</h1>
        <p class="banner" id="preview-count">
          Would ${verb}
          <strong>${num(stats.total)}</strong>
          entr${stats.total === 1 ? 'y' : 'ies'}${stats.keyConflicts ? html` (${num(stats.keyConflicts)} would stay: a job with the same key is queued)` : ''}.
        </p>
        ${confirmForm(kind === 'retry' ? `Retry ${num(stats.total)} entries` : `Purge ${num(stats.total)} entries`, kind === 'purge', stats.total)}
        ${
          stats.groups.length > 0
            ? html`<h2>Groups</h2>
                ${groupsTable(stats.groups.slice(0, 20), u, undefined)}`
            : ''
        }
        ${
          doc.sample.length > 0
            ? html`<h2>First ${doc.sample.length}</h2>
                ${entriesTable(doc.sample, u)}`
            : ''
        }`,
    }
  }
  if (kind === 'jobs') {
    const doc = body as JobActionDocument
    const sel = doc.selection
    const excluded = Object.entries(sel.excluded)
      .map(([state, n]) => `${n} ${state}`)
      .join(', ')
    const name = path.split('/').pop() ?? ''
    const label = JOB_ACTIONS[name]?.label ?? name
    return {
      title: `${label}: preview`,
      active: '/jobs',
      body: html`<h1>${label}: preview (nothing changed yet)</h1>
        <p class="banner" id="preview-count">
          Would change <strong>${num(sel.count)}</strong> of ${num(sel.matched)} matching
          job(s)${excluded ? ` (left out: ${excluded})` : ''}.
        </p>
        ${confirmForm(`${label}: ${num(sel.count)} job(s)`, JOB_ACTIONS[name]?.danger ?? false, sel.count)}
        ${
          sel.byTask.length > 0
            ? html`<h2>Per task</h2>
                ${table(
                  [
                    {header: 'Task', rowHeader: true, cell: (t) => t.taskIdentifier},
                    {header: 'Jobs', num: true, cell: (t) => num(t.count)},
                  ],
                  sel.byTask,
                )}`
            : ''
        }
        ${
          sel.sample.length > 0
            ? html`<h2>First ${sel.sample.length}</h2>
                ${jobsTable(sel.sample, u)}`
            : ''
        }`,
    }
  }
  const plan = body as CleanLocksResult
  const releasing = plan.locks.filter((l) => l.action === 'release')
  return {
    title: 'Clean locks: preview',
    active: '/locks',
    body: html`<h1>Clean locks: preview (nothing changed yet)</h1>
      <p class="banner" id="preview-count">
        Would release <strong>${num(plan.jobLocks)}</strong> job lock(s) and
        <strong>${num(plan.queueLocks)}</strong> queue lock(s).
      </p>
      ${confirmForm(`Release ${num(releasing.length)} lock(s)`, true, releasing.length)}
      ${table(
        [
          {header: 'Kind', cell: (l) => l.kind},
          {header: 'Job', num: true, cell: (l) => l.jobId ?? '–'},
          {header: 'Queue', cell: (l) => l.queueName ?? '–'},
          {header: 'Owner', class: 'mono', cell: (l) => l.owner ?? '(none)'},
          {header: 'Why', cell: (l) => l.why},
        ],
        releasing,
        {caption: 'Locks to release'},
      )}`,
  }
}

function resultPage(kind: Kind, body: unknown, u: (p: string) => string): Page {
  let text: string
  let back = '/dlq'
  if (kind === 'retry') {
    const r = body as DlqRetryDocument & {dryRun: false}
    text = `Retried ${num(r.retried)} entr${r.retried === 1 ? 'y' : 'ies'} as new jobs${r.skipped.keyConflict ? `; ${num(r.skipped.keyConflict)} left in the DLQ (a job with the same key is queued)` : ''}${r.skipped.invalid ? `; ${num(r.skipped.invalid)} left (invalid names)` : ''}.`
  } else if (kind === 'purge') {
    const r = body as DlqPurgeDocument & {dryRun: false}
    text = `Deleted ${num(r.purged)} entr${r.purged === 1 ? 'y' : 'ies'} for good.`
  } else if (kind === 'jobs') {
    const r = body as JobActionDocument & {dryRun: false}
    const skipped = Object.values(r.skipped).reduce((a, b) => a + b, 0)
    text = `Changed ${num(r.done)} job(s)${r.movedToDlq ? ` (${num(r.movedToDlq)} moved to the DLQ)` : ''}${skipped ? `; ${num(skipped)} left alone (they changed or a worker took them meanwhile)` : ''}.`
    back = '/jobs'
  } else {
    const r = body as CleanLocksResult
    text = `Released ${num(r.jobLocks)} job lock(s) and ${num(r.queueLocks)} queue lock(s)${r.skipped.jobs + r.skipped.queues ? `; ${num(r.skipped.jobs + r.skipped.queues)} changed before they could be released` : ''}.`
    back = '/locks'
  }
  const run = (body as {run?: string}).run
  return {
    title: 'Done',
    active: back,
    body: html`<h1>Done</h1>
      <p class="banner ok" role="status" id="result">${text}</p>
      ${run ? html`<p class="muted">Audit run <span class="mono">${run}</span> · <a href="${u('/history')}">history</a></p>` : ''}
      <p><a href="${u(back)}">Back</a></p>`,
  }
}
