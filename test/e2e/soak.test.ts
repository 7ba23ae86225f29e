import {expect} from 'chai'

import {formatReport, runSoak} from '../../bench/soak/chaos.js'

describe('chaos soak (short): workers killed, PostgreSQL restarted, operators cleaning locks and retrying the DLQ', function () {
  this.timeout(600_000)

  it('every job ends in exactly one place, duplicates only from dead workers, no lock left, clean exits', async () => {
    const report = await runSoak({
      jobs: 3000,
      workers: 3,
      concurrency: 4,
      kills: 3,
      restartPostgres: true,
      operators: true,
      timeoutMs: 240_000,
      log: (m) => process.stderr.write(`      [soak] ${m}\n`),
    })
    process.stderr.write(`${formatReport(report).replace(/^/gm, '      ')}\n`)
    expect(report.missing, 'missing jobs').to.deep.equal([])
    expect(report.unexplainedDuplicates, 'unexplained duplicates').to.deep.equal([])
    expect(report.lockedAtEnd).to.equal(0)
    expect(report.queueLocksAtEnd).to.equal(0)
    expect(report.uncleanExits).to.deep.equal([])
    expect(report.kills).to.equal(3)
    expect(report.postgresRestarts).to.equal(1)
    expect(report.locksCleanRuns).to.be.greaterThan(0)
    expect(report.dlqRetryRuns).to.be.greaterThan(1)
    expect(report.completed + report.inDlq).to.be.greaterThan(2900)
    expect(report.problems).to.deep.equal([])
  })
})
