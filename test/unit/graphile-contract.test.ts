/**
 * The worker relies on graphile-worker details beyond its typed API (log text, event names,
 * meta markers, the retry backoff). These tests read the installed graphile-worker, so an
 * upgrade that rewords or drops one of them fails here instead of silently disabling a safety.
 */
import {EventEmitter} from 'node:events'
import {readFileSync} from 'node:fs'
import {createRequire} from 'node:module'
import path from 'node:path'

import {expect} from 'chai'

import {
  GRAPHILE_CONTRACT,
  graphileLogFactory,
  interceptBreakingMigration,
  retryDelayMs,
  throughBatcher,
} from '../../src/lib/worker/graphile-adapter.js'

const dist = path.dirname(createRequire(import.meta.url).resolve('graphile-worker'))
const source = (file: string): string => readFileSync(path.join(dist, file), 'utf8')

describe('graphile-worker contract (the installed copy still has what the worker relies on)', () => {
  it(`LocalQueue logs "${GRAPHILE_CONTRACT.localQueueFetchErrorLog}" with the error in meta when a batch fetch fails`, () => {
    const localQueue = source('localQueue.js')
    const at = localQueue.indexOf(`logger.error(\`${GRAPHILE_CONTRACT.localQueueFetchErrorLog}`)
    expect(at, 'the fetch-failure log line the worker stops on is gone or reworded').to.be.greaterThan(-1)
    expect(localQueue.slice(at, at + 200)).to.match(/\{\s*error: e\s*\}/)
    // The pool's own logger (root scope): a task's job-scoped logger cannot pass for it.
    expect(localQueue.slice(at - 9, at)).to.equal('this.ctx.')
    expect(source('main.js')).to.contain('new localQueue_1.LocalQueue(compiledSharedOptions,')
  })

  it('LocalQueue still offers no event for a failed fetch (if it does, use the event instead of the log text)', () => {
    const localQueue = source('localQueue.js')
    const emitted = [...localQueue.matchAll(/safeEmit\)\(this\.ctx, "([^"]+)"/g)].map((m) => m[1])
    expect(emitted).to.include('localQueue:getJobs:complete')
    expect(emitted.filter((name) => /error|fail/i.test(name!))).to.deep.equal([])
  })

  it(`LocalQueue reads ${GRAPHILE_CONTRACT.localQueueBatchSizeField} twice per fetch, with "${GRAPHILE_CONTRACT.localQueueGetJobsCompleteEvent}" between (adaptive prefetch)`, () => {
    const localQueue = source('localQueue.js')
    const field = `this.${GRAPHILE_CONTRACT.localQueueBatchSizeField}`
    const reads = [...localQueue.matchAll(new RegExp(`${field.replace('.', '\\.')}(?!\\s*=[^=])`, 'g'))].map(
      (m) => m.index,
    )
    // The constructor's assignment, then: the query's batch size, "fetched the maximum?", and
    // the refetch-delay abort threshold (only with refetchDelay configured, which we never do).
    expect(localQueue).to.contain(`${field} = getJobBatchSize;`)
    expect(reads, 'reads of the batch size changed').to.have.length(3)
    const event = localQueue.indexOf(`"${GRAPHILE_CONTRACT.localQueueGetJobsCompleteEvent}"`)
    expect(event).to.be.greaterThan(reads[0]!)
    expect(event).to.be.lessThan(reads[1]!)
    expect(localQueue.slice(reads[1]! - 40, reads[1]!)).to.contain('fetchedMax = jobCount >=')
    expect(localQueue.slice(reads[2]! - 80, reads[2]!)).to.contain('refetchDelayOptions?.maxAbortThreshold')
    // The instance announces itself after the assignment (so attach() replaces it).
    expect(localQueue.indexOf(`"${GRAPHILE_CONTRACT.localQueueInitEvent}"`)).to.be.greaterThan(
      localQueue.indexOf(`${field} = getJobBatchSize;`),
    )
  })

  it(`each slot reports its own fetch failures by "${GRAPHILE_CONTRACT.getJobErrorEvent}", and a new pool by "${GRAPHILE_CONTRACT.poolCreateEvent}"`, () => {
    expect(source('worker.js')).to.contain(`"${GRAPHILE_CONTRACT.getJobErrorEvent}", { ctx, worker, error: err }`)
    expect(source('main.js')).to.contain(`"${GRAPHILE_CONTRACT.poolCreateEvent}", { ctx, workerPool }`)
  })

  it(`a slot that ends with an error says so by "${GRAPHILE_CONTRACT.workerStopEvent}" (once mode counts on it)`, () => {
    expect(source('worker.js')).to.contain(`"${GRAPHILE_CONTRACT.workerStopEvent}", { ctx, worker, error }`)
  })

  it(`a breaking-migration notice reaches "${GRAPHILE_CONTRACT.listenNotificationEvent}" as the object graphile then reads`, () => {
    const main = source('main.js')
    const emitted = main.indexOf(`"${GRAPHILE_CONTRACT.listenNotificationEvent}", {`)
    const handled = main.indexOf(`case "${GRAPHILE_CONTRACT.migrateChannel}": {`)
    expect(emitted, 'the notification event is gone').to.be.greaterThan(-1)
    expect(handled, 'graphile no longer handles the migrate channel').to.be.greaterThan(emitted)
    const between = main.slice(emitted, handled + 300)
    expect(between).to.match(/message,\s*client,/)
    expect(between).to.contain('const payload = (0, lib_1.tryParseJson)(message.payload);')
    expect(between).to.contain('if (payload?.breaking) {')
  })

  it('clearing `breaking` on the notice disarms graphile and keeps the rest of it', () => {
    const message = {channel: 'worker:migrate', payload: '{"migrationNumber":1,"breaking":true}'}
    expect(interceptBreakingMigration(message)).to.equal(1)
    expect(JSON.parse(message.payload)).to.deep.equal({migrationNumber: 1, breaking: false})
    const harmless = {channel: 'worker:migrate', payload: '{"migrationNumber":20,"breaking":false}'}
    expect(interceptBreakingMigration(harmless)).to.equal(undefined)
    expect(interceptBreakingMigration({channel: 'jobs:insert', payload: '{"count":1}'})).to.equal(undefined)
    expect(interceptBreakingMigration({channel: 'worker:migrate', payload: 'not json'})).to.equal(undefined)
  })

  it('LocalQueue keeps the background() tracking and the events holdLocalQueueRelease uses', () => {
    const localQueue = source('localQueue.js')
    expect(localQueue).to.match(
      /\n {4}background\(promise\) \{\n {8}if \(this\.mode === "RELEASED" && this\.backgroundCount === 0\)/,
    )
    expect(localQueue).to.contain(
      `"${GRAPHILE_CONTRACT.localQueueInitEvent}", {\n            ctx: ctx,\n            localQueue: this,`,
    )
    expect(localQueue).to.match(new RegExp(`"${GRAPHILE_CONTRACT.localQueueSetModeEvent}", \\{[^}]*newMode,`))
    // The 0.17.3 bug itself: RELEASED is set before the prefetched jobs are backgrounded for return.
    const release = localQueue.slice(localQueue.indexOf('    setModeReleased() {'))
    expect(release.indexOf('this.setMode(RELEASED);')).to.be.lessThan(release.indexOf('this.returnJobs();'))
  })

  it(`a lost batch write emits "${GRAPHILE_CONTRACT.poolFatalErrorEvent}" then, for completions, logs "${GRAPHILE_CONTRACT.completeJobsFatalLog}" with the jobs in meta, and graphile shuts the pool down itself`, () => {
    const main = source('main.js')
    const complete = main.slice(main.indexOf('batch("completeJobs"'), main.indexOf('batch("failJobs"'))
    expect(complete).to.contain(`"${GRAPHILE_CONTRACT.poolFatalErrorEvent}", {`)
    expect(complete).to.contain('action: "completeJob"')
    expect(complete).to.contain(`logger.error(\`${GRAPHILE_CONTRACT.completeJobsFatalLog}'`)
    expect(complete).to.match(/\{ fatalError: error, jobs \}/)
    // The event carries the very error object the log line then carries (the log is bound to it).
    expect(complete).to.match(
      /\(error, jobs\) => \{\s*\(0, lib_1\.safeEmit\)\(ctx, "pool:fatalError", \{\s*ctx,\s*error,/,
    )
    expect(complete.indexOf('"pool:fatalError"')).to.be.lessThan(complete.indexOf('logger.error('))
    expect(complete).to.contain('workerPool.gracefulShutdown(')
    const fail = main.slice(main.indexOf('batch("failJobs"'))
    expect(fail.slice(0, 800)).to.contain(`"${GRAPHILE_CONTRACT.poolFatalErrorEvent}", {`)
    expect(fail.slice(0, 800)).to.contain('action: "failJob"')
    // The gracefulShutdown event, with its message, whoever starts the shutdown.
    expect(main).to.match(
      new RegExp(
        `"${GRAPHILE_CONTRACT.poolGracefulShutdownEvent}", \\{\\s*ctx,\\s*pool: workerPool,\\s*workerPool,\\s*message,`,
      ),
    )
  })

  it('without a batcher (delay -1) a slot does not await its completion or failure write (the worker never uses that path for long-running pools)', () => {
    const worker = source('worker.js')
    expect(worker).to.match(/\n\s+completeJob\(job\);\n/)
    expect(worker).to.match(/\n\s+failJob\(\{\n/)
    expect(worker).not.to.match(/await completeJob|await failJob/)
    expect(throughBatcher(-1)).to.equal(0)
    expect(throughBatcher(0)).to.equal(0)
    expect(throughBatcher(25)).to.equal(25)
  })

  it('per-job success and failure lines carry success: true / failure: true in meta (the worker drops them)', () => {
    const worker = source('worker.js')
    expect(worker).to.match(/logger\.info\(`Completed task [\s\S]{0,300}?\{ job, duration, success: true \}/)
    expect(worker).to.match(/logger\.error\(`Failed task [\s\S]{0,300}?\{ failure: true, job, error: err, duration \}/)
  })

  it(`failed jobs run again after exp(min(attempts, 10)) seconds (${GRAPHILE_CONTRACT.retryBackoffSql})`, () => {
    expect(source('sql/failJobs.js')).to.contain(GRAPHILE_CONTRACT.retryBackoffSql)
    expect(retryDelayMs(1)).to.equal(2718)
    expect(retryDelayMs(3)).to.equal(20_086)
    expect(retryDelayMs(25)).to.equal(retryDelayMs(10))
  })
})

describe('graphile log lines', () => {
  const lines: string[] = []
  const failures: unknown[] = []
  const lost: string[][] = []
  const events = new EventEmitter()
  const factory = graphileLogFactory(
    {
      log: (level, message) => lines.push(`${level} ${message}`),
      fetchFailed: (error) => failures.push(error),
      completionsLost: (jobIds) => lost.push(jobIds),
    },
    events,
  )
  // graphile's pool logs with the root scope; tasks get job-scoped loggers (helpers.js makeJobHelpers).
  const log = factory({})
  const jobLog = factory({label: 'job', taskIdentifier: 'work', jobId: '5'})
  const lostLine = `${GRAPHILE_CONTRACT.completeJobsFatalLog}'7', '9':\nerror: Connection terminated`
  const jobs = [
    {id: '7', job_queue_id: null},
    {id: '9', job_queue_id: 3},
  ]

  beforeEach(() => {
    lines.length = 0
    failures.length = 0
    lost.length = 0
  })

  it('graphile scopes its job and worker loggers (label, jobId, workerId), the pool logger not', () => {
    expect(source('helpers.js')).to.match(
      /baseLogger\.scope\(\{\s*label: "job",\s*taskIdentifier: job\.task_identifier,\s*jobId: job\.id,/,
    )
    expect(source('worker.js')).to.match(/compiledSharedOptions\.logger\.scope\(\{\s*label: "worker",\s*workerId,/)
    expect(source('main.js')).to.contain('const { logger, middleware } = compiledSharedOptions;')
  })

  it('a lost-completion line counts only after its pool:fatalError, with the same error, from the pool logger', () => {
    const fatalError = new Error('Connection terminated')
    // A task printing the same text and meta (its own error object, or even graphile's): ignored.
    jobLog('error', lostLine, {fatalError, jobs})
    log('error', lostLine, {fatalError, jobs})
    events.emit(GRAPHILE_CONTRACT.poolFatalErrorEvent, {error: fatalError, action: 'completeJob'})
    jobLog('error', lostLine, {fatalError, jobs})
    log('error', lostLine, {fatalError: new Error('Connection terminated'), jobs})
    expect(lost, 'nothing but the pool line bound to the event').to.deep.equal([])
    log('error', lostLine, {fatalError, jobs})
    // Once: a repeat of the line (a task again) does not count.
    log('error', lostLine, {fatalError, jobs})
    expect(lost).to.deep.equal([['7', '9']])
    // A lost failure batch announces action failJob: its jobs are not completions.
    const failError = new Error('x')
    events.emit(GRAPHILE_CONTRACT.poolFatalErrorEvent, {error: failError, action: 'failJob'})
    log('error', lostLine, {fatalError: failError, jobs})
    expect(lost).to.have.length(1)
    expect(lines, 'every line is still logged').to.have.length(7)
  })

  it("a lost completion batch reports its jobs' ids (and is still logged)", () => {
    const fatalError = new Error('Connection terminated')
    events.emit(GRAPHILE_CONTRACT.poolFatalErrorEvent, {error: fatalError, action: 'completeJob'})
    log('error', lostLine, {fatalError, jobs})
    log('error', "Failed to fail jobs '8':\nerror: x", {fatalError: new Error('x'), specs: []})
    expect(lost).to.deep.equal([['7', '9']])
    expect(lines).to.have.length(2)
  })

  it('a failed local-queue fetch is reported with its error (and still logged)', () => {
    const error = Object.assign(new Error('Connection terminated unexpectedly'), {code: undefined})
    log('error', `${GRAPHILE_CONTRACT.localQueueFetchErrorLog}; will try again on next poll interval. Error: x`, {
      error,
    })
    jobLog('error', `${GRAPHILE_CONTRACT.localQueueFetchErrorLog}; will try again on next poll interval. Error: x`, {
      error,
    })
    expect(failures, "a task's line with the same text is not a fetch failure").to.deep.equal([error])
    expect(lines).to.have.length(2)
  })

  it("graphile's per-job lines are dropped (ours say more), other lines keep their level", () => {
    log('info', 'Completed task 1 (work, 1.00ms) with success', {success: true})
    log('error', "Failed task 2 (work, 1.00ms, attempt 1 of 8) with error 'x'", {failure: true})
    log('warning', 'Something to know')
    log('trace' as never, 'noise')
    expect(lines).to.deep.equal(['warning Something to know', 'debug noise'])
    expect(failures).to.deep.equal([])
  })
})
