'use strict'
// The plain `ws` relay: every text (or binary) message is sent as is to every other
// connection of the same room, the room being the URL path. No parsing, no state.
// Usage: node server-ws.js [port]   (port 0: any; prints `listening addr=127.0.0.1:PORT`)
const { WebSocketServer } = require('ws')

const port = Number(process.argv[2] || process.env.PORT || 0)
const rooms = new Map()
const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false })
wss.on('connection', (ws, req) => {
  const name = req.url.split('?')[0]
  let room = rooms.get(name)
  if (!room) { room = new Set(); rooms.set(name, room) }
  room.add(ws)
  ws.on('message', (data, isBinary) => {
    for (const c of room) if (c !== ws && c.readyState === 1) c.send(data, { binary: isBinary })
  })
  ws.on('close', () => { room.delete(ws); if (room.size === 0) rooms.delete(name) })
  ws.on('error', () => {})
})
wss.on('listening', () => {
  process.stdout.write(`listening addr=127.0.0.1:${wss.address().port}\n`)
})
process.on('SIGTERM', () => process.exit(0))
process.on('SIGINT', () => process.exit(0))
