'use strict'
// Log-linear latency histogram over integer microseconds: exact below 256 µs, then
// 128 sub-buckets per power of two (under 0.8 % error). Mergeable across processes.
const SUB = 128
const NB = 256 + 25 * SUB

function index (us) {
  if (us < 256) return us < 0 ? 0 : us
  const msb = 31 - Math.clz32(us)
  const shift = msb - 7
  return 256 + (shift - 1) * SUB + ((us >>> shift) - SUB)
}

function lowerBound (i) {
  if (i < 256) return i
  const shift = Math.floor((i - 256) / SUB) + 1
  return ((i - 256) % SUB + SUB) * 2 ** shift
}

class Hist {
  constructor () { this.b = new Float64Array(NB); this.n = 0; this.max = 0 }
  add (us) {
    us = Math.round(us)
    if (us > 0x7fffffff) us = 0x7fffffff
    this.b[index(us)]++; this.n++
    if (us > this.max) this.max = us
  }
  toJSON () { return { b: Array.from(this.b), n: this.n, max: this.max } }
  merge (o) {
    for (let i = 0; i < NB; i++) this.b[i] += o.b[i]
    this.n += o.n
    if (o.max > this.max) this.max = o.max
  }
  quantile (q) {
    if (this.n === 0) return null
    const want = Math.ceil(q * this.n)
    let acc = 0
    for (let i = 0; i < NB; i++) {
      acc += this.b[i]
      if (acc >= want) {
        if (i < 256) return i
        const lo = lowerBound(i); const hi = lowerBound(i + 1)
        return Math.min(Math.round((lo + hi) / 2), this.max)
      }
    }
    return this.max
  }
  summary () {
    if (this.n === 0) return { p50: null, p99: null, max: null }
    return { p50: this.quantile(0.5), p99: this.quantile(0.99), max: this.max }
  }
}

module.exports = { Hist }
