#!/usr/bin/env -S node --import tsx
// Runs the commands from src/ without building (oclif detects tsx).
import {execute} from '@oclif/core'

await execute({development: true, dir: import.meta.url})
setTimeout(() => process.exit(), 2000).unref()
