#!/usr/bin/env python3
"""Writes the hand-written seeds of the fuzz corpora: tests/fuzz/corpus/<target>/seed-*.

The seeds are the meaningful starting points (protocol messages of every type,
batches, resume, bad frames; the schema cases; the merge patch cases). The rest
of each corpus is what the fuzzers found from them, minimized (README.md).
Run it again after changing the protocol, the cases or a target's input format:

    python3 tests/fuzz/make-seeds.py
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = os.path.join(HERE, "..", "cases")
SEP = "\n%%\n"


def compact(v):
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def write(target, name, text):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        # surrogateescape: "\udcff" in a seed is the byte 0xff (not UTF-8).
        f.write(text.encode("utf-8", "surrogateescape"))


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def case_dirs(topic):
    root = os.path.join(CASES, topic)
    return sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))


# ---- fuzz_patch: a, then b ----

def patch_seeds():
    for case in case_dirs("patch"):
        d = os.path.join(CASES, "patch", case)
        inp = load(os.path.join(d, "input.json"))
        target, patch = inp.get("target"), inp.get("patch")
        # "target" may be absent (a NULL target): any text that is not JSON.
        t = compact(target) if "target" in inp else "absent"
        write("fuzz_patch", case, t + SEP + compact(patch))
        exp = os.path.join(d, "expected.json")
        if os.path.exists(exp):
            write("fuzz_patch", case + "-diff", t + SEP + compact(load(exp)))
    extra = {
        "nested-objects-in-arrays": ('{"a":[{"b":null,"c":1}],"d":{"e":{"f":null}}}',
                                     '{"a":[{"c":2}],"d":{"e":{}}}'),
        "deep-delete": ('{"a":{"b":{"c":{"d":1,"e":2}}}}', '{"a":{"b":{"c":{"e":2}}}}'),
        "types-swap": ('{"a":1,"b":"x","c":[1],"d":{},"e":true,"f":1.5}',
                       '{"a":"1","b":1,"c":{},"d":[],"e":false,"f":1}'),
        "unicode-and-escapes": ('{"\\u00e9":"\\ud83d\\ude00","k\\"q":"\\n"}',
                                '{"\\u00e9":null,"k\\"q":"\\t","\\u0000":1}'),
        "scalars": ("1", "[null,{\"a\":null}]"),
        "big-numbers": ('{"a":9223372036854775807,"b":-9223372036854775808,"c":1e308}',
                        '{"a":-1,"b":1.7976931348623157e308,"c":-0.0}'),
        "null-target-member": ('{"a":null,"b":{"c":null}}', '{"b":{"c":1}}'),
    }
    for name, (a, b) in extra.items():
        write("fuzz_patch", name, a + SEP + b)


# ---- fuzz_schema: a schema, then values ----

def schema_seeds():
    for case in case_dirs("schema"):
        d = os.path.join(CASES, "schema", case)
        if not os.path.exists(os.path.join(d, "schema.json")):
            continue
        schema = load(os.path.join(d, "schema.json"))
        values = []
        for v in load(os.path.join(d, "valid.json")):
            values.append(v)
        for name in ("invalid.json", "defaults.json"):
            p = os.path.join(d, name)
            if os.path.exists(p):
                values += [e["value"] for e in load(p)]
        # Valid first (the first valid object is hosted), then the others as
        # writes over it.
        write("fuzz_schema", case, compact(schema) + "".join(SEP + compact(v) for v in values))
    # The pydantic models (tests/cases/pydantic): their schemas, then every
    # instance pydantic accepted, then those it refused.
    for case in case_dirs("pydantic"):
        c = load(os.path.join(CASES, "pydantic", case, "case.json"))
        values = [e["value"] for k in ("valid", "absent", "invalid", "stricter") for e in c[k]]
        write("fuzz_schema", "pydantic-" + case,
              compact(c["schema"]) + "".join(SEP + compact(v) for v in values))
    for case in case_dirs("schema-load"):
        d = os.path.join(CASES, "schema-load", case)
        schema = load(os.path.join(d, "schema.json"))
        write("fuzz_schema", "load-" + case, compact(schema) + SEP + "{}")
    obj = '{"type":"object","properties":%s}'
    extra = {
        "pattern-dialect": obj % compact({
            "a": {"type": "string", "pattern": "^(?=\\d)(?!0)\\d+$"},
            "b": {"type": "string", "pattern": "[\\]\\[\\-]{2,}|\\x{e9}|\\u00e8"},
            "c": {"type": "string", "pattern": "^[à-ÿ]+\\Z"},
            "d": {"type": "string", "pattern": "(?P<n>[[:alpha:]])\\w*?\\s?\\S{1,3}\\."},
            "e": {"type": "string", "pattern": "\\A\\t\\n\\r\\f\\v\\/\\$"},
        }) + SEP + '{"a":"12","b":"][","c":"àé","d":"x1 ab.","e":"\\t\\n\\r\\f\\u000b/$"}'
        + SEP + '{"a":"012","b":"x","c":"a","d":"1","e":""}',
        "refused-patterns": obj % compact({
            "a": {"type": "string", "pattern": "\\x{41}"},
        }) + SEP + "{}",
        "pcre2-patterns": obj % compact({
            "a": {"type": "string", "pattern": "(?<=a)b(?!c)"},
            "b": {"type": "string", "pattern": "(?i)^\\p{L}+\\b$"},
            "c": {"type": "string", "pattern": "^(a|aa)*(?:x+x+)+y$"},
            "d": {"type": "string", "pattern": "(?=a*a*[bc])"},
            "e": {"type": "string", "pattern": "^(?P<q>['\"]).*(?P=q)$"},
        }) + SEP + '{"a":"ab","b":"Zo\u00eb","c":"aaxxy","d":"aab","e":"\"x\""}'
        + SEP + '{"a":"' + "a" * 300 + '","c":"' + "a" * 40 + 'x' * 40 + '","d":"' + "a" * 3000 + '"}',
        "pattern-properties": compact({
            "type": "object",
            "properties": {"m": {"type": "object",
                                 "patternProperties": {"^[a-z]+$": {"type": "integer"},
                                                       "^x": {"minimum": 5}}},
                           "n": {"type": "object", "patternProperties": {"\\d": True},
                                 "additionalProperties": {"type": "string"}}},
            "x-owner": {"any": ["thing"]},
        }) + SEP + '{"m":{"ab":1,"xy":7},"n":{"a1":null,"b":"s"}}'
        + SEP + '{"m":{"a1":1,"xa":2},"n":{"b":1}}',
        "decimals": obj % compact({
            "d": {"anyOf": [{"type": "number", "minimum": 0, "maximum": 10},
                            {"type": "string", "pattern":
                             "^(?!^[-+.]*$)[+-]?0*(?:\\d{0,3}|(?=[\\d.]{1,6}0*$)\\d{0,3}\\.\\d{0,2}0*$)"}]},
            "m": {"anyOf": [{"type": "number", "multipleOf": 0.25},
                            {"type": "string", "pattern": "^(?!^[-+.]*$)[+-]?0*\\d*\\.?\\d*$"}]},
        }) + SEP + '{"d":"9.99","m":"0.75"}' + SEP + '{"d":"10.001","m":"0.3"}'
        + SEP + '{"d":1.234,"m":1e300}' + SEP + '{"d":"-0","m":"00012.500"}',
        "formats-pydantic": obj % compact({
            "u": {"type": "string", "format": "uri", "maxLength": 2083},
            "a": {"type": "string", "format": "uri"},
            "i": {"type": "string", "format": "ipvanyaddress"},
            "d": {"type": "string", "format": "duration"},
            "e": {"type": "string", "format": "email"},
        }) + SEP + '{"u":"https://a.b/c?d#e","a":"x:y","i":"::ffff:1.2.3.4","d":"P1DT2H","e":"a@b.io"}'
        + SEP + '{"u":"ftp://a","a":"/x","i":"1.2.3","d":"PT","e":"a@localhost"}',
        "refs-and-cycles": compact({
            "$ref": "#/$defs/A",
            "$defs": {"A": {"type": "object", "properties": {"next": {"$ref": "#/$defs/A"},
                                                            "b": {"$ref": "#/$defs/B"}}},
                      "B": {"allOf": [{"$ref": "#/$defs/C"}]},
                      "C": {"anyOf": [{"type": "integer"}, {"type": "null"}]}},
        }) + SEP + '{"next":{"next":{"b":1}},"b":null}' + SEP + '{"next":{"b":"x"}}',
        "ref-cycle": compact({"$ref": "#/$defs/A", "$defs": {"A": {"$ref": "#/$defs/B"},
                                                             "B": {"$ref": "#/$defs/A"}}}),
        "bool-schemas": obj % compact({"t": True, "f": False,
                                       "i": {"type": "array", "prefixItems": [True],
                                             "items": False}})
        + SEP + '{"t":[1,{"a":2}],"i":[1]}' + SEP + '{"f":1}' + SEP + '{"i":[1,2]}',
        "numbers": obj % compact({
            "i": {"type": "integer", "minimum": -9223372036854775808,
                  "maximum": 9223372036854775807, "multipleOf": 3},
            "r": {"type": "number", "exclusiveMinimum": -1e308, "multipleOf": 0.1},
            "e": {"enum": [1, 1.0, "1", None, [1], {"a": 1}]},
            "c": {"const": {"a": [1, 2.0]}},
        }) + SEP + '{"i":9,"r":0.3,"e":[1],"c":{"a":[1,2]}}' + SEP + '{"i":1.0e1,"r":1e308}',
        "objects": obj % compact({
            "m": {"type": "object", "minProperties": 1, "maxProperties": 2,
                  "propertyNames": {"enum": ["a", "b", "c"]},
                  "additionalProperties": {"type": "integer"}},
            "u": {"type": "array", "uniqueItems": True, "minItems": 1, "maxItems": 4},
        }) + SEP + '{"m":{"a":1,"b":null},"u":[1,"1",[1],{"a":1}]}'
        + SEP + '{"m":{"d":1},"u":[{"a":1,"b":2},{"b":2,"a":1}]}',
        "formats": obj % compact({
            "dt": {"type": "string", "format": "date-time"},
            "d": {"type": "string", "format": "date"},
            "t": {"type": "string", "format": "time"},
            "u": {"type": "string", "format": "uuid"},
            "x": {"type": "string", "format": "email"},
        }) + SEP + '{"dt":"2024-02-29T23:59:60.5+01:00","d":"2000-02-29","t":"12:00:00Z",'
        '"u":"123e4567-E89B-12d3-a456-426614174000","x":"?"}'
        + SEP + '{"dt":"2023-02-29 00:00:00","d":"1900-02-29","t":"24:00:00","u":"x"}',
        "lengths-unicode": obj % compact({
            "s": {"type": "string", "minLength": 2, "maxLength": 3},
        }) + SEP + '{"s":"\\ud83d\\ude00\\u00e9"}' + SEP + '{"s":"\\u00e9"}',
        "discriminator": compact({
            "type": "object",
            "properties": {"pet": {"oneOf": [{"$ref": "#/$defs/Cat"}, {"$ref": "#/$defs/Dog"}],
                                   "discriminator": {"propertyName": "kind",
                                                     "mapping": {"cat": "#/$defs/Cat",
                                                                 "dog": "#/$defs/Dog"}}}},
            "$defs": {"Cat": {"type": "object", "properties": {"kind": {"const": "cat"},
                                                               "lives": {"type": "integer",
                                                                         "default": 9}},
                              "required": ["kind"]},
                      "Dog": {"type": "object", "properties": {"kind": {"const": "dog"}},
                              "required": ["kind"]}},
        }) + SEP + '{"pet":{"kind":"cat"}}' + SEP + '{"pet":{"kind":"cow"}}' + SEP + '{"pet":{}}',
        "bad-json": '{"type":"object",' + SEP + '{',
        "duplicate-keys": '{"type":"object","type":"object"}' + SEP + '{"a":1,"a":2}',
        "not-an-object-root": '{"type":"array"}' + SEP + "[]",
        "invalid-defaults": obj % compact({
            "n": {"type": "integer", "minimum": 1, "default": 0},
        }) + SEP + "{}" + SEP + '{"n":1}',
        "required-nullable": compact({
            "type": "object", "required": ["a", "b"],
            "properties": {"a": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                           "b": {"type": "string"}},
            "additionalProperties": False,
        }) + SEP + '{"b":"x"}' + SEP + '{"a":null,"b":"y"}' + SEP + '{"a":"x"}'
        + SEP + '{"b":"x","c":null}' + SEP + '{"b":"x","c":1}',
    }
    for name, text in extra.items():
        write("fuzz_schema", name, text)


# ---- fuzz_conn: lines of operations (fuzz_conn.c) ----

def msg(**kw):
    return compact(kw)


def write_msg(scope, id, ref, patch, **kw):
    return msg(type="write", scope=scope, id=id, ref=ref, patch=patch, **kw)


def conn_seeds():
    seeds = {}
    # The guide's walk-through: private and shared writes, echo rules, errors.
    seeds["guide"] = [
        "0" + msg(type="ping", ref=1, client="k7Qx2"),
        "0" + write_msg("private", "notes", 2, {"body": "hello"}),
        "n2",
        "0" + write_msg("shared", "roadmap", 3, {"body": "Q1: ship"}),
        "0" + write_msg("private", "notes", 4, {"views": -1.5}),
        "3" + write_msg("shared", "roadmap", 1, {"body": "bob"}),
        "0[" + ",".join([write_msg("private", "notes", 5, {"views": 1}),
                         write_msg("shared", "roadmap", 6, {"views": 1}), "7",
                         write_msg("private", "todo", 8, {})]) + "]",
        "D",
        "c",
    ]
    # Every message type and every refusal of PROTOCOL.md's error table.
    seeds["bad-frames"] = [
        "0{\"type\":", "042", "0[]", "0[1,\"x\",null]", "0{\"type\":5,\"ref\":1}",
        "0{\"type\":\"fly\",\"ref\":2}", "0{\"type\":\"write\",\"type\":\"write\"}",
        "0{\"type\":\"write\"}", "0{\"type\":\"write\",\"ref\":\"3\"}",
        "0" + write_msg("public", "notes", 4, {}),
        "0" + write_msg("private", "", 5, {}),
        "0" + msg(type="write", scope="private", id="notes", ref=6, patch=[1]),
        "0" + write_msg("private", "notes", 7, {"views": 1}, ts={"wall": -1, "count": 0}),
        "0" + write_msg("private", "notes", 8, {"views": 1}, ts=5),
        "0" + msg(type="resume", models=5),
        "0" + msg(type="resume", models=[{"scope": "private", "id": "notes", "rev": -1}]),
        "0" + msg(type="ping", ref=9, client=""),
        "0" + msg(type="ping", ref=10, client="x" * 65),
        "0" + msg(type="ping", ref=11, client="a"),
        "0" + msg(type="ping", ref=12, client="b"),
        "0" + msg(type="ping"),
        "0{\"type\":\"ping\",\"ref\":99999999999999999999}",
        "0{\"type\":\"ping\",\"ref\":1.5}",
        "0{\"type\":\"write\",\"scope\":\"private\",\"id\":\"no\\u0000tes\",\"ref\":13,\"patch\":{}}",
        "0" + write_msg("private", "x" * 300, 14, {}),
        "0" + write_msg("shared", "notes", 15, {}),
        "5" + write_msg("shared", "roadmap", 16, {"title": "carol"}),
        "0\udcff\udcfe{}",
        "c",
    ]
    # Resume after a reconnect, and on a live connection after a gap.
    seeds["resume"] = [
        "0" + write_msg("private", "notes", 1, {"body": "a"}),
        "0" + write_msg("shared", "roadmap", 2, {"body": "b"}),
        "3" + write_msg("shared", "board", 3, {"counts": {"b": 2}}),
        "1" + msg(type="resume", client="tab1", models=[
            {"scope": "private", "id": "notes", "rev": 1},
            {"scope": "shared", "id": "roadmap", "rev": 2},
            {"scope": "shared", "id": "board", "rev": 1},
            {"scope": "private", "id": "gone", "rev": 3},
            {"scope": "shared", "id": "order", "rev": 1}]),
        "4" + msg(type="resume", models=[{"scope": "shared", "id": "roadmap", "rev": 9}]),
        "0" + msg(type="resume", models=[{"scope": "private", "id": "notes", "rev": 1},
                                         {"scope": "private", "id": "notes", "rev": 0}]),
        "o2r",
        "2" + write_msg("private", "notes", 4, {"body": "first message not a resume"}),
        "o4r",
        "4" + msg(type="resume", models=[{"scope": "shared", "id": "roadmap", "rev": "x"}]),
        "o1r",
        "1[]",
        "1" + msg(type="ping", ref=5),
        "c",
    ]
    # History: more patches than kept (8 in profile 0), then resume from old revs.
    hist = ["0" + write_msg("private", "notes", i, {"views": i}) for i in range(1, 13)]
    seeds["history"] = hist + [
        "0" + msg(type="resume", models=[{"scope": "private", "id": "notes", "rev": r}
                                         for r in (1, 4, 6, 12, 13)]),
        "S11r", "0" + msg(type="resume", models=[{"scope": "shared", "id": "board", "rev": 1}]),
        "3" + msg(type="resume", models=[{"scope": "shared", "id": "roadmap", "rev": 1}]),
        "c",
    ]
    # Exactly once: resends answered from memory, duplicates, eviction.
    seeds["exactly-once"] = [
        "0" + msg(type="ping", ref=0, client="k"),
        "0" + write_msg("private", "notes", 5, {"body": "x"}),
        "0" + write_msg("private", "notes", 5, {"body": "y"}),
        "0" + write_msg("private", "notes", 3, {"body": "z"}),
        "0" + write_msg("private", "notes", 6, {"views": "bad"}),
        "0" + write_msg("private", "notes", 6, {"views": 1}),
        "x0",
        "o1r",
        "1" + msg(type="resume", client="k", models=[{"scope": "private", "id": "notes", "rev": 1}]),
        "1" + write_msg("private", "notes", 5, {"body": "x"}),
        "1" + write_msg("shared", "roadmap", 5, {"body": "x"}),
        "2" + msg(type="ping", ref=1, client="other1"),
        "3" + msg(type="ping", ref=1, client="k"),
        "x2", "o2", "2" + msg(type="ping", ref=1, client="other2"),
        "2" + msg(type="ping", ref=2, client="other3"),
        "c",
    ]
    # Rate limit: a burst of 20 in profile 0, refilled by the clock.
    seeds["rate-limit"] = [
        "0[" + ",".join(write_msg("private", "notes", i, {"views": i}) for i in range(1, 25)) + "]",
        "t100",
        "0" + write_msg("private", "notes", 30, {"views": 30}),
        "t1000",
        "0[" + ",".join(write_msg("private", "notes", i, {"views": i}) for i in range(31, 36)) + "]",
        "c",
    ]
    # lww-map: stamps, clamped clocks, tombstones, older writes losing.
    T = 1764150000000
    seeds["lww-map"] = [
        "0" + write_msg("shared", "board", 1, {"counts": {"z": 3}}, ts={"wall": T + 100, "count": 0}),
        "3" + write_msg("shared", "board", 2, {"counts": None}, ts={"wall": T + 200, "count": 0}),
        "3" + write_msg("shared", "board", 3, {"counts": {"q": 1}}, ts={"wall": T + 150, "count": 0}),
        "0" + write_msg("shared", "board", 4, {"items": {"a": {"label": "A"}}},
                        ts={"wall": T + 999999999, "count": 7}),
        "0" + write_msg("shared", "board", 5, {"name": "same stamp"},
                        ts={"wall": T + 999999999, "count": 7}),
        "3" + write_msg("shared", "board", 6, {"items": {"b": {"label": "B", "extra": 1}}}),
        "3" + write_msg("shared", "board", 7, {"name": None}),
        "3" + write_msg("shared", "board", 8, {"name": "n"}, ts={"wall": T + 999999999, "count": 2147483647}),
        "3" + write_msg("shared", "board", 10, {"name": "o"}, ts={"wall": T, "count": 9223372036854775807}),
        "h1{\"name\":\"host\",\"counts\":{\"h\":1}}",
        "s",
        "t70000",
        "0" + write_msg("shared", "board", 9, {"name": "later"}),
        "c",
    ]
    # A custom merge that refuses and one that fails; host writes through it.
    seeds["custom-merge"] = [
        "0" + write_msg("shared", "veto", 1, {"name": "VETO"}),
        "0" + write_msg("shared", "veto", 2, {"step": 35}),
        "5" + write_msg("shared", "veto", 3, {"step": 10, "tags": ["a", "b"]}),
        "5" + write_msg("shared", "veto", 4, {"ratio": 0.3}),
        "h3{\"name\":\"VETO\",\"code\":\"VET-001\"}",
        "s",
        "h3{\"name\":\"ok\",\"code\":\"VET-002\",\"step\":35}",
        "s",
        "h3{\"name\":\"ok\",\"code\":\"VET-003\"}",
        "s",
        "c",
    ]
    # The host's calls: set, host, delete, share, unshare, subscribe, access.
    seeds["host"] = [
        "h0{\"title\":\"Roadmap 2026\"}",
        "h0{\"title\":\"Roadmap 2027\",\"body\":\"coalesced\"}",
        "0" + write_msg("shared", "roadmap", 1, {"body": "published first"}),
        "p00{\"title\":\"host notes\"}",
        "p11{\"name\":\"x\"}",
        "s",
        "H02{\"name\":\"new\",\"code\":\"NEW-001\"}",
        "H00{\"title\":5}",
        "H10{",
        "X01",
        "X01",
        "R31{\"name\":\"second board\"}",
        "S24w", "S04r", "S04w", "S14w",
        "4" + write_msg("shared", "s1", 2, {"name": "bob"}),
        "U00", "U00",
        "Z2", "Z2", "S22w",
        "0" + write_msg("private", "1", 3, {"qty": 11}),
        "c",
        "S00w",
        "c",
    ]
    # Sizes: a model over its limit (7168 bytes in profile 0), batches cut at
    # 64 KiB, an outbox over its limit (128 KiB: 1013). Inputs stay under
    # 8192 bytes (the -max_len of make fuzz).
    seeds["limits"] = [
        "0" + write_msg("shared", "roadmap", 1, {"body": "x" * 2500}),
        "0" + write_msg("shared", "roadmap", 2, {"title": "y" * 2500}),
        "0" + write_msg("shared", "roadmap", 3, {"tags": ["z" * 2200]}),
    ] + ["U10", "S10r"] * 13 + ["n3"] + ["U10", "S10r"] * 16 + ["d3"] + ["U10", "S10r"] * 26 + ["c"]
    # Profile 1: 3000-byte messages (a frame over it: 1009), an 8 KiB outbox,
    # 3 writes a second, 2 patches of history, 1 client record.
    seeds["tiny-profile"] = ["L1"] + [
        "0" + write_msg("shared", "roadmap", i, {"body": "z" * 300 + str(i)}) for i in range(1, 8)
    ] + [
        "t1000",
        "0" + msg(type="ping", ref=1, client="only"),
        "2" + msg(type="ping", ref=1, client="evicts?"),
        "0" + msg(type="resume", models=[{"scope": "shared", "id": "roadmap", "rev": 2}]),
        "2" + write_msg("private", "notes", 9, {"body": "w" * 3000}),
        # A patch over history_bytes is not kept: the history starts again.
        "t1000",
        "0" + write_msg("shared", "roadmap", 10, {"body": "v" * 700}),
        "0" + write_msg("shared", "roadmap", 11, {"body": "short"}),
        "t1000",
        "0" + write_msg("shared", "roadmap", 12, {"body": "shorter"}),
        "3" + msg(type="resume", models=[{"scope": "shared", "id": "roadmap", "rev": r}
                                         for r in (8, 9, 10)]),
        "c",
    ]
    # Exactly once past the window: 256 outcomes are remembered per client.
    seeds["exactly-once-window"] = ["L2", "0" + msg(type="ping", ref=0, client="k"),
                                    "0[" + ",".join('{"type":"write","ref":%d}' % i
                                                    for i in range(1, 261)) + "]",
                                    "0" + write_msg("private", "notes", 3, {"body": "dup"}),
                                    "0" + write_msg("private", "notes", 10, {"body": "old"}),
                                    "0" + write_msg("private", "notes", 261, {"body": "new"}),
                                    "c"]
    seeds["default-profile"] = ["L2"] + [
        "0" + write_msg("private", "order", 1, {"lines": [{"sku": "B", "qty": 1, "price": 0.5}],
                                                "shipping": {"street": "s", "city": "c"}}),
        "0" + write_msg("private", "order", 2, {"shipping": {"country": None}}),
        "0" + write_msg("private", "order", 3, {"customer": {"address": {"city": None}}}),
        "0" + write_msg("private", "order", 4, {"notes": None, "lines": [{"sku": "C", "qty": 0,
                                                                          "price": 1}]}),
        "0" + write_msg("private", "order", 5, {"lines": [{"sku": "D", "qty": 1, "price": 2,
                                                           "gift": None}]}),
        "c",
    ]
    # Presence (issue 17): states on shared and private models (READ access
    # included), the tick (a sync after the clock moved), leaving by null, by
    # closing and by unsubscription, snapshots for new connections and after
    # a resume, refusals (too large, bad state, not visible, a ref ignored).
    def pres(scope, id, state, **kw):
        return msg(type="presence", scope=scope, id=id, state=state, **kw)
    seeds["presence"] = [
        "0" + pres("shared", "roadmap", {"name": "A", "cursor": [1, 2]}),
        "3" + pres("shared", "roadmap", {"name": "B"}),
        "0" + pres("private", "notes", {"sel": 1}),
        "s", "D", "t50", "s",
        "2" + pres("shared", "roadmap", {"x": 1}),
        "2" + pres("shared", "roadmap", {"x": 2}),
        "o5",
        "5" + pres("shared", "order", {"c": 1}),
        "3" + pres("shared", "roadmap", None),
        "3" + pres("shared", "roadmap", "bad", ref=4),
        "3" + pres("shared", "nope", {}),
        "3" + pres("public", "roadmap", {}),
        "3" + pres("shared", "roadmap", {"s": "x" * 5000}),
        "t60", "s", "D",
        "x0",
        "U10",
        "o4r",
        "4" + msg(type="resume", models=[{"scope": "shared", "id": "roadmap", "rev": 1}]),
        "4[" + ",".join([pres("shared", "board", {"i": i}) for i in range(30)]) + "]",
        "t100", "s",
        "c",
    ]
    for name, lines in seeds.items():
        write("fuzz_conn", name, "\n".join(lines) + "\n")


# ---- fuzz_client: lines playing the server ("<" frames) and the application ----

def client_seeds():
    def m(**kw):
        return compact(kw)

    def srv(*msgs):
        # One frame: a message alone, or several as a batch.
        return "<" + (msgs[0] if len(msgs) == 1 else "[" + ",".join(msgs) + "]")

    hello = m(type="hello", protocol=1, tenant="alice", conn="c1", tick_ms=50,
              max_message_bytes=1048576)

    def snap(scope, id, rev, value, access="write", schema="Document"):
        return m(type="snapshot", scope=scope, id=id, schema=schema, rev=rev, access=access,
                 value=value)

    def patch(scope, id, frm, rev, p, origin="c2"):
        return m(type="patch", scope=scope, id=id, **{"from": frm}, rev=rev, patch=p,
                 origin=origin)

    def ack(ref, scope, id, rev, frm=None):
        if frm is None:
            return m(type="ack", ref=ref, scope=scope, id=id, rev=rev)
        return m(type="ack", ref=ref, scope=scope, id=id, rev=rev, **{"from": frm})

    def err(code, ref=None, message="refused", **kw):
        if ref is None:
            return m(type="error", code=code, message=message, **kw)
        return m(type="error", ref=ref, code=code, message=message, **kw)

    synced = m(type="synced")
    notes = {"title": "Alice notes", "body": ""}
    roadmap = {"title": "Roadmap", "body": "", "tags": ["a"]}
    # tp_client_models lists private models first, then shared ones, by id:
    # w0 is notes, w1 board (read-only), w2 roadmap.
    connect = ["o", srv(hello, snap("private", "notes", 1, notes),
                        snap("shared", "roadmap", 1, roadmap),
                        snap("shared", "board", 3, {"name": "B", "counts": {"a": 1}}, access="read",
                             schema="Board"), synced), "d"]
    seeds = {}
    # protocol.md's walk-through: private writes acked with from, shared ones
    # echoed as a patch before their ack, patches from others, batches.
    seeds["honest"] = connect + [
        'w0{"body":"hello"}',
        "n",
        srv(ack(1, "private", "notes", 2, 1)),
        'w2{"body":"shared","tags":null}',
        "d",
        srv(patch("shared", "roadmap", 1, 2, {"body": "shared", "tags": None}, origin="c1"),
            ack(2, "shared", "roadmap", 2)),
        srv(patch("private", "notes", 2, 3, {"body": "hello, world", "n": {"a": [1, None]}})),
        'w0{"n":{"b":2,"a":null}}',
        'w0{"title":"T","n":null}',
        "d",
        srv(ack(3, "private", "notes", 4, 3), ack(4, "private", "notes", 5, 4)),
        srv(patch("shared", "board", 3, 4, {"counts": {"b": 2}}, origin="host")),
        "c",
    ]
    # Refusals: a write rolled back (invalid, forbidden by the server,
    # internal, duplicate, unknown codes), rate_limited and the resend at
    # the next tick, errors with no ref, a read-only model, bad patches.
    seeds["refusals"] = connect + [
        'w0{"views":"x"}', 'w0{"views":1}', 'w2{"body":"b"}', 'w0{"body":"c"}', "d",
        srv(err("invalid", 1, "views: expected integer", scope="private", id="notes")),
        srv(err("rate_limited", 2), err("rate_limited", 3)),
        "p", "n",
        srv(ack(2, "private", "notes", 2, 1), err("internal", 3)),
        srv(err("duplicate", 4), err("no_such_code", 99), err("bad_request", message="resume")),
        srv(err("forbidden", -1), err("rate_limited")),
        'w1{"name":"read only"}', "w0[1]", "w0{", 'w0{"a":1,"a":2}', "w0", "w3{}",
        "c",
    ]
    # A rev gap: a patch from a rev ahead of the one held is ignored and that
    # model resumed; the answer (patches from the rev held, or a snapshot).
    seeds["gap"] = connect + [
        'w0{"body":"mine"}',
        srv(patch("private", "notes", 2, 3, {"body": "missed"})),
        srv(patch("private", "notes", 3, 4, {"body": "ignored"})),
        "d",
        srv(patch("private", "notes", 1, 2, {"title": "t2"}), patch("private", "notes", 2, 3,
                                                                      {"body": "x"})),
        srv(patch("private", "notes", 1, 2, {"title": "old"})),
        srv(ack(1, "private", "notes", 9, 7)),
        srv(snap("private", "notes", 9, {"title": "after gap"})),
        srv(patch("shared", "nosuch", 1, 2, {"a": 1})),
        "c",
    ]
    # Disconnects: writes made while away are sent after the resume, refs
    # kept; the resume answer brings patches, a snapshot, a removed model, a
    # new one, and replayed acks.
    seeds["reconnect"] = connect + [
        'w0{"body":"one"}', 'w2{"body":"two"}', "n",
        "x1006 connection reset",
        'w0{"body":"three"}',
        "o", "d",
        srv(m(type="hello", protocol=1, tenant="alice", conn="c4", tick_ms=50,
              max_message_bytes=1048576)),
        srv(patch("private", "notes", 1, 2, {"body": "one"}, origin="c1"),
            snap("shared", "roadmap", 4, {"title": "Roadmap 2026"}, access="read"),
            m(type="removed", scope="shared", id="board"),
            snap("private", "ideas", 1, {"title": "Ideas"}), synced),
        srv(ack(1, "private", "notes", 2, 1), err("forbidden", 2), ack(3, "private", "notes", 3, 2)),
        "x1001", "x403", "o", "c", "S", srv(synced), "o", "c",
    ]
    # The application writes to models that come and go; removed with
    # writes pending; access changes; big writes, batches, too_large.
    seeds["models"] = connect + [
        'w0{"body":"pending"}', 'w2{"body":"pending too"}',
        srv(m(type="removed", scope="private", id="notes")),
        srv(m(type="access", scope="shared", id="board", access="write")),
        'w0{"name":"now writable"}',
        srv(m(type="access", scope="shared", id="roadmap", access="read")),
        'w1{"title":"read only now"}',
        "d",
        srv(ack(1, "private", "notes", 2, 1), ack(3, "shared", "board", 5)),
        srv(snap("private", "notes", 7, {"title": "back"})),
        "b03", "b19", "b09", "b0?", "d",
        srv(m(type="hello", protocol=1, max_message_bytes=300)),
        "b00", 'w0{"body":"' + "y" * 280 + '"}', 'w0{"body":"' + "y" * 200 + '"}',
        srv(m(type="hello", max_message_bytes=0)), "b00",
        "c",
    ]
    # A hostile server: not JSON, not objects, missing and mistyped fields,
    # another protocol version, duplicate keys, an ack that moves rev
    # backwards, values that are not objects, types unknown.
    seeds["hostile"] = connect + [
        'w0{"body":"a"}', 'w2{"body":"b"}', "d",
        "<", "<{", "<42", "<[]", "<[1,null]", '<{"type":5}', '<{"ref":1}',
        srv(m(type="hello", protocol=2)),
        srv(m(type="hello", protocol="1")),
        srv(m(type="snapshot", scope="private", id="x", rev=1, access="write", value=[1])),
        srv(m(type="snapshot", scope="public", id="x", rev=1, access="write", value={})),
        srv(m(type="snapshot", scope="private", id="", rev=1, access="admin", value={})),
        srv(patch("private", "notes", 2, 2, {"a": 1})),
        srv(patch("private", "notes", 1, 2, [1])),
        srv(snap("private", "z", 1, {}), m(type="ack", ref=1), snap("private", "y", 1, {})),
        srv(ack(1, "private", "notes", 1, 1)),
        srv(m(type="error", ref=2, message="no code")),
        '<{"type":"synced","type":"synced"}',
        srv(m(type="fly", scope="shared", id="roadmap", ref=2), m(type="pong", ref=-1)),
        srv(ack(2, "shared", "roadmap", 1.5)),
        '<{"type":"snapshot","scope":"private","id":"big","rev":9223372036854775807,'
        '"access":"write","value":{"n":1e308,"s":"\\ud83d\\ude00","u":"\\u00e9"}}',
        srv(patch("private", "big", 9223372036854775806, 9223372036854775807, {"n": None})),
        "<\udcff\udcfe{}",
        "c",
    ]
    # The first line may give the URL (the client sends its token in the query).
    seeds["url"] = ["Uwss://[::1]:8443/ws/alice?v=1"] + connect + ["x1006", "o", "c"]
    seeds["url-bad"] = ["Uws://user@example.com/ws", "o", "c"]
    seeds["empty"] = ["c"]
    seeds["offline"] = ['w0{"a":1}', srv(hello), "n", "p", "x", "o", srv(hello, synced), "c"]
    # Presence (issue 17): the application sets and clears its state (one
    # too large, one not an object); the server sends presence, a snapshot
    # and a leave; a cut clears the others; the state goes again after.
    def pres(**kw):
        return m(type="presence", scope="shared", id="roadmap", **kw)
    seeds["presence"] = connect + [
        'P1{"name":"A","cursor":3}', "P1[1]", 'P1{"s":"' + "x" * 5000 + '"}', "d",
        srv(pres(conn="c2", state={"name": "B"}),
            m(type="presence_snapshot", scope="shared", id="roadmap",
              peers=[{"conn": "c3", "state": {"name": "C"}}])),
        srv(pres(conn="c3", state=None)),
        srv(pres(conn="c4", state=5)),
        "x1006", "o", srv(hello, synced), "d",
        srv(m(type="error", code="rate_limited",
              message="presence: messages per second over the limit, resend later")),
        "P1null", "p", "p", "c",
    ]
    for name, lines in seeds.items():
        write("fuzz_client", name, "\n".join(lines) + "\n")


def main():
    patch_seeds()
    schema_seeds()
    conn_seeds()
    client_seeds()
    return 0


if __name__ == "__main__":
    sys.exit(main())
