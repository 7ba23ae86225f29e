import type pg from 'pg'

export interface Description {
  paramTypes: number[]
  fields: {name: string; dataTypeID: number}[]
}

/**
 * Asks PostgreSQL to Parse and Describe a statement without executing it (what SQLx does
 * at compile time): parameter types and result columns, or the server's error.
 */
export function describeStatement(client: pg.Client, text: string): Promise<Description> {
  return new Promise((resolve, reject) => {
    let paramTypes: number[] = []
    let fields: Description['fields'] = []
    const connection = (client as unknown as {connection: NodeJS.EventEmitter}).connection
    const onParams = (msg: {dataTypeIDs: number[]}) => {
      paramTypes = msg.dataTypeIDs
    }
    connection.on('parameterDescription', onParams)
    const submittable = {
      submit(con: {parse: (m: object) => void; describe: (m: object) => void; sync: () => void}) {
        con.parse({text, name: '', types: []})
        con.describe({type: 'S', name: ''})
        con.sync()
      },
      handleRowDescription(msg: {fields: Description['fields']}) {
        fields = msg.fields.map((f) => ({name: f.name, dataTypeID: f.dataTypeID}))
      },
      handleParseComplete() {},
      // pg detaches the query on an error, so settle here; readyForQuery will not reach us.
      handleError(error: Error) {
        connection.off('parameterDescription', onParams)
        reject(error)
      },
      handleReadyForQuery() {
        connection.off('parameterDescription', onParams)
        resolve({paramTypes, fields})
      },
      handleCommandComplete() {},
      handleDataRow() {},
      handleEmptyQuery() {},
      handlePortalSuspended() {},
    }
    client.query(submittable as unknown as pg.QueryConfig)
  })
}
