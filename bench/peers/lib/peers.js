'use strict'
// What each peer's client says on the wire, written against a raw WebSocket (wsclient.js)
// so that one process can hold thousands of connections:
//   ws          a JSON text frame {"type":"write","scope":"shared","id":room,"patch":{field:value},"ref":n}
//               relayed as is to the room's other connections (the shape of our own `write`).
//   y-websocket the y-protocols sync protocol as y-websocket's WebsocketProvider speaks it:
//               sync step 1 (empty state vector) on open, a step 2 answer to the server's
//               step 1, Yjs updates as messageSync/messageYjsUpdate.
//   hocuspocus  the same framed with the document name, after Hocuspocus' Auth (token) message,
//               as HocuspocusProvider does.
// A writer holds a real Y.Doc and writes with ymap.set(field, value); the update the Y.Doc
// emits is what goes on the wire. It applies the server's state at sync; with `apply` it also
// applies every update it receives, as a provider does. The load client does not: in W1 and
// W2 a writer is the only one to write its field, so its own items are all its next write
// builds on, and applying every echo and every partner's update would spend the client's core
// on work that is not the server's. check-providers.js writes a field another client wrote,
// and applies. An observer decodes each received update with
// Y.decodeUpdate and reads the map items' keys and values out of it. Every subscriber of a
// fan-out receives the same bytes, so decoded results are memoised by the exact bytes
// (a small cache keyed by the whole message): each subscriber still receives, frames and
// compares every byte, but the Yjs decoding is done once per distinct message.
const Y = require('yjs')
const encoding = require('lib0/encoding')
const decoding = require('lib0/decoding')

const EMPTY = []
let memo = new Map()
let memoOld = new Map()
function memoised (buf, decode) {
  const key = buf.toString('latin1')
  let v = memo.get(key)
  if (v === undefined) {
    v = memoOld.get(key)
    if (v === undefined) v = decode(buf)
    if (memo.size >= 65536) { memoOld = memo; memo = new Map() }
    memo.set(key, v)
  }
  return v
}

// [[field, value], ...] set by a Yjs update. A map item carries its key (parentSub) only when
// it has no origin; an item overwriting a key names the previous item of that key as its
// origin instead, so the keys of the items seen so far are remembered by item id.
const idKey = new Map()
let undecodable = 0
function updateValues (update, quiet) {
  const out = []
  const { structs } = Y.decodeUpdate(update)
  for (const s of structs) {
    if (!s.content) continue // GC, Skip
    let key = s.parentSub
    if (key == null && s.origin) key = idKey.get(s.origin.client + ':' + s.origin.clock)
    if (key == null) { if (!quiet) undecodable++; continue }
    idKey.set(s.id.client + ':' + (s.id.clock + s.length - 1), key)
    if (s.content.arr) out.push([key, s.content.arr[s.content.arr.length - 1]])
  }
  return out
}

const EMPTY_UPDATE = Y.encodeStateAsUpdate(new Y.Doc()) // [0, 0]

function yMsg (name, fn) {
  const e = encoding.createEncoder()
  if (name !== null) encoding.writeVarString(e, name)
  fn(e)
  return encoding.toUint8Array(e)
}

// A connection's protocol state. room: the document (and URL path). writer: holds a Y.Doc.
class Session {
  constructor (peer, room, writer, apply = false) {
    this.peer = peer
    this.room = room
    this.synced = false
    this.error = null
    this.ref = 0
    this.name = peer === 'hocuspocus' ? room : null
    this.apply = apply
    if (writer && peer !== 'ws') {
      this.doc = new Y.Doc()
      this.map = this.doc.getMap('m')
      this.pending = null
      this.doc.on('update', (u, origin) => { if (origin !== 'remote') this.pending = u })
    }
  }

  path () { return this.peer === 'hocuspocus' ? '/' : '/' + this.room }

  // messages to send when the WebSocket opens
  hello () {
    if (this.peer === 'ws') { this.synced = true; return EMPTY }
    const sv = this.doc ? Y.encodeStateVector(this.doc) : new Uint8Array([0])
    const step1 = yMsg(this.name, (e) => {
      encoding.writeVarUint(e, 0) // sync
      encoding.writeVarUint(e, 0) // step 1
      encoding.writeVarUint8Array(e, sv)
    })
    if (this.peer === 'y-websocket') return [step1]
    const auth = yMsg(this.name, (e) => {
      encoding.writeVarUint(e, 2) // Auth
      encoding.writeVarUint(e, 0) // Token
      encoding.writeVarString(e, '')
    })
    return [auth, step1]
  }

  // the frame that sets field to value (a string)
  write (field, value) {
    if (this.peer === 'ws') {
      return Buffer.from('{"type":"write","scope":"shared","id":"' + this.room + '","patch":{"' + field +
        '":"' + value + '"},"ref":' + (++this.ref) + '}')
    }
    this.pending = null
    this.map.set(field, value)
    const u = this.pending
    return yMsg(this.name, (e) => {
      encoding.writeVarUint(e, 0) // sync
      encoding.writeVarUint(e, 2) // update
      encoding.writeVarUint8Array(e, u)
    })
  }

  // handle one received message: returns [[field, value], ...] observed (possibly empty)
  // and, through reply(u8), sends what the protocol requires back
  receive (buf, reply) {
    if (this.peer === 'ws') {
      return memoised(buf, (b) => {
        const m = JSON.parse(b.toString())
        return m && m.patch ? Object.entries(m.patch) : EMPTY
      })
    }
    const d = decoding.createDecoder(buf)
    if (this.name !== null) {
      const n = decoding.readVarString(d)
      if (n !== this.name) return EMPTY
    }
    const type = decoding.readVarUint(d)
    if (type === 0 || type === 4) { // sync (4: Hocuspocus' SyncReply)
      const st = decoding.readVarUint(d)
      if (st === 2) { // update: the fan-out path
        if (this.doc && this.apply) { // a writer keeps its Y.Doc current, as a provider does
          const u = decoding.readVarUint8Array(d)
          Y.applyUpdate(this.doc, u, 'remote')
          return memoised(buf, () => updateValues(u))
        }
        return memoised(buf, () => updateValues(decoding.readVarUint8Array(d)))
      }
      if (st === 0) { // server's step 1: answer with our state (what the providers do)
        const sv = decoding.readVarUint8Array(d)
        const diff = this.doc ? Y.encodeStateAsUpdate(this.doc, sv) : EMPTY_UPDATE
        reply(yMsg(this.name, (e) => {
          encoding.writeVarUint(e, 0); encoding.writeVarUint(e, 1); encoding.writeVarUint8Array(e, diff)
        }))
        return EMPTY
      }
      if (st === 1) { // step 2: the server's state; we are synced
        const u = decoding.readVarUint8Array(d)
        if (this.doc) Y.applyUpdate(this.doc, u, 'remote')
        else updateValues(u, true) // learn the keys of the items already there
        this.synced = true
        return EMPTY
      }
      return EMPTY
    }
    if (this.peer === 'hocuspocus') {
      if (type === 2) { // Auth
        const at = decoding.readVarUint(d)
        if (at === 1) this.error = 'permission denied: ' + decoding.readVarString(d)
      } else if (type === 7) {
        this.error = 'closed by server: ' + decoding.readVarString(d)
      }
    }
    return EMPTY // awareness, sync status, ...
  }
}

module.exports = { Session, updateValues, undecodable: () => undecodable }
