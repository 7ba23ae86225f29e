#!/usr/bin/env node
import {execute} from '@oclif/core'

await execute({dir: import.meta.url})
// A command that left a handle open (a pool, a timer) must not hang the shell.
setTimeout(() => process.exit(), 2000).unref()
