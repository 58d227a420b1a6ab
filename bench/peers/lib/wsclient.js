'use strict'
// A minimal WebSocket client (RFC 6455) over net.Socket, for opening thousands of
// connections from one process cheaply: no extensions, masked client frames,
// unmasked server frames parsed in place. Text and binary messages both arrive
// as a Buffer (a view into the socket's chunk when the frame fits in it).
const net = require('net')
const crypto = require('crypto')

let rng = (crypto.randomBytes(4).readUInt32LE(0) | 1) >>> 0
function rand32 () { // xorshift32: masking keys need not be cryptographic for a benchmark
  rng ^= rng << 13; rng >>>= 0
  rng ^= rng >>> 17
  rng ^= rng << 5; rng >>>= 0
  return rng
}

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'

class WSClient {
  // handlers: onOpen(c), onMessage(c, buf, isText), onClose(c, code, why), onError(c, err)
  constructor (host, port, path, handlers) {
    this.host = host
    this.port = port
    this.path = path
    this.h = handlers
    this.open = false
    this.closed = false
    this.rest = null // unparsed bytes
    this.frag = null // fragments of a message in progress
    this.fragOp = 0
    this.key = crypto.randomBytes(16).toString('base64')
    const s = this.sock = net.connect({ host, port })
    s.setNoDelay(true)
    s.on('connect', () => {
      s.write('GET ' + path + ' HTTP/1.1\r\nHost: ' + host + ':' + port +
        '\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ' + this.key +
        '\r\nSec-WebSocket-Version: 13\r\n\r\n')
    })
    s.on('data', (d) => this._data(d))
    s.on('error', (e) => this._fail(e))
    s.on('close', () => { if (!this.closed) this._fail(new Error('socket closed')) })
  }

  _fail (err) {
    if (this.closed) return
    this.closed = true
    this.open = false
    this.sock.destroy()
    if (this.h.onError) this.h.onError(this, err)
  }

  _data (d) {
    if (this.rest) { d = Buffer.concat([this.rest, d]); this.rest = null }
    if (!this.open) {
      const end = d.indexOf('\r\n\r\n')
      if (end < 0) { this.rest = d; return }
      const head = d.toString('latin1', 0, end)
      if (!/^HTTP\/1\.1 101/.test(head)) return this._fail(new Error('handshake refused: ' + head.split('\r\n')[0]))
      const want = crypto.createHash('sha1').update(this.key + GUID).digest('base64')
      const m = /sec-websocket-accept:\s*(\S+)/i.exec(head)
      if (!m || m[1] !== want) return this._fail(new Error('bad Sec-WebSocket-Accept'))
      this.open = true
      d = d.subarray(end + 4)
      if (this.h.onOpen) this.h.onOpen(this)
      if (this.closed) return
    }
    let off = 0
    const n = d.length
    while (n - off >= 2) {
      const b0 = d[off]; const b1 = d[off + 1]
      let len = b1 & 127
      let hl = 2
      if (b1 & 128) return this._fail(new Error('masked frame from server'))
      if (len === 126) {
        if (n - off < 4) break
        len = d.readUInt16BE(off + 2); hl = 4
      } else if (len === 127) {
        if (n - off < 10) break
        len = d.readUInt32BE(off + 2) * 4294967296 + d.readUInt32BE(off + 6); hl = 10
      }
      if (n - off < hl + len) break
      const p = d.subarray(off + hl, off + hl + len)
      off += hl + len
      const op = b0 & 15
      const fin = b0 & 128
      if (op >= 8) {
        if (op === 9) this._send(10, p) // ping -> pong
        else if (op === 8) {
          const code = p.length >= 2 ? p.readUInt16BE(0) : 1005
          this.closed = true; this.open = false
          this.sock.end()
          if (this.h.onClose) this.h.onClose(this, code, p.subarray(2).toString())
          return
        }
        continue
      }
      if (op !== 0 && !fin) { this.frag = [Buffer.from(p)]; this.fragOp = op; continue }
      if (op === 0) {
        if (!this.frag) return this._fail(new Error('continuation without start'))
        this.frag.push(Buffer.from(p))
        if (!fin) continue
        const whole = Buffer.concat(this.frag); const fop = this.fragOp
        this.frag = null
        this.h.onMessage(this, whole, fop === 1)
      } else {
        this.h.onMessage(this, p, op === 1)
      }
      if (this.closed) return
    }
    if (off < n) this.rest = Buffer.from(d.subarray(off)) // copy: the chunk may be reused
  }

  _send (op, payload) {
    if (this.closed) return false
    const len = payload.length
    const hl = len < 126 ? 2 : len < 65536 ? 4 : 10
    const f = Buffer.allocUnsafe(hl + 4 + len)
    f[0] = 128 | op
    if (hl === 2) f[1] = 128 | len
    else if (hl === 4) { f[1] = 128 | 126; f.writeUInt16BE(len, 2) } else { f[1] = 128 | 127; f.writeUInt32BE(0, 2); f.writeUInt32BE(len, 6) }
    const k = rand32()
    f.writeUInt32BE(k, hl)
    const m0 = f[hl]; const m1 = f[hl + 1]; const m2 = f[hl + 2]; const m3 = f[hl + 3]
    const o = hl + 4
    for (let i = 0; i < len; i++) {
      const m = (i & 3) === 0 ? m0 : (i & 3) === 1 ? m1 : (i & 3) === 2 ? m2 : m3
      f[o + i] = payload[i] ^ m
    }
    return this.sock.write(f)
  }

  sendText (s) { return this._send(1, Buffer.from(s)) }
  sendBinary (u8) { return this._send(2, u8) }

  close () {
    if (this.closed) return
    this.closed = true
    this.open = false
    this._send2close()
  }

  _send2close () {
    const f = Buffer.from([0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]) // close 1000, zero mask
    this.sock.end(f)
  }
}

module.exports = { WSClient }
