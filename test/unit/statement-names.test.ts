import {readdirSync, readFileSync} from 'node:fs'
import {createRequire} from 'node:module'
import path from 'node:path'

import {expect} from 'chai'

import {preparedName} from '../../src/lib/db.js'
import {GRAPHILE_CONTRACT, graphileNamesFit} from '../../src/lib/worker/graphile-adapter.js'

describe('prepared statement names (PostgreSQL keeps 63 bytes; node-postgres warns beyond 63)', () => {
  const long = (suffix: string): string => `tenant_${'x'.repeat(55)}${suffix}` // 63 bytes

  it('stay `<id>/<schema>` when that fits, and at most 63 bytes otherwise', () => {
    expect(preparedName('status.job_counts', 'graphile_worker')).to.equal('status.job_counts/graphile_worker')
    for (const schema of [long('a'), 'é'.repeat(31), 's'.repeat(46)]) {
      const name = preparedName('dlq.set_local_aggregate_settings', schema)
      expect(Buffer.byteLength(name), name).to.be.at.most(63)
      expect(name.length).to.be.at.most(63)
      expect(preparedName('dlq.set_local_aggregate_settings', schema)).to.equal(name) // stable
    }
  })

  it('differ for two long schema names sharing their first 62 bytes, and for two statements', () => {
    expect(long('a')).to.have.length(63)
    const a = preparedName('status.job_counts', long('a'))
    const b = preparedName('status.job_counts', long('b'))
    expect(a).not.to.equal(b)
    expect(a.slice(0, 63)).not.to.equal(b.slice(0, 63))
    expect(preparedName('status.job_totals', long('a'))).not.to.equal(a)
  })

  it("graphile-worker's own names: its longest prefix is the one we budget for", () => {
    const dist = path.dirname(createRequire(import.meta.url).resolve('graphile-worker'))
    const prefixes: string[] = []
    for (const file of readdirSync(path.join(dist, 'sql')).filter((f) => f.endsWith('.js'))) {
      const text = readFileSync(path.join(dist, 'sql', file), 'utf8')
      // `complete_job/${workerSchema}`, `clear_stale_locks${useNodeTime ? "N" : ""}/${workerSchema}`
      for (const [, prefix, n] of text.matchAll(/`([a-z_]+)(\$\{useNodeTime \? "N" : ""\})?\/\$\{workerSchema\}`/g))
        prefixes.push(`${prefix}${n ? 'N' : ''}/`)
    }
    expect(prefixes).to.include('complete_job/')
    const longest = Math.max(...prefixes.map((p) => p.length))
    expect(GRAPHILE_CONTRACT.longestStatementNamePrefix.length).to.equal(longest)
    expect(graphileNamesFit('graphile_worker')).to.equal(true)
    expect(graphileNamesFit('s'.repeat(63 - longest))).to.equal(true)
    expect(graphileNamesFit('s'.repeat(64 - longest))).to.equal(false)
  })
})
