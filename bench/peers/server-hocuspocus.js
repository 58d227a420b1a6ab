'use strict'
// The Hocuspocus server (@hocuspocus/server), in memory, no extensions.
// Usage: node server-hocuspocus.js [port]   (port 0: any; prints `listening addr=127.0.0.1:PORT`)
const fs = require('fs')
const path = require('path')
const { Server } = require('@hocuspocus/server')

const port = Number(process.argv[2] || process.env.PORT || 0)
const server = new Server({ port, address: '127.0.0.1', quiet: true, stopOnSignals: true })
server.listen().then(() => {
  const pkg = path.join(path.dirname(require.resolve('@hocuspocus/server')), '..', 'package.json')
  process.stderr.write(`@hocuspocus/server ${JSON.parse(fs.readFileSync(pkg)).version}, yjs ${require('yjs/package.json').version}\n`)
  process.stdout.write(`listening addr=127.0.0.1:${server.address.port}\n`)
})
