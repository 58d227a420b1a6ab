'use strict'
// Checks the load client's raw protocol against the peers' own clients: y-websocket's
// WebsocketProvider and Hocuspocus' HocuspocusProvider (with `ws` as the WebSocket in Node).
// A provider writes, a raw observer (lib/peers.js) must see it; a raw writer writes, the
// provider's Y.Doc must see it. Exit status 0 when both directions work.
//   node check-providers.js peer=y-websocket|hocuspocus port=N
const Y = require('yjs')
const WebSocket = require('ws')
const { WSClient } = require('./lib/wsclient')
const { Session } = require('./lib/peers')

const args = Object.fromEntries(process.argv.slice(2).map((a) => a.split('=')))
const peer = args.peer; const port = Number(args.port)
const room = 'check-' + Math.random().toString(36).slice(2, 8)
const url = 'ws://127.0.0.1:' + port
const fail = (m) => { process.stderr.write('check-providers ' + peer + ': FAIL ' + m + '\n'); process.exit(1) }
setTimeout(() => fail('timed out'), 10000)

function provider (doc) {
  if (peer === 'y-websocket') {
    const { WebsocketProvider } = require('y-websocket')
    return new WebsocketProvider(url, room, doc, { WebSocketPolyfill: WebSocket })
  }
  const { HocuspocusProvider, HocuspocusProviderWebsocket } = require('@hocuspocus/provider')
  const websocketProvider = new HocuspocusProviderWebsocket({ url, WebSocketPolyfill: WebSocket })
  const p = new HocuspocusProvider({ websocketProvider, name: room, document: doc })
  p.attach() // a provider given its socket does not attach itself (v3)
  return p
}

function raw (writer, onEntries) {
  const s = new Session(peer, room, writer, true)
  return new Promise((resolve) => {
    s.conn = new WSClient('127.0.0.1', port, s.path(), {
      onOpen (c) { for (const m of s.hello()) c.sendBinary(m) },
      onMessage (c, buf) {
        const e = s.receive(buf, (u8) => c.sendBinary(u8))
        if (e.length) onEntries(e)
        if (s.error) fail(s.error)
        if (s.synced) resolve(s)
      },
      onClose (c, code) { fail('raw connection closed ' + code) },
      onError (c, e) { fail(e.message) }
    })
  })
}

async function main () {
  const doc = new Y.Doc()
  const p = provider(doc)
  await new Promise((resolve) => p.on('synced', resolve))
  let seenByRaw = null
  const observer = await raw(false, (e) => { for (const [k, v] of e) if (k === 'f') seenByRaw = v })
  const writer = await raw(true, () => {})
  doc.getMap('m').set('f', 'from-provider')
  await new Promise((resolve) => { const iv = setInterval(() => { if (seenByRaw === 'from-provider' && writer.map.get('f') === 'from-provider') { clearInterval(iv); resolve() } }, 5) })
  const seen = new Promise((resolve) => doc.getMap('m').observe(() => { if (doc.getMap('m').get('f') === 'from-raw') resolve() }))
  writer.conn.sendBinary(writer.write('f', 'from-raw'))
  await seen
  process.stderr.write('check-providers ' + peer + ': ok (provider -> raw observer, raw writer -> provider)\n')
  observer.conn.close(); writer.conn.close(); p.destroy()
  process.exit(0)
}
main().catch((e) => fail(e.stack))
