// Sends an email (simulated). A payload without a recipient can never succeed, so it is
// a permanent failure: straight to the DLQ instead of 8 useless retries.
import {PermanentError} from 'backfill'

export default async function sendEmail(payload, helpers) {
  if (!payload?.to) throw new PermanentError(`send_email: no recipient in ${JSON.stringify(payload)}`)
  await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 30))
  helpers.logger.debug(`sent "${payload.subject ?? '(no subject)'}" to ${payload.to}`)
}
