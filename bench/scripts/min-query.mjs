// Reference for CLI start-up: the least a Node tool can do to answer the same question —
// import pg, connect, run one query (text and parameters from the environment), print JSON.
import pg from 'pg'

const client = new pg.Client({connectionString: process.env.DATABASE_URL})
await client.connect()
const result = await client.query(process.env.QUERY_TEXT, JSON.parse(process.env.QUERY_PARAMS ?? '[]'))
await client.end()
process.stdout.write(`${JSON.stringify({entries: result.rows})}\n`)
