import {expect} from 'chai'

import {fingerprint, Fingerprinter, isFingerprint, normalizeErrorMessage} from '../../src/lib/dlq/fingerprint.js'

describe('DLQ failure fingerprints', () => {
  const cases: [string, string, string][] = [
    ['numbers', 'user 42 not found after 5000ms (attempt 3)', 'user <n> not found after <n>ms (attempt <n>)'],
    ['decimals and negatives', 'balance -12.50 below 0.01', 'balance -<n> below <n>'],
    [
      'identifier digits stay',
      's3 upload failed: sha256 mismatch in utf8 v2',
      's3 upload failed: sha256 mismatch in utf8 v2',
    ],
    ['uuids', 'order 550e8400-e29b-41d4-a716-446655440000 missing', 'order <uuid> missing'],
    ['upper-case uuids', 'id 550E8400-E29B-41D4-A716-446655440000', 'id <uuid>'],
    ['hex literals', 'segfault at 0x7ffd5c2a1b30', 'segfault at <hex>'],
    ['hex ids', 'object 5f2b9c1e8a7d6f3b not in cache', 'object <hex> not in cache'],
    ['short commit ids', 'deploy a1b2c3d failed', 'deploy <hex> failed'],
    ['hex-like words and short tokens stay', 'deadbeef cafe face e2e 0a1', 'deadbeef cafe face e2e <n>a1'],
    [
      'iso timestamps',
      'expired at 2024-05-01T10:20:30.123Z, now 2024-05-02 08:00:00+02:00',
      'expired at <ts>, now <ts>',
    ],
    ['dates', 'no rate for 2024-05-01', 'no rate for <ts>'],
    [
      'double quotes',
      'duplicate key value violates unique constraint "users_email_key"',
      'duplicate key value violates unique constraint "<v>"',
    ],
    ['single quotes', "can't find 'report-7.pdf' in bucket", "can't find '<v>' in bucket"],
    ['apostrophes stay', "it's the user's fault", "it's the user's fault"],
    ['backticks', 'column `total` is null', 'column `<v>` is null'],
    [
      'emails',
      'SMTP 550 mailbox unavailable for ada.lovelace+x@example.co.uk',
      'SMTP <n> mailbox unavailable for <email>',
    ],
    ['urls', 'GET https://api.example.com/v1/users/42?x=1 returned 503', 'GET <url> returned <n>'],
    ['ip and port', 'connect ECONNREFUSED 10.0.12.7:5432', 'connect ECONNREFUSED <ip>'],
    ['first line only', 'Error: boom 1\n    at handler (/app/index.js:10:5)', 'Error: boom <n>'],
    ['whitespace collapsed', '  too   many\tspaces  ', 'too many spaces'],
    ['empty', '', ''],
  ]
  for (const [name, input, expected] of cases) {
    it(`normalises ${name}`, () => {
      expect(normalizeErrorMessage(input)).to.equal(expected)
    })
  }

  it('only looks at the first 300 characters', () => {
    const long = `${'a'.repeat(300)} tail that differs`
    expect(normalizeErrorMessage(long)).to.equal('a'.repeat(300))
  })

  it('same failure with different volatile parts → same fingerprint; different task or message → different', () => {
    const a = fingerprint('send_email', 'SMTP 421 try again later for user 12 at 2024-01-01T00:00:00Z')
    const b = fingerprint('send_email', 'SMTP 421 try again later for user 99 at 2024-03-05T10:11:12Z')
    const otherTask = fingerprint('send_sms', 'SMTP 421 try again later for user 12 at 2024-01-01T00:00:00Z')
    const otherError = fingerprint('send_email', 'mailbox full for user 12')
    expect(a.fingerprint).to.equal(b.fingerprint)
    expect(a.template).to.equal('SMTP <n> try again later for user <n> at <ts>')
    expect(otherTask.fingerprint).not.to.equal(a.fingerprint)
    expect(otherError.fingerprint).not.to.equal(a.fingerprint)
    expect(isFingerprint(a.fingerprint)).to.equal(true)
  })

  it('is stable (a fingerprint printed today selects the same group tomorrow)', () => {
    expect(fingerprint('send_email', 'SMTP 421 try again later').fingerprint).to.equal('272ddfb5d0a6') // md5('send_email\x1fSMTP <n> try again later')[:12]
  })

  it('null and empty messages share a group per task', () => {
    expect(fingerprint('t', null).fingerprint).to.equal(fingerprint('t', '').fingerprint)
  })

  it('the cached Fingerprinter agrees with fingerprint(), also past its capacity', () => {
    const cached = new Fingerprinter(3)
    const messages = ['a 1', 'b 2', 'c 3', 'd 4', 'a 5', 'e "x"', 'a 1']
    for (const m of messages) expect(cached.of('task', m)).to.deep.equal(fingerprint('task', m))
  })

  it('accepts only 12 lower-case hex characters as a fingerprint', () => {
    expect(isFingerprint('0123456789ab')).to.equal(true)
    expect(isFingerprint('0123456789AB')).to.equal(false)
    expect(isFingerprint('0123456789a')).to.equal(false)
    expect(isFingerprint('0123456789abz')).to.equal(false)
  })
})
