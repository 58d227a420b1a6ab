'use strict'
// The Node load client for the peers: W1 fan-out, W2 tenants, W3 idle (issue 4), against a
// server already running. Prints one JSON result row on stdout; progress on stderr.
//
//   node client.js peer=ws|y-websocket|hocuspocus workload=W1|W2|W3 port=N server_pid=P [key=value ...]
//
// W1: subs=100 rate=200 (writes/s; max or 0: closed loop) lag=64 (closed loop: writes ahead of
//     what the average subscriber has observed) procs=1 (subscriber processes) duration=3 warmup=1
//     drain=15 conc=200 max_backlog=2000000
// W2: tenants=200 rate=5 (writes/s per connection) duration=3 warmup=1 drain=15 conc=200
// W3: conns=2000 conc=200 settle=1
//
// Latency: the writer puts process.hrtime.bigint() (CLOCK_MONOTONIC, shared by every process
// on the machine) into the value it sets; an observer subtracts it from its own clock when the
// frame arrives. Server CPU: utime+stime of server_pid from /proc/PID/stat over the measured
// window, in clock ticks of `getconf CLK_TCK`.
const fs = require('fs')
const { fork, execFileSync } = require('child_process')
const { WSClient } = require('./lib/wsclient')
const { Session, undecodable } = require('./lib/peers')
const { Hist } = require('./lib/hist')

const args = {}
for (const a of process.argv.slice(2)) {
  const i = a.indexOf('=')
  if (i > 0) args[a.slice(0, i)] = a.slice(i + 1)
  else args[a] = true
}
const num = (k, d) => (args[k] === undefined ? d : Number(args[k]))
const log = (...m) => process.stderr.write('[client ' + (args.peer || '') + (args['--sub'] ? ' sub' : '') + '] ' + m.join(' ') + '\n')
const nowNs = () => Number(process.hrtime.bigint())
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

const HOST = '127.0.0.1'
const RUN = args.run || Math.random().toString(36).slice(2, 8) // room names differ between runs on one server
const PORT = num('port', 0)
const PEER = args.peer

// ---- the server process, from /proc ------------------------------------------------------
let CLK_TCK = num('clk_tck', 0)
if (!CLK_TCK) { try { CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString()) } catch (e) { CLK_TCK = 100 } }
function serverCpuUs (pid) {
  if (!pid) return null
  const s = fs.readFileSync('/proc/' + pid + '/stat', 'latin1')
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ')
  return (Number(f[11]) + Number(f[12])) * 1e6 / CLK_TCK
}
function serverRssKb (pid) {
  if (!pid) return null
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync('/proc/' + pid + '/status', 'latin1'))
  return m ? Number(m[1]) : null
}
const cpuUs = () => { const u = process.cpuUsage(); return u.user + u.system }

// ---- connections ------------------------------------------------------------------------
// Opens one connection for session; resolves when the session is synced (or fails).
function connect (session, onEntries) {
  return new Promise((resolve) => {
    let done = false
    const finish = (ok) => { if (!done) { done = true; resolve(ok) } }
    const c = new WSClient(HOST, PORT, session.path(), {
      onOpen (c) {
        for (const m of session.hello()) c.sendBinary(m)
        if (session.synced) finish(true)
      },
      onMessage (c, buf) {
        const e = session.receive(buf, (u8) => c.sendBinary(u8))
        if (e.length) onEntries(e)
        if (session.error) { c.failure = session.error; finish(false) }
        if (session.synced) finish(true)
      },
      onClose (c, code, why) { c.failure = c.failure || ('closed by server ' + code + ' ' + why); finish(false) },
      onError (c, err) { c.failure = c.failure || err.message; finish(false) }
    })
    session.conn = c
  })
}

// Opens sessions with at most conc handshakes in flight; returns { ok, failures[], setupHist, seconds }
async function connectAll (sessions, conc, makeHandler) {
  const hist = new Hist()
  const failures = []
  let next = 0; let ok = 0
  const t0 = nowNs()
  async function lane () {
    while (next < sessions.length) {
      const s = sessions[next++]
      const a = nowNs()
      const good = await connect(s, makeHandler(s))
      if (good) { ok++; hist.add((nowNs() - a) / 1000) } else failures.push(s.conn.failure || 'failed')
    }
  }
  const lanes = []
  for (let i = 0; i < Math.min(conc, sessions.length); i++) lanes.push(lane())
  await Promise.all(lanes)
  return { ok, failures, hist, seconds: (nowNs() - t0) / 1e9 }
}

function summariseFailures (failures) {
  const by = new Map()
  for (const f of failures) by.set(f, (by.get(f) || 0) + 1)
  return Array.from(by, ([f, n]) => n + ' connection(s) failed: ' + f)
}

// value: "<seq>:<send ns>"
function parseEntry (e) {
  if (e.seq === undefined) {
    const p = String(e[1]).split(':')
    e.seq = Number(p[0]); e.ns = Number(p[1])
  }
  return e
}

// The measured window, as bench/loadgen has it: [t0, t1) on the monotonic clock, fixed in
// advance (warm-up, then `duration` seconds). Deliveries arriving in it are counted and their
// latencies recorded, whichever write they belong to; the server's CPU is read at t0 and t1.
// Then writing stops and the drain waits for every write to reach every observer.

// ---- W1 subscriber process ----------------------------------------------------------------
async function subProcess () {
  const count = num('count', 100)
  const RING = 1 << 20
  const seen = new Uint32Array(RING) // subscribers that observed seq (ring), for the `lo` watermark
  let lo = -1 // every subscriber here observed every seq <= lo
  let loSent = -2
  const hist = new Hist()
  let delW = 0; let reorders = 0; let wrong = 0
  let notify = false
  let obs = 0; let obsSent = -1 // observations of any write, for the closed loop
  let t0 = Infinity; let t1 = Infinity
  const sessions = []
  for (let i = 0; i < count; i++) {
    const s = new Session(PEER, args.room, false)
    s.last = -1; s.count = 0
    sessions.push(s)
  }
  process.on('disconnect', () => process.exit(0)) // the coordinator is gone
  const sendLo = () => {
    notify = false
    if (!process.connected) return
    if (lo !== loSent || obs !== obsSent) { loSent = lo; obsSent = obs; process.send({ t: 'lo', lo, obs }) }
  }
  const makeHandler = (s) => (entries) => {
    const now = nowNs()
    for (const e0 of entries) {
      if (e0[0] !== 'f') continue
      const e = parseEntry(e0)
      if (!(e.seq >= 0)) { wrong++; continue }
      if (e.seq <= s.last) { reorders++; continue }
      s.last = e.seq; s.count++
      obs++
      if (now >= t0 && now < t1) { delW++; hist.add((now - e.ns) / 1000) }
      seen[e.seq & (RING - 1)]++
      while (seen[(lo + 1) & (RING - 1)] === count) { seen[(lo + 1) & (RING - 1)] = 0; lo++ }
    }
    if (!notify) { notify = true; setImmediate(sendLo) }
  }
  let cpu0 = 0; let cpu1 = 0
  process.on('message', (m) => {
    if (m.t === 'window') {
      t0 = m.t0; t1 = m.t1
      setTimeout(() => { cpu0 = cpuUs() }, Math.max(0, (t0 - nowNs()) / 1e6))
      setTimeout(() => { cpu1 = cpuUs() }, Math.max(0, (t1 - nowNs()) / 1e6))
      process.send({ t: 'window-ok' })
    }
    if (m.t === 'finish') {
      if (!cpu1) cpu1 = cpuUs() // the finish came before this process's t1 timer
      let missing = 0; let short = 0
      for (const s of sessions) if (s.count < m.writes) { missing += m.writes - s.count; short++ }
      process.send({ t: 'result', hist: hist.toJSON(), delW, missing, short, reorders, wrong, undecodable: undecodable(), cpu: cpu1 - cpu0 })
    }
    if (m.t === 'exit') process.exit(0)
  })
  const r = await connectAll(sessions, num('conc', 200), makeHandler)
  process.send({ t: 'ready', ok: r.ok, failures: r.failures, seconds: r.seconds })
}

// what happens at t0 and t1 on the coordinator's side
function windowProbe (pid, t0, t1) {
  // a0, a1: when the samples were actually taken (a busy event loop runs timers late)
  const w = { c0: null, c1: null, cc0: 0, cc1: 0, rss: null, started: false, ended: false, a0: 0, a1: 0 }
  w.ready = new Promise((resolve) => {
    setTimeout(() => { w.c0 = serverCpuUs(pid); w.cc0 = cpuUs(); w.a0 = nowNs(); w.started = true }, Math.max(0, (t0 - nowNs()) / 1e6))
    setTimeout(() => {
      w.c1 = serverCpuUs(pid); w.cc1 = cpuUs(); w.a1 = nowNs(); w.rss = serverRssKb(pid); w.ended = true; resolve()
    }, Math.max(0, (t1 - nowNs()) / 1e6))
  })
  return w
}

function row (workload, params, f) {
  const win = f.win
  const cpu = f.cpuUs
  const clientPct = f.clientCpuUs / 1e4 / win
  if (clientPct > 90) f.problems.push(`note: the load client used ${clientPct.toFixed(0)} % of its core; throughput and latency may be client-bound`)
  const verified = f.ok && f.delW > 0
  if (f.ok && f.delW === 0) f.problems.push('nothing was delivered in the measured window')
  return {
    system: PEER,
    workload,
    params,
    deliveries_per_s: Math.round(f.delW / win),
    writes_per_s: Math.round(f.writesW / win),
    latency_us: f.hist.summary(),
    server_cpu_us_per_delivery: f.delW ? round(cpu / f.delW, 3) : null,
    server_rss_kb: f.rss,
    rss_per_conn_kb: null,
    conns_per_s: null,
    verified,
    problems: f.problems,
    // beyond the schema, as bench/loadgen adds them
    server_cpu_pct: round(cpu / 1e4 / win, 1),
    window_s: round(win, 2),
    deliveries: f.delW,
    latency_samples: f.hist.n,
    client_cpu_pct: round(clientPct, 1)
  }
}

// ---- W1 fan-out ---------------------------------------------------------------------------
async function w1 () {
  const S = num('subs', 100); const lag = num('lag', 64)
  const rate = ['max', 'closed'].includes(args.rate) ? 0 : num('rate', 200)
  const procs = Math.max(1, Math.min(num('procs', 1), S)); const duration = num('duration', 3)
  const warmup = num('warmup', 1); const drain = num('drain', 15); const conc = num('conc', 200)
  const maxBacklog = num('max_backlog', 2000000)
  const pid = num('server_pid', 0)
  const params = { subs: S, rate: rate || 'max' } // as bench/loadgen prints them: rows are matched on params
  const problems = []
  const room = 'w1-' + RUN

  // subscribers, in procs processes
  const kids = []
  const los = []; const obss = []
  let loMin = -1; let obsSum = 0
  let onLo = () => {}
  const results = []
  let readyCount = 0; let subsOk = 0; const failures = []
  let winOk = 0
  await new Promise((resolve) => {
    for (let k = 0; k < procs; k++) {
      const count = Math.floor(S / procs) + (k < S % procs ? 1 : 0)
      const kid = fork(__filename, ['--sub', 'peer=' + PEER, 'port=' + PORT, 'room=' + room, 'count=' + count,
        'conc=' + Math.max(1, Math.floor(conc / procs))], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] })
      los.push(-1); obss.push(0)
      kid.on('message', (m) => {
        if (m.t === 'ready') {
          subsOk += m.ok; failures.push(...m.failures)
          if (++readyCount === procs) resolve()
        } else if (m.t === 'lo') {
          los[k] = m.lo; obsSum += m.obs - obss[k]; obss[k] = m.obs
          let mn = Infinity; for (const x of los) if (x < mn) mn = x
          loMin = mn
          onLo()
        } else if (m.t === 'window-ok') winOk++
        else if (m.t === 'result') results.push(m)
      })
      kid.on('exit', (code) => { if (code) problems.push('subscriber process ' + k + ' exited with ' + code) })
      kids.push(kid)
    }
  })
  log('W1', S, 'subscribers synced:', subsOk, 'failed:', failures.length)
  problems.push(...summariseFailures(failures))
  const alive = Math.max(1, subsOk)

  // the writer
  const writer = new Session(PEER, room, true)
  const w = await connectAll([writer], 1, () => () => {})
  if (!w.ok) throw new Error('writer could not connect: ' + w.failures[0])
  const wc = writer.conn

  // the window, fixed in advance and known to every subscriber process before writing starts
  const tStart = nowNs() + 20e6
  const t0 = tStart + warmup * 1e9; const t1 = t0 + duration * 1e9
  for (const k of kids) k.send({ t: 'window', t0, t1 })
  while (winOk < procs) await sleep(1)
  const probe = windowProbe(pid, t0, t1)
  await sleep(Math.max(0, (tStart - nowNs()) / 1e6))

  let seq = 0; let skipped = 0; let writesW = 0
  const send = () => {
    const now = nowNs()
    wc.sendBinary(writer.write('f', seq + ':' + now))
    if (now >= t0 && now < t1) writesW++
    seq++
  }
  await new Promise((resolve) => {
    if (rate) {
      // offered rate: write k is due at tStart + k/rate; a late timer catches up
      let due = 0
      const tick = () => {
        const now = nowNs()
        if (now >= t1) return resolve()
        const target = Math.floor((now - tStart) / 1e9 * rate) + 1
        while (due < target) {
          due++
          if ((seq - 1 - loMin) * S > maxBacklog) { skipped++; continue }
          send()
        }
        setTimeout(tick, 1)
      }
      tick()
    } else {
      // closed loop, as bench/loadgen does it: the writer stays within `lag` writes of what the
      // average subscriber has observed, so the run measures what the server delivers rather
      // than how far its buffers grow (these protocols have no ack to bound writes in flight by,
      // as loadgen's --window does for ours)
      const pump = () => {
        if (nowNs() >= t1) { onLo = () => {}; clearInterval(guard); return resolve() }
        while (seq < obsSum / alive + lag) send()
      }
      const guard = setInterval(pump, 20) // ends the phase even if nothing comes back
      onLo = pump
      pump()
    }
  })
  await probe.ready
  // drain: every subscriber observes every write
  const writes = seq
  if (loMin < writes - 1) {
    await new Promise((resolve) => {
      const dl = setTimeout(resolve, drain * 1000)
      onLo = () => { if (loMin >= writes - 1) { clearTimeout(dl); resolve() } }
    })
  }
  const drained = loMin >= writes - 1
  await new Promise((resolve) => {
    const iv = setInterval(() => { if (results.length === procs) { clearInterval(iv); resolve() } }, 10)
    for (const k of kids) k.send({ t: 'finish', writes })
  })
  for (const k of kids) k.send({ t: 'exit' })
  wc.close()
  const hist = new Hist()
  let delW = 0; let missing = 0; let short = 0; let reorders = 0; let wrong = 0; let undec = 0; let kidCpu = 0
  for (const r of results) {
    hist.merge(r.hist); delW += r.delW; missing += r.missing; short += r.short
    reorders += r.reorders; wrong += r.wrong; undec += r.undecodable; kidCpu += r.cpu
  }
  if (missing) problems.push(missing + ' deliveries missing (' + short + ' of ' + S + ' subscribers short' + (drained ? '' : ', not drained within ' + drain + ' s') + ')')
  if (reorders) problems.push(reorders + ' deliveries out of order or duplicated')
  if (wrong || undec) problems.push((wrong + undec) + ' updates not understood')
  if (skipped) problems.push(skipped + ' writes not sent: more than ' + maxBacklog + ' deliveries in flight (offered rate not sustained)')
  const win = (t1 - t0) / 1e9
  const late = Math.max(probe.a0 - t0, probe.a1 - t1) / 1e9
  if (late > 0.01 * win) problems.push(`note: the server's CPU was sampled up to ${(late * 1000).toFixed(0)} ms off the window's ends (a busy client)`)
  const r = row('W1', params, {
    win, delW, writesW, hist, cpuUs: probe.c1 - probe.c0, rss: probe.rss, problems,
    clientCpuUs: kidCpu + probe.cc1 - probe.cc0,
    ok: missing === 0 && reorders === 0 && wrong + undec === 0 && failures.length === 0 && skipped === 0
  })
  log(`W1 subs=${S} rate=${rate || 'max'}${rate ? '' : ' lag=' + lag} procs=${procs}: ${writes} writes, ${delW} deliveries in ${win.toFixed(2)} s, server ${r.server_cpu_pct} %, client ${r.client_cpu_pct} % of a core` + (drained ? '' : ', NOT drained'))
  return r
}

// ---- W2 tenants ---------------------------------------------------------------------------
async function w2 () {
  const T = num('tenants', 200); const rate = num('rate', 5); const duration = num('duration', 3)
  const warmup = num('warmup', 1); const drain = num('drain', 15); const conc = num('conc', 200)
  const pid = num('server_pid', 0)
  const params = { tenants: T, rate } // as bench/loadgen prints them
  const problems = []
  const hist = new Hist()
  const conns = []
  for (let i = 0; i < T; i++) {
    const a = new Session(PEER, 't' + i + '-' + RUN, true); const b = new Session(PEER, 't' + i + '-' + RUN, true)
    a.field = 'a'; b.field = 'b'; a.partner = b; b.partner = a
    for (const s of [a, b]) { s.seq = 0; s.last = -1; s.seen = 0 }
    conns.push(a, b)
  }
  let probe = null // W2 runs in one process: the window is exactly when the server's CPU was sampled
  let delW = 0; let reorders = 0; let wrong = 0
  let sentAll = 0; let seenAll = 0
  let onSeen = () => {}
  const makeHandler = (s) => (entries) => {
    const now = nowNs()
    for (const e0 of entries) {
      if (e0[0] !== s.partner.field) continue // our own write echoed back
      const e = parseEntry(e0)
      if (!(e.seq >= 0)) { wrong++; continue }
      if (e.seq <= s.last) { reorders++; continue }
      s.last = e.seq; s.seen++; seenAll++
      if (probe && probe.started && !probe.ended) { delW++; hist.add((now - e.ns) / 1000) }
    }
    if (seenAll === sentAll) onSeen()
  }
  const r = await connectAll(conns, conc, makeHandler)
  log('W2', T, 'tenants,', r.ok, 'connections synced,', r.failures.length, 'failed')
  problems.push(...summariseFailures(r.failures))

  // each connection writes every 1/rate s, the phases spread evenly over the period
  const period = 1e9 / rate
  const n = conns.length
  const tStart = nowNs()
  const t0 = tStart + warmup * 1e9; const t1 = t0 + duration * 1e9
  probe = windowProbe(pid, t0, t1)
  let writesW = 0
  let next = 0; let cycle = 0
  await new Promise((resolve) => {
    const tick = () => {
      const now = nowNs()
      const e = Math.min(now, t1) - tStart
      while (cycle * period + (next / n) * period <= e) {
        const s = conns[next]
        if (s.conn.open) {
          s.conn.sendBinary(s.write(s.field, s.seq + ':' + nowNs()))
          s.seq++; sentAll++
          if (probe.started && !probe.ended) writesW++
        }
        if (++next === n) { next = 0; cycle++ }
      }
      if (now >= t1) return resolve()
      setTimeout(tick, 1)
    }
    tick()
  })
  await probe.ready
  if (seenAll !== sentAll) {
    await new Promise((resolve) => {
      const dl = setTimeout(resolve, drain * 1000)
      onSeen = () => { clearTimeout(dl); resolve() }
    })
  }
  const drained = seenAll === sentAll
  let missing = 0; let short = 0
  for (const s of conns) { const d = s.partner.seq - s.seen; if (d > 0) { missing += d; short++ } }
  for (const s of conns) if (s.conn) s.conn.close()
  if (missing) problems.push(missing + ' deliveries missing (' + short + ' of ' + n + ' connections short' + (drained ? '' : ', not drained within ' + drain + ' s') + ')')
  if (reorders) problems.push(reorders + ' deliveries out of order or duplicated')
  if (wrong || undecodable()) problems.push((wrong + undecodable()) + ' updates not understood')
  const win = (probe.a1 - probe.a0) / 1e9
  if (writesW / win < 0.95 * rate * n) problems.push(`note: the load client sent ${Math.round(writesW / win)} of the ${rate * n} writes/s offered; its core, not the server, set the pace`)
  const out = row('W2', params, {
    win, delW, writesW, hist, cpuUs: probe.c1 - probe.c0, rss: probe.rss, problems,
    clientCpuUs: probe.cc1 - probe.cc0,
    ok: missing === 0 && reorders === 0 && wrong + undecodable() === 0 && r.failures.length === 0
  })
  log(`W2 tenants=${T}: ${sentAll} writes, ${delW} deliveries in ${win.toFixed(2)} s, server ${out.server_cpu_pct} %, client ${out.client_cpu_pct} % of a core` + (drained ? '' : ', NOT drained'))
  return out
}

// ---- W3 idle ------------------------------------------------------------------------------
async function w3 () {
  const N = num('conns', 2000); const conc = num('conc', 200); const settle = num('settle', 1)
  const pid = num('server_pid', 0)
  const params = { conns: N }
  const problems = []
  await sleep(200)
  const rss0 = serverRssKb(pid); const c0 = serverCpuUs(pid)
  const sessions = []
  for (let i = 0; i < N; i++) sessions.push(new Session(PEER, 'i' + i + '-' + RUN, false))
  const r = await connectAll(sessions, conc, () => () => {})
  const c1 = serverCpuUs(pid)
  await sleep(settle * 1000)
  const rss1 = serverRssKb(pid)
  problems.push(...summariseFailures(r.failures))
  const cpuPerConn = (c1 - c0) / Math.max(1, r.ok)
  log(`W3 conns=${N}: ${r.ok} synced in ${r.seconds.toFixed(2)} s; server RSS ${rss0} -> ${rss1} kB; server CPU ${cpuPerConn.toFixed(1)} us per connection set up`)
  for (const s of sessions) if (s.conn) s.conn.close()
  return {
    system: PEER,
    workload: 'W3',
    params,
    deliveries_per_s: null,
    writes_per_s: null,
    latency_us: null,
    server_cpu_us_per_delivery: null,
    server_rss_kb: rss1,
    rss_per_conn_kb: r.ok ? round((rss1 - rss0) / r.ok, 2) : null,
    conns_per_s: Math.round(r.ok / r.seconds),
    verified: r.ok === N,
    problems,
    // beyond the schema
    server_rss_before_kb: rss0,
    setup_us: r.hist.summary(), // TCP connect to synced, per connection
    server_cpu_us_per_conn: round(cpuPerConn, 1)
  }
}

function round (x, d = 1) { const f = 10 ** d; return Math.round(x * f) / f }

async function main () {
  if (args['--sub']) return subProcess()
  if (!['ws', 'y-websocket', 'hocuspocus'].includes(PEER)) throw new Error('peer= must be ws, y-websocket or hocuspocus')
  if (!PORT) throw new Error('port= is required')
  const wl = String(args.workload || '').toUpperCase()
  const row = wl === 'W1' ? await w1() : wl === 'W2' ? await w2() : wl === 'W3' ? await w3() : null
  if (!row) throw new Error('workload= must be W1, W2 or W3')
  process.stdout.write(JSON.stringify(row) + '\n', () => process.exit(0))
}

main().catch((e) => { log('error:', e && e.stack ? e.stack : e); process.exit(2) })
