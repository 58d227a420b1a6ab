'use strict'
// W5, presence (issue 17): `conns` connections on one shared document, each moving its cursor
// `hz` times a second, against transportsd (the protocol's `presence`, delivered at the
// server's tick, coalesced) or y-websocket (Yjs awareness, relayed by y-websocket's server to
// every connection of the room). One load process; the server runs already (run-presence.sh).
//
//   node presence.js peer=transports|y-websocket port=N server_pid=P [conns=100 hz=20
//        duration=5 warmup=1 clk_tck=100]
//
// A state is {"c": [x, y], "t": SEND_NS}: SEND_NS is process.hrtime.bigint() at the send, so
// a receiver in this process reads the latency of every update it gets. Delivered = an
// update of another connection that reached a connection (y-websocket also echoes each update
// to its sender: those are not counted, their cost is in its CPU). Server CPU: utime+stime of
// server_pid from /proc over the measured window. Prints one JSON row on stdout.
const fs = require('fs')
const { WSClient } = require('./lib/wsclient')
const { Hist } = require('./lib/hist')
const encoding = require('lib0/encoding')
const decoding = require('lib0/decoding')

const args = {}
for (const a of process.argv.slice(2)) {
  const i = a.indexOf('=')
  if (i > 0) args[a.slice(0, i)] = a.slice(i + 1)
}
const num = (k, d) => (args[k] === undefined ? d : Number(args[k]))
const PEER = args.peer
const log = (...m) => process.stderr.write('[presence ' + PEER + '] ' + m.join(' ') + '\n')
const nowNs = () => Number(process.hrtime.bigint())
const CLK_TCK = num('clk_tck', 100)
function serverCpuUs (pid) {
  const s = fs.readFileSync('/proc/' + pid + '/stat', 'latin1')
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ')
  return (Number(f[11]) + Number(f[12])) * 1e6 / CLK_TCK
}
const cpuUs = () => { const u = process.cpuUsage(); return u.user + u.system }

const N = num('conns', 100)
const HZ = num('hz', 20)
const DURATION = num('duration', 5)
const WARMUP = num('warmup', 1)
const PORT = num('port', 0)
const PID = num('server_pid', 0)

let t0 = Infinity; let t1 = Infinity // the measured window, monotonic ns
const hist = new Hist()
let delivered = 0; let sentW = 0; let bad = 0
const problems = []

function received (conn, state, at) {
  if (at < t0 || at >= t1) return
  delivered++
  if (state && typeof state.t === 'number') hist.add((at - state.t) / 1000)
  else bad++
}

// ---- transports: the protocol's presence ----------------------------------------------------
function transportsConn (i) {
  const c = { i, id: null, ready: false }
  c.ws = new WSClient('127.0.0.1', PORT, '/ws/t' + i, {
    onOpen: () => {},
    onMessage: (_, buf) => {
      const at = nowNs()
      let v
      try { v = JSON.parse(buf.toString('utf8')) } catch (e) { bad++; return }
      const list = Array.isArray(v) ? v : [v]
      for (const m of list) {
        if (m.type === 'presence') {
          if (m.conn !== c.id) received(c, m.state, at)
        } else if (m.type === 'hello') c.id = m.conn
        else if (m.type === 'synced') c.ready = true
        else if (m.type === 'error') { problems.push('error: ' + m.code + ' ' + m.message); bad++ }
      }
    },
    onClose: (_, code) => { if (!c.done) problems.push('connection ' + i + ' closed ' + code) },
    onError: (_, e) => { if (!c.done) problems.push('connection ' + i + ': ' + e.message) }
  })
  c.move = (x, y) => {
    c.ws.sendText(JSON.stringify({ type: 'presence', scope: 'shared', id: 'doc', state: { c: [x, y], t: nowNs() } }))
  }
  return c
}

// ---- y-websocket: Yjs awareness ------------------------------------------------------------
// y-protocols: a message is varuint type (0 sync, 1 awareness) and, for awareness, a
// varUint8Array holding varuint count, then per client varuint clientID, varuint clock and the
// state as a JSON string.
function ywsConn (i) {
  const c = { i, clientID: (Math.random() * 0xffffffff) >>> 0, clock: 0, ready: true }
  c.ws = new WSClient('127.0.0.1', PORT, '/doc', {
    onOpen: () => {},
    onMessage: (_, buf) => {
      const at = nowNs()
      const d = decoding.createDecoder(new Uint8Array(buf.buffer, buf.byteOffset, buf.length))
      if (decoding.readVarUint(d) !== 1) return // sync messages: the document is not used
      const u = decoding.createDecoder(decoding.readVarUint8Array(d))
      const n = decoding.readVarUint(u)
      for (let k = 0; k < n; k++) {
        const id = decoding.readVarUint(u)
        decoding.readVarUint(u) // clock
        const state = JSON.parse(decoding.readVarString(u))
        if (id !== c.clientID) received(c, state, at)
      }
    },
    onClose: (_, code) => { if (!c.done) problems.push('connection ' + i + ' closed ' + code) },
    onError: (_, e) => { if (!c.done) problems.push('connection ' + i + ': ' + e.message) }
  })
  c.move = (x, y) => {
    const u = encoding.createEncoder()
    encoding.writeVarUint(u, 1)
    encoding.writeVarUint(u, c.clientID)
    encoding.writeVarUint(u, ++c.clock)
    encoding.writeVarString(u, JSON.stringify({ c: [x, y], t: nowNs() }))
    const e = encoding.createEncoder()
    encoding.writeVarUint(e, 1)
    encoding.writeVarUint8Array(e, encoding.toUint8Array(u))
    c.ws.sendBinary(Buffer.from(encoding.toUint8Array(e)))
  }
  return c
}

async function main () {
  if (PEER !== 'transports' && PEER !== 'y-websocket') throw new Error('peer=transports|y-websocket')
  // At most 32 handshakes in flight (transportsd closes a 65th pending one per address).
  const conns = []
  const deadline = Date.now() + 30000
  while (conns.length < N || !conns.every((c) => c.ws.open && c.ready)) {
    if (Date.now() > deadline) throw new Error('connections not ready: ' + problems.slice(0, 3).join('; '))
    const pending = conns.filter((c) => !(c.ws.open && c.ready)).length
    for (let k = pending; k < 32 && conns.length < N; k++)
      conns.push(PEER === 'transports' ? transportsConn(conns.length) : ywsConn(conns.length))
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  log(N + ' connections ready')
  // Each connection moves every 1000/HZ ms, the connections spread over the period.
  const period = 1e9 / HZ
  const start = nowNs()
  const next = conns.map((c, i) => start + (i * period) / N)
  t0 = start + WARMUP * 1e9
  t1 = t0 + DURATION * 1e9
  let c0 = null; let cc0 = 0; let c1 = null; let cc1 = 0
  await new Promise((resolve) => {
    const timer = setInterval(() => {
      const now = nowNs()
      if (c0 === null && now >= t0) { c0 = serverCpuUs(PID); cc0 = cpuUs(); t0 = now }
      if (now >= t1) {
        c1 = serverCpuUs(PID); cc1 = cpuUs(); t1 = now
        clearInterval(timer)
        resolve()
        return
      }
      for (let i = 0; i < N; i++) {
        if (now < next[i]) continue
        next[i] += period
        if (next[i] < now) next[i] = now + period // the client fell behind: skip, do not burst
        const k = Math.floor(now / 1e6)
        conns[i].move((k + i) % 1000, i)
        if (now >= t0) sentW++
      }
    }, 2)
  })
  for (const c of conns) { c.done = true; c.ws.close ? c.ws.close() : c.ws.sock.destroy() }
  const win = (t1 - t0) / 1e9
  const cpu = c1 - c0
  const clientPct = (cc1 - cc0) / 1e4 / win
  if (clientPct > 90) problems.push(`note: the load client used ${clientPct.toFixed(0)} % of its core; figures may be client-bound`)
  if (bad) problems.push(bad + ' malformed or refused messages')
  process.stdout.write(JSON.stringify({
    system: PEER === 'transports' ? 'transports' : 'y-websocket',
    workload: 'W5',
    params: { conns: N, hz: HZ },
    updates_sent_per_s: Math.round(sentW / win),
    deliveries_per_s: Math.round(delivered / win),
    latency_us: hist.summary(),
    server_cpu_us_per_delivery: delivered ? Math.round((cpu / delivered) * 1000) / 1000 : null,
    server_cpu_pct: Math.round((cpu / 1e4 / win) * 10) / 10,
    client_cpu_pct: Math.round(clientPct * 10) / 10,
    window_s: Math.round(win * 100) / 100,
    verified: delivered > 0 && bad === 0 && problems.length === 0,
    problems
  }) + '\n')
  setTimeout(() => process.exit(0), 100)
}

main().catch((e) => { log(e.stack || e.message); process.exit(1) })
