import {existsSync, readFileSync, statSync} from 'node:fs'
import path from 'node:path'
import {pathToFileURL} from 'node:url'

import type {ParsedCronItem, TaskList} from 'graphile-worker'

import {ConfigError, UsageError} from '../errors.js'

export interface TaskSource {
  /** A directory of task files (file name = task identifier), loaded with graphile-worker's loaders. */
  directory?: string | undefined
  /** A module exporting a task list (default export or `tasks`). */
  module?: string | undefined
  /** How the caller names the two settings in errors (a CLI passes its flags). */
  labels?: {directory?: string; module?: string}
}

export interface LoadedTasks {
  tasks: TaskList
  /** Where they came from, for the startup line and errors. */
  source: string
  release: () => Promise<void>
}

/**
 * Loads task handlers with graphile-worker's own conventions: `getTasks` for a directory
 * (.js/.cjs/.mjs, file name = identifier), or an ES/CommonJS module exporting a task list.
 */
export async function loadTasks(source: TaskSource): Promise<LoadedTasks> {
  if (source.directory && source.module) {
    throw new UsageError('use either a tasks directory or a task module, not both', {code: 'E_TASK_SOURCE'})
  }
  if (source.module) return loadTaskModule(path.resolve(source.module))
  const directory = path.resolve(source.directory ?? 'tasks')
  if (!existsSync(directory) || !statSync(directory).isDirectory()) {
    throw new ConfigError(`no tasks directory at ${directory}`, {
      code: 'E_NO_TASKS',
      suggestions: [
        `create it with one file per task (tasks/send_email.js exporting an async function), or give ${source.labels?.directory ?? 'another tasks directory'} / ${source.labels?.module ?? 'a task module'}`,
      ],
    })
  }
  const {getTasks, Logger} = await import('graphile-worker')
  const silent = new Logger(() => () => undefined)
  let watched: Awaited<ReturnType<typeof getTasks>>
  try {
    watched = await getTasks({logger: silent}, directory)
  } catch (error) {
    // A syntax error or a throwing import in a task file: the user's code, not ours.
    throw new ConfigError(`cannot load the tasks in ${directory}: ${(error as Error).message}`, {
      code: 'E_TASK_LOAD',
      cause: error,
      suggestions: ['fix the task file named in the message (node --check FILE finds syntax errors)'],
    })
  }
  const names = Object.keys(watched.tasks)
  if (names.length === 0) {
    await watched.release()
    throw new ConfigError(`no tasks found in ${directory}`, {
      code: 'E_NO_TASKS',
      suggestions: [
        'add files named <task_identifier>.js, .cjs or .mjs that export the task function (module.exports = async (payload, helpers) => {…} or export default)',
      ],
    })
  }
  return {tasks: watched.tasks, source: directory, release: async () => watched.release()}
}

async function loadTaskModule(file: string): Promise<LoadedTasks> {
  if (!existsSync(file)) {
    throw new ConfigError(`task module ${file} does not exist`, {
      code: 'E_NO_TASKS',
      suggestions: ['pass the path of a .js/.mjs/.cjs module exporting a task list'],
    })
  }
  let loaded: Record<string, unknown>
  try {
    loaded = (await import(pathToFileURL(file).href)) as Record<string, unknown>
  } catch (error) {
    throw new ConfigError(`cannot load task module ${file}: ${(error as Error).message}`, {
      code: 'E_TASK_MODULE',
      cause: error,
    })
  }
  const candidate = (loaded.tasks ?? loaded.default ?? loaded) as Record<string, unknown>
  const list = (
    candidate && typeof candidate === 'object' && 'tasks' in candidate ? candidate.tasks : candidate
  ) as Record<string, unknown>
  const tasks: TaskList = {}
  for (const [name, fn] of Object.entries(list ?? {})) {
    if (typeof fn === 'function') tasks[name] = fn as TaskList[string]
  }
  if (Object.keys(tasks).length === 0) {
    throw new ConfigError(`task module ${file} exports no task functions`, {
      code: 'E_NO_TASKS',
      suggestions: [
        'export an object of task functions: export const tasks = {send_email: async (payload, helpers) => {…}} (or as the default export)',
      ],
    })
  }
  return {tasks, source: file, release: async () => undefined}
}

/** Parses a graphile-worker crontab file, so a mistake is a usage error before anything starts. */
export async function loadCrontab(file: string, label = 'the crontab path'): Promise<ParsedCronItem[]> {
  const resolved = path.resolve(file)
  if (!existsSync(resolved))
    throw new ConfigError(`crontab file ${resolved} does not exist`, {
      code: 'E_CRONTAB',
      suggestions: [`check ${label}`],
    })
  const {parseCrontab} = await import('graphile-worker')
  try {
    return parseCrontab(readFileSync(resolved, 'utf8'))
  } catch (error) {
    throw new ConfigError(`invalid crontab ${resolved}: ${(error as Error).message}`, {
      code: 'E_CRONTAB',
      cause: error,
      suggestions: [
        "each line: <minute> <hour> <day> <month> <weekday> <task> [?options] [payload JSON]; see graphile-worker's crontab docs",
      ],
    })
  }
}
