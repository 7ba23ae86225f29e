import {sleep} from '../sleep.js'

import type {Database} from '../db.js'
import {migrationState} from '../sql/worker.js'
import {describeError} from './async.js'
import type {WorkerEvent} from './events.js'

/**
 * Decides what a breaking-migration notice means for this worker. graphile-worker announces
 * breaking migrations on a database-wide channel without naming the schema, and its pools
 * stop on any of them; ours check their own schema's migrations table instead and stop only
 * when a breaking migration arrived there since the worker started (newer code migrated it:
 * carrying on would run old SQL against the new schema).
 */
export class MigrationWatch {
  private readonly db: Database
  private readonly emit: (event: WorkerEvent) => void
  private readonly stop: (failure: string) => void
  /** The schema's latest breaking migration when the worker started. */
  private baseline: number | null = null
  private checking: Promise<void> | undefined
  private again = false

  constructor(db: Database, emit: (event: WorkerEvent) => void, stop: (failure: string) => void) {
    this.db = db
    this.emit = emit
    this.stop = stop
  }

  /** Records the schema's state; call once it is migrated, before any pool listens. */
  async start(): Promise<void> {
    this.baseline = (await this.db.one(migrationState, [])).latest_breaking
  }

  /** A notice arrived (from any pool; several at once are checked together). */
  announced(migration: number): void {
    if (this.checking) {
      this.again = true
      return
    }
    this.checking = (async () => {
      try {
        do {
          this.again = false
          await this.check(migration)
        } while (this.again)
      } finally {
        this.checking = undefined
      }
    })()
  }

  private async check(migration: number): Promise<void> {
    let latestBreaking: number | null | undefined
    for (let attempt = 1; latestBreaking === undefined; attempt++) {
      try {
        latestBreaking = (await this.db.one(migrationState, [])).latest_breaking
      } catch (error) {
        if (attempt < 3) {
          await sleep(1000)
          continue
        }
        // Unknown is treated as graphile treats every notice: stop rather than risk it.
        this.stop(
          `breaking migration ${migration} was announced in this database and schema ${this.db.schema} cannot be checked (${describeError(error)}); stopping, as graphile-worker does`,
        )
        return
      }
    }
    if (latestBreaking !== null && (this.baseline === null || latestBreaking > this.baseline)) {
      this.stop(
        `schema ${this.db.schema} received breaking migration ${latestBreaking} while this worker ran; stopping, as graphile-worker does, so that this version's SQL does not run against the new schema (restart it with a compatible version)`,
      )
      return
    }
    this.emit({
      type: 'log',
      level: 'info',
      message: `breaking migration ${migration} announced in this database (graphile-worker names no schema): schema ${this.db.schema} is unchanged, so this worker carries on`,
    })
  }
}
