#!/usr/bin/env python3
"""Runs the cases of tests/cases/pydantic/ through the library and pydantic.

For every case.json that generate.py wrote, with the library built in
build/ (or the directory given by --build), through ctypes and the public
API (a hub in memory, as the daemon runs it):
  - every "valid" instance must be hosted (tp_session_host), and the value
    read back (tp_session_get) must validate in pydantic
    (Model.model_validate_json);
  - the same instance written as a merge patch over the first valid
    instance, by a connection (a "write" message), must be acked or
    refused; when acked, the value read back must validate in pydantic;
  - every "invalid" and "stricter" instance must be refused;
  - every "absent" instance must be acked, and read back without its null
    members, a value pydantic accepts.
Without --write it also checks that the values read back are the ones
committed (what tests/unit/core/test_pydantic.c replays); with --write it
records them in the case files.

Needs pydantic 2 (and the models of generate.py):
    python3 tests/cases/pydantic/check.py [--write] [--build DIR]
"""
import argparse
import ctypes
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import generate  # noqa: E402


class Error(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("message", ctypes.c_char * 256)]


def load(build):
    lib = ctypes.CDLL(os.path.join(build, "libtransports.so"))
    P, S = ctypes.c_void_p, ctypes.c_char_p
    sig = {
        "tp_hub_new": ([P, ctypes.POINTER(Error)], P),
        "tp_hub_free": ([P], None),
        "tp_hub_tenant": ([P, S], P),
        "tp_schema_new": ([S, ctypes.POINTER(Error)], P),
        "tp_schema_free": ([P], None),
        "tp_session_host": ([P, P, S, ctypes.POINTER(Error)], S),
        "tp_session_get": ([P, S], P),
        "tp_session_delete": ([P, S], ctypes.c_int),
        "tp_conn_open": ([P, S, ctypes.c_int, ctypes.POINTER(Error)], P),
        "tp_conn_close": ([P], None),
        "tp_conn_feed": ([P, S, ctypes.c_size_t], ctypes.c_int),
        "tp_conn_next_frame": ([P, ctypes.POINTER(ctypes.c_size_t)], P),
        "tp_free": ([P], None),
    }
    for name, (args, res) in sig.items():
        f = getattr(lib, name)
        f.argtypes = args
        f.restype = res
    return lib


class Hub:
    def __init__(self, lib):
        self.lib = lib
        err = Error()
        self.hub = lib.tp_hub_new(None, ctypes.byref(err))
        self.session = lib.tp_hub_tenant(self.hub, b"t")

    def close(self):
        self.lib.tp_hub_free(self.hub)

    def get(self, mid):
        p = self.lib.tp_session_get(self.session, mid)
        text = ctypes.string_at(p).decode()
        self.lib.tp_free(p)
        return json.loads(text)

    def host(self, schema, value):
        err = Error()
        mid = self.lib.tp_session_host(self.session, schema, json.dumps(value).encode(),
                                       ctypes.byref(err))
        if mid is None:
            return None, err.message.decode()
        return mid, None

    def write(self, mid, patch):
        """A connection writes patch to model mid; returns None (acked) or the error."""
        err = Error()
        conn = self.lib.tp_conn_open(self.hub, b"t", 0, ctypes.byref(err))
        msg = json.dumps({"type": "write", "scope": "private", "id": mid.decode(), "ref": 1,
                          "patch": patch}).encode()
        self.lib.tp_conn_feed(conn, msg, len(msg))
        outcome = "no answer"
        size = ctypes.c_size_t()
        while True:
            p = self.lib.tp_conn_next_frame(conn, ctypes.byref(size))
            if not p:
                break
            frame = json.loads(ctypes.string_at(p, size.value).decode())
            for m in frame if isinstance(frame, list) else [frame]:
                if m.get("type") == "ack" and m.get("ref") == 1:
                    outcome = None
                elif m.get("type") == "error" and m.get("ref") == 1:
                    outcome = f"{m.get('code')}: {m.get('message')}"
        self.lib.tp_conn_close(conn)
        return outcome


def pydantic_ok(model, value):
    ok, why = generate.verdict(model, value)
    return ok, why


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--build", default=os.path.join(HERE, "..", "..", "..", "build"))
    args = ap.parse_args()
    lib = load(args.build)
    models = {name: model for name, model, _ in generate.MODELS}
    problems = []
    counts = {"valid": 0, "invalid": 0, "stricter": 0, "absent": 0, "patched": 0}
    for name in sorted(os.listdir(HERE)):
        path = os.path.join(HERE, name, "case.json")
        if not os.path.isfile(path):
            continue
        case = json.load(open(path))
        model = models[name]
        err = Error()
        schema = lib.tp_schema_new(json.dumps(case["schema"]).encode(), ctypes.byref(err))
        if not schema:
            problems.append(f"{name}: the schema does not load: {err.message.decode()}")
            continue
        hub = Hub(lib)
        base = case["valid"][0]["value"]
        for i, inst in enumerate(case["valid"]):
            counts["valid"] += 1
            mid, why = hub.host(schema, inst["value"])
            if mid is None:
                problems.append(f"{name} valid[{i}] {json.dumps(inst['value'])}: refused: {why}")
                continue
            back = hub.get(mid)
            ok, pwhy = pydantic_ok(model, back)
            if not ok:
                problems.append(f"{name} valid[{i}]: read back {json.dumps(back)}, pydantic: {pwhy}")
            lib.tp_session_delete(hub.session, mid)
            # The same as a patch over the first valid instance.
            mid, why = hub.host(schema, base)
            outcome = hub.write(mid, inst["value"])
            patched = None
            if outcome is None:
                counts["patched"] += 1
                patched = hub.get(mid)
                ok, pwhy = pydantic_ok(model, patched)
                if not ok:
                    problems.append(f"{name} valid[{i}] as a patch: read back {json.dumps(patched)}, "
                                    f"pydantic: {pwhy}")
            lib.tp_session_delete(hub.session, mid)
            if args.write:
                inst["readback"] = back
                inst["patched"] = patched
            elif inst.get("readback") != back or inst.get("patched") != patched:
                problems.append(f"{name} valid[{i}]: read back {json.dumps(back)} / patched "
                                f"{json.dumps(patched)}, committed {json.dumps(inst.get('readback'))}"
                                f" / {json.dumps(inst.get('patched'))}")
        for i, inst in enumerate(case["absent"]):
            counts["absent"] += 1
            mid, why = hub.host(schema, inst["value"])
            if mid is None:
                problems.append(f"{name} absent[{i}]: refused: {why}")
                continue
            back = hub.get(mid)
            ok, pwhy = pydantic_ok(model, back)
            if not ok:
                problems.append(f"{name} absent[{i}]: read back {json.dumps(back)}, pydantic: {pwhy}")
            lib.tp_session_delete(hub.session, mid)
            if args.write:
                inst["readback"] = back
            elif inst.get("readback") != back:
                problems.append(f"{name} absent[{i}]: read back {json.dumps(back)}, committed "
                                f"{json.dumps(inst.get('readback'))}")
        for kind in ("invalid", "stricter"):
            for i, inst in enumerate(case[kind]):
                counts[kind] += 1
                mid, why = hub.host(schema, inst["value"])
                if mid is not None:
                    back = hub.get(mid)
                    ok, pwhy = pydantic_ok(model, back)
                    problems.append(f"{name} {kind}[{i}] {json.dumps(inst['value'])}: acked, read "
                                    f"back {json.dumps(back)} (pydantic on it: {pwhy or 'valid'})")
                    lib.tp_session_delete(hub.session, mid)
                elif args.write:
                    inst["server"] = why
                elif inst.get("server") != why:
                    problems.append(f"{name} {kind}[{i}]: refused with \"{why}\", committed "
                                    f"\"{inst.get('server')}\"")
        hub.close()
        lib.tp_schema_free(schema)
        if args.write:
            with open(path, "w") as f:
                json.dump(case, f, indent=1, ensure_ascii=False)
                f.write("\n")
    for p in problems:
        print(p)
    print(f"check: {counts['valid']} valid ({counts['patched']} acked as patches), "
          f"{counts['invalid']} invalid, {counts['stricter']} stricter, {counts['absent']} absent; "
          f"{len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
