import Worker from './index.js'

/** `backfill worker start` is the same command as `backfill worker`. */
export default class WorkerStart extends Worker {
  static override summary = 'Run task handlers (same as `backfill worker`).'
  static override examples = ['<%= config.bin %> <%= command.id %> --concurrency 10']
}
