// Resizes an image (simulated: a little CPU and some waiting).
import {createHash} from 'node:crypto'

export default async function resizeImage(payload) {
  const {url, width = 640} = payload ?? {}
  if (typeof url !== 'string') throw new Error('resize_image: payload.url must be a string')
  let digest = url
  for (let i = 0; i < 2000; i++) digest = createHash('sha256').update(digest).digest('hex')
  await new Promise((resolve) => setTimeout(resolve, 100))
  return {url, width, digest: digest.slice(0, 12)}
}
