/**
 * Runs a command in this process, from the TypeScript sources, through oclif's own entry point
 * (`run`: topic/command resolution, the command_not_found hook, help), with stdout, stderr and
 * the exit code captured: argument and contract cases without a child process or a build.
 * Real-binary tests (support/cli.ts) remain for signals, exit codes seen by a shell, and TTYs.
 */
import {readFileSync} from 'node:fs'
import path from 'node:path'

import {Config, Plugin, run} from '@oclif/core'

import {cleanEnv, ROOT, type CliResult} from './cli.js'

let config: Promise<Config> | undefined

/**
 * The CLI's configuration with commands and hooks read from src/ (tsx, the test runner's
 * loader, compiles them) and no manifest: never a dist/ or oclif.manifest.json that may be
 * stale or absent in a fresh clone.
 */
async function sourcePlugin(): Promise<Plugin> {
  const pjson = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
    name: string
    oclif: {commands: string; hooks?: Record<string, string>; plugins?: string[]}
  }
  const fromSource = (file: string): string => file.replace(/^\.\/dist\//, './src/').replace(/\.js$/, '.ts')
  pjson.oclif.commands = fromSource(pjson.oclif.commands)
  pjson.oclif.hooks = Object.fromEntries(Object.entries(pjson.oclif.hooks ?? {}).map(([k, v]) => [k, fromSource(v)]))
  // Plugins (help, autocomplete) stay out: oclif's built-in help renders topics and --help.
  delete pjson.oclif.plugins
  const root = new Plugin({isRoot: true, root: ROOT, pjson: pjson as never, ignoreManifest: true})
  await root.load()
  return root
}

async function sourceConfig(): Promise<Config> {
  const root = await sourcePlugin()
  return Config.load({root: ROOT, plugins: new Map([[root.name, root]])})
}

/** The command manifest oclif would write, built from src/ (never a stale oclif.manifest.json). */
export async function sourceManifest(): Promise<Plugin['manifest']> {
  return (await sourcePlugin()).manifest
}

export interface InProcessOptions {
  /** Environment for the run (cleaned of the developer's PG and backfill variables). */
  env?: Record<string, string | undefined>
}

export async function runInProcess(argv: string[], options: InProcessOptions = {}): Promise<CliResult> {
  config ??= sourceConfig()
  const loaded = await config
  const stdout: string[] = []
  const stderr: string[] = []
  const writeOut = process.stdout.write
  const writeErr = process.stderr.write
  const savedEnv = process.env
  const savedExitCode = process.exitCode
  const capture =
    (into: string[]) =>
    (chunk: string | Uint8Array, ...rest: unknown[]): boolean => {
      into.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'))
      const callback = rest.find((r) => typeof r === 'function') as (() => void) | undefined
      callback?.()
      return true
    }
  process.env = cleanEnv(options.env)
  process.exitCode = undefined
  process.stdout.write = capture(stdout) as typeof process.stdout.write
  process.stderr.write = capture(stderr) as typeof process.stderr.write
  let code: number
  try {
    await run(argv, loaded)
    code = Number(process.exitCode ?? 0)
  } catch (error) {
    // oclif's own exits (help, --version) throw an ExitError carrying the code.
    const exit = (error as {oclif?: {exit?: number}}).oclif?.exit
    if (exit === undefined) throw error
    code = exit
  } finally {
    process.stdout.write = writeOut
    process.stderr.write = writeErr
    process.env = savedEnv
    process.exitCode = savedExitCode
  }
  return {code, signal: null, stdout: stdout.join(''), stderr: stderr.join('')}
}
