// Fails on its first attempts, then succeeds: shows graphile-worker's retries with backoff
// (about 2.7 s, 7.4 s, 20 s … after attempts 1, 2, 3). payload.failTimes defaults to 1.
export default async function flaky(payload, helpers) {
  const failTimes = payload?.failTimes ?? 1
  if (helpers.job.attempts <= failTimes) {
    throw new Error(`flaky: upstream timed out (attempt ${helpers.job.attempts} of ${helpers.job.max_attempts})`)
  }
}
