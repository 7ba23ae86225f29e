import type {PoolPlan} from './config.js'

export type PoolRole = PoolPlan['role']

export interface JobRef {
  pool: PoolRole
  task: string
  jobId: string
  attempt: number
  maxAttempts: number
}

/** Everything a WorkerRunner reports; the CLI renders these as text or NDJSON log lines. */
export type WorkerEvent =
  | {
      type: 'worker:start'
      schema: string
      database: string
      tasks: string[]
      pools: (PoolPlan & {poolId: string})[]
      dlq: boolean
      once: boolean
    }
  | ({type: 'job:start'} & JobRef)
  | ({type: 'job:success'; durationMs: number} & JobRef)
  | ({
      type: 'job:failure'
      durationMs: number
      error: string
      outcome: 'retry' | 'exhausted' | 'permanent'
      /** outcome retry: graphile runs the job again this long after its failure write (its backoff). */
      retryInMs?: number
    } & JobRef)
  | {
      type: 'dlq:capture'
      captured: number
      byTask: Record<string, number>
      durationMs: number
      reason: 'startup' | 'interval' | 'failure' | 'shutdown' | 'once'
    }
  | {
      type: 'locks:cleanup'
      queueLocks: number
      jobLocks: number
      durationMs: number
      reason: 'startup' | 'interval'
      details?: unknown
    }
  | {type: 'worker:stopping'; reason: string; force: boolean}
  | {
      type: 'worker:stop'
      durationMs: number
      forced: boolean
      releasedJobLocks: number
      releasedQueueLocks: number
      /** Jobs still locked by this worker's pools, counted after the release; null = could not check. */
      lockedAfter: number | null
      /** Why the release or the check failed, when it did. */
      lockCheckError?: string
    }
  | {type: 'error'; where: string; error: string}
  | {type: 'log'; level: 'debug' | 'info' | 'warning' | 'error'; message: string}
