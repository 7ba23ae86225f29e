#!/usr/bin/env node
// Node >= 22.1 caches compiled code between runs (a noticeable part of start-up); 20 has no such API.
import module from 'node:module'

module.enableCompileCache?.()

// `--version` needs nothing but package.json: answer it without loading oclif (most of the
// start-up cost). Same text and rule as oclif (first argument `--version`: config.userAgent),
// except that oclif names WSL 'wsl' where this says 'linux'.
if (process.argv[2] === '--version') {
  const {readFileSync} = await import('node:fs')
  const {arch} = await import('node:os')
  const pjson = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'))
  const cpu = arch() === 'ia32' ? 'x86' : arch()
  process.stdout.write(`${pjson.name}/${pjson.version} ${process.platform}-${cpu} node-${process.version}\n`)
} else {
  const {execute} = await import('@oclif/core')
  await execute({dir: import.meta.url})
  // A command that left a handle open (a pool, a timer) must not hang the shell.
  setTimeout(() => process.exit(), 2000).unref()
}
