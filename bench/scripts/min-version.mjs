// Reference for `backfill --version`: a minimal Node + pg tool printing its version.
import {readFileSync} from 'node:fs'

import 'pg'

const {version} = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'))
process.stdout.write(`backfill/${version} ${process.platform}-${process.arch} node-${process.version}\n`)
