'use strict'
// The y-websocket server: y-websocket's own bin/server.js (v1.5.x), with the host and port
// taken from the command line and the bound address printed. setupWSConnection comes from
// y-websocket/bin/utils, the WebSocket server from the `ws` y-websocket itself depends on
// (what `npx y-websocket` runs). In memory: YPERSISTENCE is not set.
// Usage: node server-yws.js [port]   (port 0: any; prints `listening addr=127.0.0.1:PORT`)
const http = require('http')
const path = require('path')
const { setupWSConnection } = require('y-websocket/bin/utils')

const ywsDir = path.dirname(require.resolve('y-websocket/package.json'))
const wsPath = require.resolve('ws', { paths: [ywsDir] })
const WebSocket = require(wsPath)
const wsVersion = require(path.join(path.dirname(wsPath), 'package.json')).version

delete process.env.YPERSISTENCE
const port = Number(process.argv[2] || process.env.PORT || 0)
const wss = new WebSocket.Server({ noServer: true })
const server = http.createServer((request, response) => {
  response.writeHead(200, { 'Content-Type': 'text/plain' })
  response.end('okay')
})
wss.on('connection', setupWSConnection)
server.on('upgrade', (request, socket, head) => {
  wss.handleUpgrade(request, socket, head, (ws) => wss.emit('connection', ws, request))
})
server.listen(port, '127.0.0.1', () => {
  process.stderr.write(`y-websocket ${require('y-websocket/package.json').version}, ws ${wsVersion}, yjs ${require('yjs/package.json').version}\n`)
  process.stdout.write(`listening addr=127.0.0.1:${server.address().port}\n`)
})
process.on('SIGTERM', () => process.exit(0))
process.on('SIGINT', () => process.exit(0))
