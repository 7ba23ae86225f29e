// The document writer lives in the library: the console's API writes the same documents.
export {jsonDocument, prettyPayload, RawJson} from '../lib/json-document.js'

/** Largest document we colour on a terminal: beyond it, colouring costs more than it helps. */
export const MAX_COLOURED_JSON = 64 * 1024
