// A plain graphile-worker process in its best configuration measured here (local queue 500,
// batched completions), for the SIGKILL comparison of bench/worker.bench.ts. Env: DATABASE_URL,
// SCHEMA, CONCURRENCY.
import {Logger, run} from 'graphile-worker'

await run({
  connectionString: process.env.DATABASE_URL,
  schema: process.env.SCHEMA,
  concurrency: Number(process.env.CONCURRENCY ?? 10),
  noHandleSignals: true,
  logger: new Logger(() => () => undefined),
  taskList: {noop: async () => {}},
  preset: {worker: {localQueue: {size: 500}, completeJobBatchDelay: 0, failJobBatchDelay: 0}},
})
