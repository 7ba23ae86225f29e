import {spawn} from 'node:child_process'
import {existsSync} from 'node:fs'

export interface TimedRun {
  code: number | null
  ms: number
  /** Peak RSS in MB (GNU time's maximum resident set size), null if unavailable. */
  peakRssMb: number | null
  stdout: string
  stderr: string
}

/**
 * Runs a command and measures wall time and peak RSS. Peak RSS comes from
 * /usr/bin/time -f when present; otherwise it is null (reported as "–").
 */
export function timedRun(
  command: string,
  args: string[],
  options: {env?: NodeJS.ProcessEnv; input?: string; cwd?: string} = {},
): Promise<TimedRun> {
  const useTime = process.platform === 'linux' && hasGnuTime()
  const program = useTime ? '/usr/bin/time' : command
  const argv = useTime ? ['-f', '__PEAK_RSS_KB__=%M', command, ...args] : args
  return new Promise((resolve, reject) => {
    const started = performance.now()
    const child = spawn(program, argv, {
      env: options.env ?? process.env,
      cwd: options.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    child.on('error', reject)
    child.on('close', (code) => {
      const ms = performance.now() - started
      const match = /__PEAK_RSS_KB__=(\d+)/.exec(stderr)
      stderr = stderr.replace(/__PEAK_RSS_KB__=\d+\n?/, '')
      resolve({code, ms, peakRssMb: match ? Number(match[1]) / 1024 : null, stdout, stderr})
    })
    if (options.input !== undefined) child.stdin.end(options.input)
    else child.stdin.end()
  })
}

function hasGnuTime(): boolean {
  return existsSync('/usr/bin/time')
}
