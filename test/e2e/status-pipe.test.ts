import {spawn} from 'node:child_process'

import {expect} from 'chai'

import {BIN, cleanEnv, ROOT} from '../support/cli.js'
import {TestSchema} from '../support/db.js'

/** Issue 12 item 7: `backfill status --watch 1s | head -1` exits once head has gone. */
describe('status --watch into a pipe whose reader leaves (real processes)', function () {
  this.timeout(60_000)
  let t: TestSchema

  before(async () => {
    t = await TestSchema.create({migrated: true, prefix: 'pipe'})
  })
  after(async () => {
    await t.drop()
  })

  /** Runs `backfill status --watch 1s … | head -1` in a shell; resolves with head's line and how long the pipeline took. */
  function pipeline(extra: string[]): Promise<{code: number | null; stdout: string; stderr: string; ms: number}> {
    const started = Date.now()
    const quoted = [process.execPath, BIN, 'status', '--watch', '1s', '--schema', t.schema, ...extra]
      .map((a) => `'${a.replaceAll("'", "'\\''")}'`)
      .join(' ')
    return new Promise((resolve, reject) => {
      // pipefail: the pipeline's status is the CLI's, not head's.
      const shell = spawn('bash', ['-o', 'pipefail', '-c', `${quoted} | head -1`], {
        cwd: ROOT,
        env: cleanEnv({DATABASE_URL: t.url}),
        stdio: ['ignore', 'pipe', 'pipe'],
        // Its own process group, so that a hung pipeline is killed whole (the CLI too).
        detached: true,
      })
      let stdout = ''
      let stderr = ''
      shell.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
      shell.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
      // Before the fix the CLI watched on forever: give up (and say so) after 20s.
      const timer = setTimeout(() => {
        process.kill(-shell.pid!, 'SIGKILL')
        reject(new Error(`the pipeline did not end within 20s after head -1 (stdout: ${stdout})`))
      }, 20_000)
      shell.on('error', reject)
      shell.on('close', (code) => {
        clearTimeout(timer)
        resolve({code, stdout, stderr, ms: Date.now() - started})
      })
    })
  }

  for (const [label, extra, firstLine] of [
    ['text', [], /^--- every 1\.0s · .* UTC · Ctrl-C to stop\n$/],
    ['--json', ['--json'], /^\{"schema":".*\}\n$/],
  ] as const) {
    it(`${label}: exits 0 within a watch interval or two of head closing the pipe, quietly`, async () => {
      const result = await pipeline([...extra])
      expect(result.stdout).to.match(firstLine)
      expect(result.code, result.stderr).to.equal(0)
      expect(result.stderr).to.not.match(/EPIPE|Error/)
      // Start-up, one status round, then at most the next round's write notices the closed pipe.
      expect(result.ms).to.be.below(10_000)
    })
  }
})
