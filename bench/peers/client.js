'use strict'
// The Node load client for the peers: W1 fan-out, W2 tenants, W3 idle (issue 4), against a
// server already running. Prints one JSON result row on stdout; progress on stderr.
//
//   node client.js peer=ws|y-websocket|hocuspocus workload=W1|W2|W3 port=N server_pid=P [key=value ...]
//
// W1: subs=100 rate=200 (writes/s; max or 0: closed loop) lag=64 (closed loop: writes ahead of
//     what the average subscriber has observed) procs=1 (subscriber processes) duration=3 warmup=1 drain=5 conc=200 max_backlog=2000000
// W2: tenants=200 rate=5 (writes/s per connection) duration=3 warmup=1 drain=5 conc=200
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

// value: "<seq>:<send ns>:<w|m>" (w: warm-up, m: measured)
function parseEntry (e) {
  if (e.seq === undefined) {
    const p = String(e[1]).split(':')
    e.seq = Number(p[0]); e.ns = Number(p[1]); e.m = p[2] === 'm'
  }
  return e
}

// ---- W1 subscriber process ----------------------------------------------------------------
async function subProcess () {
  const count = num('count', 100)
  const RING = 1 << 20
  const seen = new Uint32Array(RING) // subscribers that observed seq (ring), for the `lo` watermark
  let lo = -1 // every subscriber here observed every seq <= lo
  let loSent = -2
  const hist = new Hist()
  let deliveries = 0; let reorders = 0; let wrong = 0
  let notify = false
  let obs = 0; let obsSent = -1 // observations of any write, for the closed loop
  const sessions = []
  for (let i = 0; i < count; i++) {
    const s = new Session(PEER, args.room, false)
    s.last = -1; s.mcount = 0
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
      s.last = e.seq
      obs++
      if (e.m) { deliveries++; s.mcount++; hist.add((now - e.ns) / 1000) }
      seen[e.seq & (RING - 1)]++
      while (seen[(lo + 1) & (RING - 1)] === count) { seen[(lo + 1) & (RING - 1)] = 0; lo++ }
    }
    if (!notify) { notify = true; setImmediate(sendLo) }
  }
  let cpu0 = 0
  process.on('message', (m) => {
    if (m.t === 'measure') cpu0 = cpuUs()
    if (m.t === 'finish') {
      const expected = m.m1 - m.m0
      let missing = 0; let subsMissing = 0
      for (const s of sessions) {
        if (s.mcount < expected) { missing += expected - s.mcount; subsMissing++ }
      }
      process.send({ t: 'result', hist: hist.toJSON(), deliveries, missing, subsMissing, reorders, wrong, undecodable: undecodable(), cpu: cpuUs() - cpu0 })
    }
    if (m.t === 'exit') process.exit(0)
  })
  const r = await connectAll(sessions, num('conc', 200), makeHandler)
  process.send({ t: 'ready', ok: r.ok, failures: r.failures, seconds: r.seconds })
}

// ---- W1 fan-out ---------------------------------------------------------------------------
async function w1 () {
  const S = num('subs', 100); const lag = num('lag', 64)
  const rate = ['max', 'closed'].includes(args.rate) ? 0 : num('rate', 200)
  const procs = Math.max(1, Math.min(num('procs', 1), S)); const duration = num('duration', 3)
  const warmup = num('warmup', 1); const drain = num('drain', 5); const conc = num('conc', 200)
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
        } else if (m.t === 'result') results.push(m)
      })
      kid.on('exit', (code) => { if (code) problems.push('subscriber process ' + k + ' exited with ' + code) })
      kids.push(kid)
    }
  })
  log('W1', S, 'subscribers synced:', subsOk, 'failed:', failures.length)
  problems.push(...summariseFailures(failures))

  // the writer
  const writer = new Session(PEER, room, true)
  const w = await connectAll([writer], 1, () => () => {})
  if (!w.ok) throw new Error('writer could not connect: ' + w.failures[0])
  const wc = writer.conn

  let seq = 0; let phase = 'w'; let skipped = 0
  const send = () => {
    wc.sendBinary(writer.write('f', seq + ':' + nowNs() + ':' + phase))
    seq++
  }
  const expectedLo = () => seq - 1
  const alive = subsOk // subscribers that can observe; a failed one would stall the watermark
  if (alive < S) problems.push('closed loop / drain watermark would stall: only ' + alive + ' of ' + S + ' subscribers connected')

  let stopAt = 0
  let running = true
  let timer = null
  const phaseEnd = () => new Promise((resolve) => { stopAt = resolve })
  if (rate) {
    // open loop at `rate` writes/s, paced by a 1 ms timer from the phase start
    let tStart = 0; let sentInPhase = 0; let phaseWrites = 0
    const tick = () => {
      if (!running) return
      const due = Math.min(phaseWrites, Math.floor((nowNs() - tStart) / 1e9 * rate) + 1)
      while (sentInPhase < due) {
        if ((seq - 1 - loMin) * S > maxBacklog) { skipped += due - sentInPhase; sentInPhase = due; break }
        send(); sentInPhase++
      }
      if (sentInPhase >= phaseWrites) { running = false; stopAt(); return }
      timer = setTimeout(tick, 1)
    }
    var runPhase = async (p, seconds) => { // eslint-disable-line no-var
      phase = p; tStart = nowNs(); sentInPhase = 0; phaseWrites = Math.round(seconds * rate); running = true
      const done = phaseEnd(); tick(); await done
    }
  } else {
    // closed loop, as bench/loadgen does it: the writer stays within `lag` writes of what the
    // average subscriber has observed, so the run measures what the server delivers rather than
    // how far its buffers grow (there is no ack to bound in flight writes by, as loadgen's
    // --window does, in these protocols)
    let until = 0
    const pump = () => {
      if (!running) return
      if (nowNs() >= until) { running = false; stopAt(); return }
      while (seq < obsSum / Math.max(1, alive) + lag) send()
    }
    onLo = pump
    var runPhase = async (p, seconds) => { // eslint-disable-line no-var, no-redeclare
      phase = p; until = nowNs() + seconds * 1e9; running = true
      const done = phaseEnd()
      const guard = setInterval(pump, 50) // ends the phase even if nothing comes back
      pump(); await done; clearInterval(guard)
    }
  }

  if (warmup > 0) await runPhase('w', warmup)
  // measured phase
  const m0 = seq
  for (const k of kids) k.send({ t: 'measure' })
  const c0 = serverCpuUs(pid); const cc0 = cpuUs(); const t0 = nowNs()
  await runPhase('m', duration)
  const tSendEnd = nowNs()
  const m1 = seq
  // drain: wait for every subscriber to observe every measured write
  let drained = loMin >= m1 - 1
  let t1 = nowNs(); let c1 = serverCpuUs(pid)
  if (!drained) {
    await new Promise((resolve) => {
      const dl = setTimeout(resolve, drain * 1000)
      onLo = () => { if (loMin >= m1 - 1) { t1 = nowNs(); c1 = serverCpuUs(pid); drained = true; clearTimeout(dl); resolve() } }
    })
    if (!drained) { t1 = nowNs(); c1 = serverCpuUs(pid) }
  }
  const cc1 = cpuUs()
  const rss = serverRssKb(pid)
  clearTimeout(timer)
  // collect
  await new Promise((resolve) => {
    const iv = setInterval(() => { if (results.length === procs) { clearInterval(iv); resolve() } }, 10)
    for (const k of kids) k.send({ t: 'finish', m0, m1 })
  })
  for (const k of kids) k.send({ t: 'exit' })
  wc.close()
  const hist = new Hist()
  let deliveries = 0; let missing = 0; let subsMissing = 0; let reorders = 0; let wrong = 0; let undec = 0; let kidCpu = 0
  for (const r of results) {
    hist.merge(r.hist); deliveries += r.deliveries; missing += r.missing; subsMissing += r.subsMissing
    reorders += r.reorders; wrong += r.wrong; undec += r.undecodable; kidCpu += r.cpu
  }
  const win = (t1 - t0) / 1e9
  const writes = m1 - m0
  if (missing) problems.push(missing + ' deliveries missing (' + subsMissing + ' of ' + S + ' subscribers short' + (drained ? '' : ', not drained within ' + drain + ' s') + ')')
  if (reorders) problems.push(reorders + ' deliveries out of order or duplicated')
  if (wrong || undec) problems.push((wrong + undec) + ' updates not understood')
  if (skipped) problems.push(skipped + ' writes not sent: more than ' + maxBacklog + ' deliveries in flight (offered rate not sustained)')
  const clientBusy = (kidCpu + (cc1 - cc0)) / 1e6 / win
  log(`W1 subs=${S} rate=${rate || 'max'}${rate ? '' : ' lag=' + lag} procs=${procs}: ${writes} writes in ${((tSendEnd - t0) / 1e9).toFixed(2)} s, window ${win.toFixed(2)} s, ${deliveries} deliveries, client CPU ${(clientBusy * 100).toFixed(0)} % of one core`)
  if (clientBusy > 0.9) problems.push(`note: the load client used ${(clientBusy * 100).toFixed(0)} % of its core; throughput and latency may be client-bound`)
  const cpu = c1 - c0
  return {
    system: PEER,
    workload: 'W1',
    params,
    deliveries_per_s: round(deliveries / win),
    writes_per_s: round(writes / ((tSendEnd - t0) / 1e9)),
    latency_us: hist.summary(),
    server_cpu_us_per_delivery: deliveries ? round(cpu / deliveries, 3) : null,
    server_rss_kb: rss,
    rss_per_conn_kb: null,
    conns_per_s: null,
    verified: missing === 0 && reorders === 0 && wrong + undec === 0 && failures.length === 0 && skipped === 0,
    problems
  }
}

// ---- W2 tenants ---------------------------------------------------------------------------
async function w2 () {
  const T = num('tenants', 200); const rate = num('rate', 5); const duration = num('duration', 3)
  const warmup = num('warmup', 1); const drain = num('drain', 5); const conc = num('conc', 200)
  const pid = num('server_pid', 0)
  const params = { tenants: T, rate } // as bench/loadgen prints them
  const problems = []
  const hist = new Hist()
  const conns = []
  for (let i = 0; i < T; i++) {
    const a = new Session(PEER, 't' + i + '-' + RUN, true); const b = new Session(PEER, 't' + i + '-' + RUN, true)
    a.field = 'a'; b.field = 'b'; a.partner = b; b.partner = a
    for (const s of [a, b]) { s.seq = 0; s.msent = 0; s.last = -1; s.mseen = 0 }
    conns.push(a, b)
  }
  let deliveries = 0; let reorders = 0; let wrong = 0
  let sentM = 0; let seenM = 0
  let onSeen = () => {}
  const makeHandler = (s) => (entries) => {
    const now = nowNs()
    for (const e0 of entries) {
      if (e0[0] !== s.partner.field) continue // our own write echoed back
      const e = parseEntry(e0)
      if (!(e.seq >= 0)) { wrong++; continue }
      if (e.seq <= s.last) { reorders++; continue }
      s.last = e.seq
      if (e.m) { deliveries++; s.mseen++; seenM++; hist.add((now - e.ns) / 1000) }
    }
    if (seenM === sentM) onSeen()
  }
  const r = await connectAll(conns, conc, makeHandler)
  log('W2', T, 'tenants,', r.ok, 'connections synced,', r.failures.length, 'failed')
  problems.push(...summariseFailures(r.failures))

  // each connection writes every 1/rate s, phases spread evenly over the period
  const period = 1e9 / rate
  const n = conns.length
  const phaseOf = (i) => (i / n) * period
  let phase = 'w'
  const write = (s) => {
    if (!s.conn.open) return
    s.conn.sendBinary(s.write(s.field, s.seq + ':' + nowNs() + ':' + phase))
    s.seq++
    if (phase === 'm') { s.msent++; sentM++ }
  }
  const tStart = nowNs()
  let next = 0; let cycle = 0
  let t0 = 0; let c0 = 0; let cc0 = 0
  const end = (warmup + duration) * 1e9
  await new Promise((resolve) => {
    const tick = () => {
      const e = nowNs() - tStart
      while (cycle * period + phaseOf(next) <= Math.min(e, end)) {
        const due = cycle * period + phaseOf(next)
        const p = due < warmup * 1e9 ? 'w' : 'm'
        if (p === 'm' && phase === 'w') { t0 = nowNs(); c0 = serverCpuUs(pid); cc0 = cpuUs() }
        phase = p
        write(conns[next])
        if (++next === n) { next = 0; cycle++ }
      }
      if (e >= end) return resolve()
      setTimeout(tick, 1)
    }
    tick()
  })
  const tSendEnd = nowNs()
  let t1 = nowNs(); let c1 = serverCpuUs(pid)
  let drained = seenM === sentM
  if (!drained) {
    await new Promise((resolve) => {
      const dl = setTimeout(resolve, drain * 1000)
      onSeen = () => { t1 = nowNs(); c1 = serverCpuUs(pid); drained = true; clearTimeout(dl); resolve() }
    })
    if (!drained) { t1 = nowNs(); c1 = serverCpuUs(pid) }
  }
  const cc1 = cpuUs()
  const rss = serverRssKb(pid)
  let missing = 0; let short = 0
  for (const s of conns) { const d = s.partner.msent - s.mseen; if (d > 0) { missing += d; short++ } }
  for (const s of conns) if (s.conn) s.conn.close()
  const win = (t1 - t0) / 1e9
  if (missing) problems.push(missing + ' deliveries missing (' + short + ' of ' + n + ' connections short' + (drained ? '' : ', not drained within ' + drain + ' s') + ')')
  if (reorders) problems.push(reorders + ' deliveries out of order or duplicated')
  if (wrong || undecodable()) problems.push((wrong + undecodable()) + ' updates not understood')
  const clientBusy = (cc1 - cc0) / 1e6 / win
  log(`W2 tenants=${T}: ${sentM} writes, window ${win.toFixed(2)} s, ${deliveries} deliveries, client CPU ${(clientBusy * 100).toFixed(0)} % of one core`)
  if (clientBusy > 0.9) problems.push(`note: the load client used ${(clientBusy * 100).toFixed(0)} % of its core; latency may be client-bound`)
  return {
    system: PEER,
    workload: 'W2',
    params,
    deliveries_per_s: round(deliveries / win),
    writes_per_s: round(sentM / ((tSendEnd - t0) / 1e9)),
    latency_us: hist.summary(),
    server_cpu_us_per_delivery: deliveries ? round((c1 - c0) / deliveries, 3) : null,
    server_rss_kb: rss,
    rss_per_conn_kb: null,
    conns_per_s: null,
    verified: missing === 0 && reorders === 0 && wrong + undecodable() === 0 && r.failures.length === 0,
    problems
  }
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
  log(`W3 conns=${N}: ${r.ok} synced in ${r.seconds.toFixed(2)} s; server RSS ${rss0} -> ${rss1} kB; server CPU ${((c1 - c0) / Math.max(1, r.ok)).toFixed(1)} us per connection set up`)
  for (const s of sessions) if (s.conn) s.conn.close()
  return {
    system: PEER,
    workload: 'W3',
    params,
    deliveries_per_s: null,
    writes_per_s: null,
    latency_us: r.hist.summary(), // W3: connection set-up time, TCP connect to synced
    server_cpu_us_per_delivery: null,
    server_rss_kb: rss1,
    rss_per_conn_kb: r.ok ? round((rss1 - rss0) / r.ok, 2) : null,
    conns_per_s: round(r.ok / r.seconds),
    verified: r.ok === N,
    problems
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
