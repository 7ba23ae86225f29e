#!/usr/bin/env node
// Node >= 22.1 caches compiled code between runs (a noticeable part of start-up); 20 has no such API.
import module from 'node:module'

module.enableCompileCache?.()

const {execute} = await import('@oclif/core')
await execute({dir: import.meta.url})
// A command that left a handle open (a pool, a timer) must not hang the shell.
setTimeout(() => process.exit(), 2000).unref()
