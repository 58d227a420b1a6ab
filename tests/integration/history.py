"""A Jepsen-style history of writes and what clients saw, and the checks run on it.

Issue 18 asks for "a history of every write and its outcome across nodes, checked for lost
acked writes, duplicates, revs going back, and divergence". This module is that history and
those checks. It assumes nothing about how many daemons there are: every record names its
client, its connection and the node (daemon) it went through, and final reads are kept per
node, so one test can use it on one transportsd today and on three daemons sharing a Redis.

Recording (a test calls these as things happen, in the order its client sees them; one
History may be shared by threads):

- `connect(client, node, conn, resume)`: a new connection of a client. `resume=False` starts
  a new subscription: what the client held before is forgotten. `resume=True` continues it:
  the revs the client then sees must carry on from the ones it held.
- `invoke(client, node, conn, model, ref, patch, marks)`: a write was sent. `marks` is the
  part of the patch that identifies this write ({field: value}, top-level fields of the
  model no other write sets, with integer or string values): the checks look for it in
  patches and final values. Returns
  the write's id, `client#ref` (the protocol's exactly-once identity: a client id and a ref).
- `resend(wid, node, conn)`: the same write (same client id and ref) sent again after a
  reconnect.
- `ok(wid, rev, from_rev)`, `fail(wid, code, message)`, `info(wid, reason)`: how an attempt
  ended: an `ack` (with its `from` when it has one), an `error` (a definite refusal: the
  protocol says a refused write changed nothing), or unknown (the connection died before an
  answer: it may or may not have been applied).
- `snapshot(client, node, conn, model, rev, value)`, `patch(client, node, conn, model,
  from_rev, rev, patch, origin)`: what a client was sent, in the order it came.
- `initial(model, rev, value)`: a model's state before any write (optional; enables the
  rev accounting of `check_duplicates`).
- `final(node, model, rev, value)`: a read of a model, after every writer finished, from one
  node (a fresh connection's snapshot).

A write's outcome: `ok` when any attempt was acked; else `fail` when the last answered
attempt was refused with a code other than `duplicate` (by the exactly-once rules an earlier
attempt that had been applied would have been answered with its own ack, so a refusal speaks
for the write id); else `info`.

Checks (each returns a list of Anomaly; `check_all` runs them all):

- `check_lost`: an ok write whose marks are missing from a node's final value, whose ack
  names a rev past the node's final rev, or whose ack rev's published patch does not carry
  it; a failed write whose marks are in a final value or in a patch.
- `check_duplicates`: a write's marks set by patches at two revs; two acks of one write id
  that name different revs, or an ack naming a later rev than the patch that set the
  write's marks (a resend applied again); and, for models with an `initial`
  record, a final rev that is not the initial rev plus the number of writes present (a
  write applied twice adds a rev and no new mark; this needs every write to change its model
  and nobody else to write it).
- `check_revs`: per client and model, within one subscription: a rev that goes back or
  repeats, a patch whose `from` is not the rev held (a gap on a live stream), an ack naming a
  rev the client does not hold; and across all clients: one (model, rev) published with two
  different patches (a rev reused, e.g. for another change after a crash).
- `check_divergence`: every node's final read of a model equal in rev and value (and every
  node read every model), and every value a client's replica had at (model, rev) equal to
  every other value known at that (model, rev) (snapshots, replicas, final reads).
- `check_distinct_ack_revs`: two different ok writes to one model acked with the same rev.

The client stream checks follow docs/protocol.md, "Keeping a replica": a patch applies when
its `from` is the rev held; a private write's ack with `from` applies the writer's own patch
when its rev is above the rev held (an ack at or below it is a resend answered again); a
client resumes only when a connection opens (a resume sent on a live connection may repeat
patches, which `check_revs` would report).

`dump(path)` writes the history as JSON lines and `History.load(path)` reads it back, so a
failing run's history can be kept and checked again.
"""

import json
import threading
import time

from harness import merge_patch  # RFC 7396, as every other test applies it

# Refusals that do not say "not applied" for the write id: `duplicate` answers a ref whose
# outcome the server forgot (the first attempt may have been applied).
INDEFINITE_CODES = frozenset(["duplicate"])


def model_key(scope, id, tenant=None):
    """A model's name in the history: `shared/<id>`, or `private/<tenant>/<id>` (private ids
    are per tenant)."""
    if scope == "shared":
        return "shared/%s" % id
    if tenant is None:
        raise ValueError("a private model needs its tenant")
    return "private/%s/%s" % (tenant, id)


def _canon(v):
    return json.dumps(v, sort_keys=True, separators=(",", ":"))


class Anomaly:
    """One finding: a kind (lost, failed-applied, duplicate, rev-back, gap, rev-reuse,
    divergence, ack-rev-shared, wrong-ack-rev, incomplete), the model, a sentence, and the
    history events (their indexes) it rests on."""

    def __init__(self, kind, model, detail, events=()):
        self.kind = kind
        self.model = model
        self.detail = detail
        self.events = list(events)

    def __repr__(self):
        return "Anomaly(%s, %s: %s%s)" % (
            self.kind, self.model, self.detail,
            " [events %s]" % ",".join(str(i) for i in self.events) if self.events else "")

    __str__ = __repr__


class History:

    def __init__(self):
        self.events = []
        self._lock = threading.RLock()
        self._writes = {}   # wid -> the invoke event
        self._sent = {}     # wid -> (node, conn) of its latest attempt

    # -- recording ----------------------------------------------------------

    def _add(self, ev):
        with self._lock:
            ev["i"] = len(self.events)
            ev["t"] = time.monotonic()
            self.events.append(ev)
            return ev

    def connect(self, client, node, conn, resume=False):
        self._add({"type": "connect", "client": client, "node": node, "conn": conn,
                   "resume": bool(resume)})

    def invoke(self, client, node, conn, model, ref, patch, marks=None):
        wid = "%s#%d" % (client, ref)
        with self._lock:
            if wid in self._writes:
                raise ValueError("write %s invoked twice (use resend)" % wid)
            ev = self._add({"type": "invoke", "client": client, "node": node, "conn": conn,
                            "model": model, "wid": wid, "ref": ref, "patch": patch,
                            "marks": dict(marks or {})})
            self._writes[wid] = ev
            self._sent[wid] = (node, conn)
        return wid

    def resend(self, wid, node, conn):
        w = self._write(wid)
        self._add({"type": "resend", "client": w["client"], "node": node, "conn": conn,
                   "model": w["model"], "wid": wid})
        self._sent[wid] = (node, conn)

    def ok(self, wid, rev, from_rev=None, node=None, conn=None):
        w = self._write(wid)
        self._answer({"type": "ok", "client": w["client"], "model": w["model"], "wid": wid,
                      "rev": rev, "from": from_rev}, node, conn)

    def fail(self, wid, code, message="", node=None, conn=None):
        w = self._write(wid)
        self._answer({"type": "fail", "client": w["client"], "model": w["model"], "wid": wid,
                      "code": code, "message": message}, node, conn)

    def info(self, wid, reason="", node=None, conn=None):
        w = self._write(wid)
        self._answer({"type": "info", "client": w["client"], "model": w["model"], "wid": wid,
                      "reason": reason}, node, conn)

    def snapshot(self, client, node, conn, model, rev, value):
        self._add({"type": "snapshot", "client": client, "node": node, "conn": conn,
                   "model": model, "rev": rev, "value": value})

    def patch(self, client, node, conn, model, from_rev, rev, patch, origin=None):
        self._add({"type": "patch", "client": client, "node": node, "conn": conn,
                   "model": model, "from": from_rev, "rev": rev, "patch": patch,
                   "origin": origin})

    def initial(self, model, rev, value):
        self._add({"type": "initial", "model": model, "rev": rev, "value": value})

    def final(self, node, model, rev, value):
        self._add({"type": "final", "node": node, "model": model, "rev": rev,
                   "value": value})

    def _answer(self, ev, node, conn):
        """Records an answer to a write's latest attempt (its node and connection unless
        told otherwise)."""
        sent = self._sent.get(ev["wid"], (None, None))
        ev["node"] = sent[0] if node is None else node
        ev["conn"] = sent[1] if conn is None else conn
        self._add(ev)

    def _write(self, wid):
        try:
            return self._writes[wid]
        except KeyError:
            raise ValueError("no write %s was invoked" % wid) from None

    # -- persistence --------------------------------------------------------

    def dump(self, path):
        with open(path, "w", encoding="utf-8") as f:
            for ev in self.events:
                f.write(json.dumps(ev, separators=(",", ":")) + "\n")

    @classmethod
    def load(cls, path):
        h = cls()
        with open(path, encoding="utf-8") as f:
            for line in f:
                ev = json.loads(line)
                h.events.append(ev)
                if ev["type"] in ("invoke", "resend"):
                    h._sent[ev["wid"]] = (ev["node"], ev["conn"])
                if ev["type"] == "invoke":
                    h._writes[ev["wid"]] = ev
        return h

    # -- derived views --------------------------------------------------------

    def writes(self):
        """wid -> {"invoke", "status" (ok/fail/info), "acks" [ok events], "answers"
        [ok/fail/info events, in order]}."""
        out = {}
        for ev in self.events:
            if ev["type"] == "invoke":
                out[ev["wid"]] = {"invoke": ev, "acks": [], "answers": [], "attempts": 1}
            elif ev["type"] == "resend":
                out[ev["wid"]]["attempts"] += 1
            elif ev["type"] in ("ok", "fail", "info"):
                out[ev["wid"]]["answers"].append(ev)
                if ev["type"] == "ok":
                    out[ev["wid"]]["acks"].append(ev)
        for w in out.values():
            if w["acks"]:
                w["status"] = "ok"
            else:
                last = w["answers"][-1] if w["answers"] else None
                # An attempt never answered (still pending at the end) counts as unknown.
                if (last is not None and last["type"] == "fail"
                        and last["code"] not in INDEFINITE_CODES
                        and len(w["answers"]) >= w["attempts"]):
                    w["status"] = "fail"
                else:
                    w["status"] = "info"
        return out

    def finals(self):
        """model -> {node: final event} (the last read per node)."""
        out = {}
        for ev in self.events:
            if ev["type"] == "final":
                out.setdefault(ev["model"], {})[ev["node"]] = ev
        return out

    def nodes(self):
        return sorted({ev["node"] for ev in self.events if ev["type"] == "final"})

    def published(self):
        """(model, rev) -> [patch events]: every patch message any client was sent."""
        out = {}
        for ev in self.events:
            if ev["type"] == "patch":
                out.setdefault((ev["model"], ev["rev"]), []).append(ev)
        return out

    def marks_published(self):
        """(model, mark field, value) -> sorted revs whose published patch sets it. One
        patch per rev is read (check_revs reports revs published with different patches)."""
        out = {}
        for (model, rev), ps in self.published().items():
            p = ps[0]["patch"]
            if isinstance(p, dict):
                for k, v in p.items():
                    if isinstance(v, (int, str)) and not isinstance(v, bool):
                        out.setdefault((model, k, v), []).append(rev)
        for revs in out.values():
            revs.sort()
        return out

    def streams(self):
        """Replays every client's stream by the protocol's replica rules. Returns (anomalies,
        values) where values maps (model, rev) -> [(value, who, event index)]. Cached until
        the next record."""
        cached = getattr(self, "_streams", None)
        if cached is not None and cached[0] == len(self.events):
            return cached[1]
        result = self._streams_uncached()
        self._streams = (len(self.events), result)
        return result

    def _streams_uncached(self):
        writes = {ev["wid"]: ev for ev in self.events if ev["type"] == "invoke"}
        held = {}       # (client, model) -> _Replica
        resumed = set()  # (node, conn) of connections that began with a resume
        values = {}
        anomalies = []

        def saw(model, rev, fp, who, i):
            values.setdefault((model, rev), []).append((fp, who, i))

        for ev in self.events:
            typ = ev["type"]
            if typ == "connect":
                if ev["resume"]:
                    resumed.add((ev["node"], ev["conn"]))
                if not ev["resume"]:
                    for k in [k for k in held if k[0] == ev["client"]]:
                        del held[k]
                continue
            if typ in ("final", "initial"):
                who = "final read on %s" % ev["node"] if typ == "final" else "initial"
                saw(ev["model"], ev["rev"], _fingerprint(ev["value"]), who, ev["i"])
                continue
            if typ not in ("snapshot", "patch", "ok"):
                continue
            client, model = ev["client"], ev["model"]
            who = "client %s (conn %s on %s)" % (client, ev["conn"], ev["node"])
            r = held.get((client, model))
            if typ == "snapshot":
                if r is not None and ev["rev"] < r.rev:
                    anomalies.append(Anomaly(
                        "rev-back", model, "%s got a snapshot at rev %d after holding rev %d"
                        % (who, ev["rev"], r.rev), [ev["i"]]))
                r = held[(client, model)] = _Replica(ev["rev"], ev["value"])
                saw(model, r.rev, r.fp, who, ev["i"])
                continue
            if typ == "patch":
                if ev["rev"] <= ev["from"]:
                    anomalies.append(Anomaly(
                        "rev-back", model, "%s got a patch from rev %d to rev %d"
                        % (who, ev["from"], ev["rev"]), [ev["i"]]))
                    continue
                if r is None:
                    anomalies.append(Anomaly(
                        "gap", model, "%s got a patch (rev %d to %d) for a model it holds no "
                        "snapshot of" % (who, ev["from"], ev["rev"]), [ev["i"]]))
                    held[(client, model)] = _Replica(ev["rev"], None)
                    continue
                if ev["rev"] <= r.rev and (ev["node"], ev["conn"]) in resumed:
                    # protocol.md, "State per model": a resume's answer may repeat patches the
                    # client holds (a cluster node behind the client's rev sends them as it
                    # catches up); the client ignores them.
                    continue
                if ev["rev"] <= r.rev:
                    anomalies.append(Anomaly(
                        "rev-back", model, "%s got a patch to rev %d while holding rev %d "
                        "(a rev going back or repeated)" % (who, ev["rev"], r.rev), [ev["i"]]))
                    continue
                if ev["from"] != r.rev:
                    anomalies.append(Anomaly(
                        "gap", model, "%s got a patch from rev %d while holding rev %d"
                        % (who, ev["from"], r.rev), [ev["i"]]))
                    r.lose(ev["rev"])
                    continue
                r.apply(ev["rev"], ev["patch"])
            else:   # ok
                if r is None or ev["rev"] <= r.rev:
                    continue
                if ev.get("from") is None or ev["from"] != r.rev:
                    anomalies.append(Anomaly(
                        "gap", model, "%s got the ack of %s at rev %d (from %s) while holding "
                        "rev %d" % (who, ev["wid"], ev["rev"], ev.get("from"), r.rev),
                        [ev["i"]]))
                    r.lose(ev["rev"])
                    continue
                r.apply(ev["rev"], writes[ev["wid"]]["patch"])
            if r.value is not None:
                saw(model, r.rev, r.fp, who, ev["i"])
        return anomalies, values

    def value_at(self, i):
        """The value a history event shows: a snapshot's, final or initial read's own value,
        or the replica its client held after the patch or ack of event i (replayed)."""
        ev = self.events[i]
        if ev["type"] in ("snapshot", "final", "initial"):
            return ev["value"]
        writes = {e["wid"]: e for e in self.events if e["type"] == "invoke"}
        r = None
        for e in self.events[:i + 1]:
            if e.get("client") != ev["client"]:
                continue
            if e["type"] == "connect" and not e["resume"]:
                r = None
            if e.get("model") != ev["model"]:
                continue
            if e["type"] == "snapshot":
                r = _Replica(e["rev"], e["value"])
            elif r is not None and r.value is not None and e["type"] == "patch":
                if e["from"] == r.rev and e["rev"] > r.rev:
                    r.apply(e["rev"], e["patch"])
            elif (r is not None and r.value is not None and e["type"] == "ok"
                  and e.get("from") == r.rev and e["rev"] > r.rev):
                r.apply(e["rev"], writes[e["wid"]]["patch"])
        return None if r is None else r.value


_MASK = (1 << 64) - 1


def _member_fp(k, v):
    return hash((k, _canon(v))) & _MASK


def _fingerprint(value):
    """A value's fingerprint: the sum of its members' hashes (of their canonical JSON), so a
    patch updates it in the time of the members it touches. Distinguishes 1 from true and
    from 1.0, which == on decoded JSON would not."""
    if not isinstance(value, dict):
        return hash(("", _canon(value))) & _MASK
    return sum(_member_fp(k, v) for k, v in value.items()) & _MASK


class _Replica:
    """A client's copy of a model, patched in place (the checker follows thousands of revs of
    models with thousands of members: copying each value would be quadratic)."""

    def __init__(self, rev, value):
        self.rev = rev
        self.value = json.loads(json.dumps(value)) if value is not None else None
        self.fp = _fingerprint(self.value) if value is not None else None

    def lose(self, rev):
        self.rev, self.value, self.fp = rev, None, None

    def apply(self, rev, patch):
        self.rev = rev
        if self.value is None:
            return
        if not isinstance(self.value, dict) or not isinstance(patch, dict):
            self.value = merge_patch(self.value, patch)
            self.fp = _fingerprint(self.value)
            return
        fp = self.fp
        for k, pv in patch.items():
            if k in self.value:
                fp -= _member_fp(k, self.value[k])
            if pv is None:
                self.value.pop(k, None)
            else:
                self.value[k] = merge_patch(self.value.get(k), pv)
                fp += _member_fp(k, self.value[k])
        self.fp = fp & _MASK


def _diff(a, b, limit=6):
    """A short description of how two values differ (their top-level members)."""
    if not isinstance(a, dict) or not isinstance(b, dict):
        return "%s vs %s" % (_canon(a)[:200], _canon(b)[:200])
    only_a = sorted(k for k in a if k not in b)
    only_b = sorted(k for k in b if k not in a)
    differ = sorted(k for k in a if k in b and _canon(a[k]) != _canon(b[k]))
    parts = []
    if only_a:
        parts.append("only in the first: %s" % ", ".join(only_a[:limit]))
    if only_b:
        parts.append("only in the second: %s" % ", ".join(only_b[:limit]))
    for k in differ[:limit]:
        parts.append("%s: %s vs %s" % (k, _canon(a[k])[:80], _canon(b[k])[:80]))
    return "; ".join(parts) or "equal"


# -- the checks -----------------------------------------------------------------

def _has_marks(value, marks):
    return isinstance(value, dict) and all(
        k in value and value[k] == v for k, v in marks.items())


def _any_mark(value, marks):
    return isinstance(value, dict) and any(
        k in value and value[k] == v for k, v in marks.items())


def check_lost(h):
    out = []
    finals = h.finals()
    published = h.published()
    marked = h.marks_published()
    for wid, w in sorted(h.writes().items()):
        inv = w["invoke"]
        model, marks = inv["model"], inv["marks"]
        reads = finals.get(model, {})
        if w["status"] == "ok":
            ack = w["acks"][0]
            if not reads:
                out.append(Anomaly("incomplete", model, "write %s was acked but the model has "
                                   "no final read" % wid, [ack["i"]]))
            for node, f in sorted(reads.items()):
                if f["rev"] < ack["rev"]:
                    out.append(Anomaly(
                        "lost", model, "write %s was acked at rev %d, but node %s's final "
                        "read is at rev %d" % (wid, ack["rev"], node, f["rev"]),
                        [ack["i"], f["i"]]))
                if marks and not _has_marks(f["value"], marks):
                    out.append(Anomaly(
                        "lost", model, "write %s was acked at rev %d, but node %s's final "
                        "value (rev %d) lacks %s" % (wid, ack["rev"], node, f["rev"],
                                                     _canon(marks)), [ack["i"], f["i"]]))
            if marks:
                for p in published.get((model, ack["rev"]), []):
                    if not _has_marks(p["patch"], marks):
                        out.append(Anomaly(
                            "wrong-ack-rev", model, "write %s was acked at rev %d, but the "
                            "patch published at rev %d (to %s) does not carry %s: %s"
                            % (wid, ack["rev"], ack["rev"], p["client"], _canon(marks),
                               _canon(p["patch"])), [ack["i"], p["i"]]))
                        break
        elif w["status"] == "fail" and marks:
            last = w["answers"][-1]
            for node, f in sorted(reads.items()):
                if _any_mark(f["value"], marks):
                    out.append(Anomaly(
                        "failed-applied", model, "write %s was refused (%s) but node %s's "
                        "final value (rev %d) holds it" % (wid, last["code"], node, f["rev"]),
                        [last["i"], f["i"]]))
            revs = sorted({r for k, v in marks.items()
                           for r in marked.get((model, k, v), [])})
            if revs:
                ps = published[(model, revs[0])]
                out.append(Anomaly(
                    "failed-applied", model, "write %s was refused (%s) but the patch "
                    "at rev %d carries it" % (wid, last["code"], revs[0]),
                    [last["i"], ps[0]["i"]]))
    return out


def check_duplicates(h):
    out = []
    writes = h.writes()
    published = h.published()
    marked = h.marks_published()
    for wid, w in sorted(writes.items()):
        revs = sorted({a["rev"] for a in w["acks"]})
        if len(revs) > 1:
            out.append(Anomaly(
                "duplicate", w["invoke"]["model"], "write %s was acked %d times with different "
                "revs %s: applied again when resent" % (wid, len(w["acks"]), revs),
                [a["i"] for a in w["acks"]]))
        marks = w["invoke"]["marks"]
        if not marks:
            continue
        model = w["invoke"]["model"]
        # The revs whose published patch sets one of the write's marks.
        at = sorted({r for k, v in marks.items() for r in marked.get((model, k, v), [])})
        if len(at) > 1:
            out.append(Anomaly(
                "duplicate", model, "write %s is set by the patches of revs %s: applied more "
                "than once" % (wid, at),
                [published[(model, r)][0]["i"] for r in at]))
        elif len(at) == 1 and w["acks"]:
            # A resend applied again re-sets marks that are already there: its patch then
            # lacks them, and its ack names that later rev instead of the one that set them.
            ack = w["acks"][-1]
            later = published.get((model, ack["rev"]))
            if ack["rev"] > at[0] and later:
                out.append(Anomaly(
                    "duplicate", model, "write %s was set by the patch of rev %d, but its ack "
                    "names rev %d, whose patch is %s: applied again"
                    % (wid, at[0], ack["rev"], _canon(later[0]["patch"])),
                    [published[(model, at[0])][0]["i"], ack["i"], later[0]["i"]]))
    initial = {ev["model"]: ev for ev in h.events if ev["type"] == "initial"}
    by_model = {}
    for wid, w in writes.items():
        if w["invoke"]["marks"]:
            by_model.setdefault(w["invoke"]["model"], []).append(w)
    for model, f_by_node in sorted(h.finals().items()):
        ini = initial.get(model)
        if ini is None:
            continue
        for node, f in sorted(f_by_node.items()):
            present = [w["invoke"]["wid"] for w in by_model.get(model, [])
                       if _has_marks(f["value"], w["invoke"]["marks"])]
            if f["rev"] - ini["rev"] != len(present):
                out.append(Anomaly(
                    "duplicate", model, "node %s's final read is at rev %d, %d past the initial "
                    "rev %d, but holds %d writes: %s" % (
                        node, f["rev"], f["rev"] - ini["rev"], ini["rev"], len(present),
                        "a write applied more than once (or a change nobody made)"
                        if f["rev"] - ini["rev"] > len(present)
                        else "writes applied without a rev of their own"),
                    [ini["i"], f["i"]]))
    return out


def check_revs(h):
    out, _ = h.streams()
    for (model, rev), ps in sorted(h.published().items()):
        seen = {}
        for p in ps:
            seen.setdefault((p["from"], _canon(p["patch"])), p)
        if len(seen) > 1:
            variants = list(seen.values())
            out.append(Anomaly(
                "rev-reuse", model, "rev %d was published as %d different changes: %s" % (
                    rev, len(variants), "; ".join(
                        "from %d %s to %s on %s" % (p["from"], _canon(p["patch"]), p["client"],
                                                    p["node"]) for p in variants)),
                [p["i"] for p in variants]))
    return out


def check_divergence(h):
    out = []
    nodes = h.nodes()
    for model, by_node in sorted(h.finals().items()):
        missing = [n for n in nodes if n not in by_node]
        if missing:
            out.append(Anomaly("divergence", model, "no final read from node(s) %s"
                               % ", ".join(missing)))
        reads = sorted(by_node.items())
        first_node, first = reads[0]
        for node, f in reads[1:]:
            if f["rev"] != first["rev"] or _canon(f["value"]) != _canon(first["value"]):
                out.append(Anomaly(
                    "divergence", model, "node %s reads rev %d %s, node %s reads rev %d %s"
                    % (first_node, first["rev"], _canon(first["value"]), node, f["rev"],
                       _canon(f["value"])), [first["i"], f["i"]]))
    _, values = h.streams()
    detailed = 0
    for (model, rev), vs in sorted(values.items()):
        base_fp, base_who, base_i = vs[0]
        for fp, who, i in vs[1:]:
            if fp != base_fp:
                # The values themselves, replayed, for the first few (a replay is slow).
                how = ""
                if detailed < 5:
                    detailed += 1
                    how = ": " + _diff(h.value_at(base_i), h.value_at(i))
                out.append(Anomaly(
                    "divergence", model, "at rev %d, %s and %s had different values%s"
                    % (rev, base_who, who, how), [base_i, i]))
                break
    return out


def check_distinct_ack_revs(h):
    out = []
    by = {}
    for wid, w in h.writes().items():
        for a in w["acks"][:1]:
            by.setdefault((w["invoke"]["model"], a["rev"]), []).append((wid, a["i"]))
    for (model, rev), ws in sorted(by.items()):
        if len(ws) > 1:
            out.append(Anomaly(
                "ack-rev-shared", model, "writes %s were all acked at rev %d"
                % (", ".join(w for w, _ in sorted(ws)), rev), [i for _, i in ws]))
    return out


CHECKS = (check_lost, check_duplicates, check_revs, check_divergence, check_distinct_ack_revs)


def check_all(h):
    out = []
    for check in CHECKS:
        out.extend(check(h))
    return out


def summary(h):
    """Counts for a test's log line: writes by status, events, nodes."""
    ws = h.writes()
    by = {}
    for w in ws.values():
        by[w["status"]] = by.get(w["status"], 0) + 1
    return {"writes": len(ws), "ok": by.get("ok", 0), "fail": by.get("fail", 0),
            "info": by.get("info", 0), "events": len(h.events), "nodes": h.nodes(),
            "resends": sum(w["attempts"] - 1 for w in ws.values())}
