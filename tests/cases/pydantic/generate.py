#!/usr/bin/env python3
"""Writes the differential cases of tests/cases/pydantic/: pydantic's own verdicts.

Each model below comes with candidate instances (JSON values). For every
model this writes <case>/case.json holding the model's JSON Schema
(model_json_schema()) and each candidate with pydantic's verdict
(Model.model_validate_json, lax mode, as a Python service would read it):
  "valid":    pydantic accepts; the server must ack it;
  "invalid":  pydantic refuses (its first error is kept for reading); the
              server must refuse it too;
  "stricter": pydantic accepts but the server refuses by design, because it
              stores the value as written and pydantic only accepts it by
              rewriting it (STRICTER below says why for each);
  "absent":   pydantic refuses a null that the protocol reads as "absent"
              (a null member that may be absent, as in a merge patch): the
              server acks it and stores the value without that member,
              which pydantic accepts (ABSENT below says why for each).
check.py then runs the same instances through the library, validates every
value read back in pydantic, and records the read-back values that the C
test (tests/unit/core/test_pydantic.c) compares with. make test replays the
committed files and needs no pydantic.

Run with a Python that has pydantic 2 (the committed files: pydantic 2.13.4):
    python3 tests/cases/pydantic/generate.py && python3 tests/cases/pydantic/check.py --write
"""
import datetime
import decimal
import enum
import ipaddress
import json
import os
import shutil
import sys
import uuid
from typing import Annotated, Any, Dict, List, Literal, Optional, Set, Tuple, Union

import pydantic
from pydantic import (AnyUrl, BaseModel, ConfigDict, Field, HttpUrl, IPvAnyAddress, ValidationError,
                      condecimal, confloat, conint, conlist, constr)

HERE = os.path.dirname(os.path.abspath(__file__))

MODELS = []  # (name, model, candidates)
STRICTER = {}  # (name, index) -> why
ABSENT = {}  # (name, index) -> why: a null member that means "absent" (a patch's delete)


def case(name, candidates, stricter=None, absent=None):
    def deco(model):
        MODELS.append((name, model, candidates))
        for idx, why in (stricter or {}).items():
            STRICTER[(name, idx)] = why
        for idx, why in (absent or {}).items():
            ABSENT[(name, idx)] = why
        return model
    return deco


# --- required Optional[X]: null is a value -------------------------------

@case("optional-required", [
    {"a": None}, {"a": 1}, {}, {"a": "x"}, {"a": None, "b": None}, {"a": 2, "b": "s"},
])
class OptionalRequired(BaseModel):
    a: Optional[int]
    b: Optional[str] = None


@case("optional-required-nested", [
    {"inner": {"x": None}}, {"inner": {"x": 3}}, {"inner": {}}, {"inner": None},
    {"inner": {"x": None, "y": 2}},
])
class OptionalNestedRoot(BaseModel):
    class Inner(BaseModel):
        x: Optional[int]
        y: int = 1
    inner: Optional[Inner]


@case("optional-in-list", [
    {"items": [{"v": None}, {"v": "a"}]}, {"items": [{}]}, {"items": [None]}, {"items": []},
    {"items": [{"v": None, "w": None}]},
])
class OptionalInList(BaseModel):
    class Item(BaseModel):
        v: Optional[str]
        w: Optional[int] = 5
    items: List[Item]


@case("list-of-optionals", [
    {"xs": [1, None, 3]}, {"xs": [None]}, {"xs": ["a"]}, {"xs": None},
])
class ListOfOptionals(BaseModel):
    xs: List[Optional[int]]


@case("optional-model-required", [
    {"m": None, "n": 1}, {"m": {"k": "v"}, "n": 1}, {"n": 1}, {"m": {"k": None}, "n": 2},
    {"m": {"k": "v", "extra": 1}, "n": 1},
])
class OptionalModelRequired(BaseModel):
    class Sub(BaseModel):
        k: Optional[str]
    m: Optional[Sub]
    n: int


@case("optional-union", [
    {"u": None}, {"u": 1}, {"u": "a"}, {"u": 1.5}, {"u": []},
])
class OptionalUnion(BaseModel):
    u: Union[int, str, None]


@case("optional-dict-values", [
    {"d": {"a": None, "b": 1}}, {"d": {}}, {"d": {"a": "x"}},
])
class OptionalDictValues(BaseModel):
    d: Dict[str, Optional[int]]


# --- decimals ------------------------------------------------------------

@case("decimal-places", [
    {"d": "1.23"}, {"d": 1.23}, {"d": "1.234"}, {"d": 1.234}, {"d": "123.4"}, {"d": "1234"},
    {"d": "1.230"}, {"d": "-1.5"}, {"d": "abc"}, {"d": 12}, {"d": "0.10"}, {"d": "+5"},
    {"d": "1e2"}, {"d": " 5"}, {"d": "NaN"},
], stricter={13: "a leading space: pydantic strips it, the value would be stored with it"})
class DecimalPlaces(BaseModel):
    d: condecimal(max_digits=5, decimal_places=2)


@case("decimal-bounds", [
    {"d": "5"}, {"d": 5}, {"d": "11"}, {"d": 11}, {"d": "10"}, {"d": "10.0000001"}, {"d": "-0"},
    {"d": "0"}, {"d": -1}, {"d": "-0.0001"}, {"d": "9.99999999999999999999"},
])
class DecimalBounds(BaseModel):
    d: condecimal(ge=0, le=10)


@case("decimal-exclusive", [
    {"d": "0.5"}, {"d": "0"}, {"d": "1"}, {"d": 0.5}, {"d": 1}, {"d": "0.999"},
])
class DecimalExclusive(BaseModel):
    d: condecimal(gt=0, lt=1)


@case("decimal-digits", [
    {"d": "12345"}, {"d": "123456"}, {"d": "1234.5"}, {"d": "0.00001"}, {"d": "100000"},
    {"d": 99999}, {"d": 123456},
])
class DecimalDigits(BaseModel):
    d: condecimal(max_digits=5)


@case("decimal-integer", [
    {"d": "100"}, {"d": "100.0"}, {"d": "100.5"}, {"d": "1000"}, {"d": 100},
])
class DecimalInteger(BaseModel):
    d: condecimal(max_digits=3, decimal_places=0)


@case("decimal-plain", [
    {"d": "1"}, {"d": 1}, {"d": "-.5"}, {"d": "."}, {"d": "+"}, {"d": "1.5.5"}, {"d": True},
    {"d": None},
])
class DecimalPlain(BaseModel):
    d: decimal.Decimal


@case("decimal-optional-multiple", [
    {"d": "1.5"}, {"d": "1.25"}, {"d": 2}, {"d": 2.5}, {"d": 2.25}, {}, {"d": None},
])
class DecimalOptionalMultiple(BaseModel):
    d: Optional[decimal.Decimal] = Field(default=None, multiple_of=decimal.Decimal("0.5"))


@case("decimal-default", [
    {}, {"price": "9.99"}, {"price": "9.999"}, {"price": 1000},
])
class DecimalDefault(BaseModel):
    price: condecimal(max_digits=5, decimal_places=2, ge=0) = decimal.Decimal("1.50")


# --- patterns ------------------------------------------------------------

@case("pattern-dict-keys", [
    {"m": {"ab": 1}}, {"m": {"a1": 1}}, {"m": {}}, {"m": {"ab": "x"}}, {"m": {"xy": 2, "zz": 3}},
])
class PatternDictKeys(BaseModel):
    m: Dict[constr(pattern=r"^[a-z]+$"), int]


@case("pattern-dict-keys-models", [
    {"m": {"k-1": {"n": 1}}}, {"m": {"k_1": {"n": 1}}}, {"m": {"k-2": {}}},
])
class PatternDictKeysModels(BaseModel):
    class V(BaseModel):
        n: int
    m: Dict[constr(pattern=r"^k-\d$"), V]


@case("pattern-ignore-case", [
    {"code": "ABC-1"}, {"code": "abc-1"}, {"code": "Abc-12"}, {"code": "xyz"},
])
class PatternIgnoreCase(BaseModel):
    code: constr(pattern=r"(?i)^abc-\d$")


@case("pattern-unicode", [
    {"name": "Zoë"}, {"name": "名前"}, {"name": "a1"}, {"name": ""}, {"name": "é"},
])
class PatternUnicode(BaseModel):
    name: constr(pattern=r"^\p{L}+$")


@case("pattern-digits", [
    {"n": "123"}, {"n": "١٢٣"}, {"n": "12a"}, {"n": "123\n"},
])
class PatternDigits(BaseModel):
    n: constr(pattern=r"^\d+$")


@case("pattern-search", [
    {"s": "xx12yy"}, {"s": "1"}, {"s": "abc"}, {"s": ""},
])
class PatternSearch(BaseModel):
    s: constr(pattern=r"\d{2}")


@case("pattern-word-boundary", [
    {"s": "a cat sat"}, {"s": "concatenate"}, {"s": "cat"},
])
class PatternWordBoundary(BaseModel):
    s: constr(pattern=r"\bcat\b")


@case("pattern-lookahead", [
    {"pw": "abc123"}, {"pw": "abcdef"}, {"pw": "123456"}, {"pw": "a1"}, {"pw": "abc123\n"},
], stricter={4: "Python's $ matches before a final newline; Rust's (pydantic's default) and ours do not"})
class PatternLookahead(BaseModel):
    model_config = ConfigDict(regex_engine="python-re")
    pw: constr(pattern=r"^(?=.*\d)(?=.*[a-z]).{6,}$")


@case("pattern-lookbehind", [
    {"s": "price: $5"}, {"s": "5"}, {"s": "$ 5"},
])
class PatternLookbehind(BaseModel):
    model_config = ConfigDict(regex_engine="python-re")
    s: constr(pattern=r"(?<=\$)\d")


@case("pattern-list-items", [
    {"tags": ["a-b", "c"]}, {"tags": ["A"]}, {"tags": []}, {"tags": ["ok", "no way"]},
])
class PatternListItems(BaseModel):
    tags: List[constr(pattern=r"^[a-z-]+$", max_length=5)]


@case("pattern-named-groups", [
    {"d": "2024-01-02"}, {"d": "2024-1-02"}, {"d": "x2024-01-02"},
])
class PatternNamedGroups(BaseModel):
    d: constr(pattern=r"^(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})$")


# --- annotations and json_schema_extra -----------------------------------

@case("extra-examples", [
    {"name": "x"}, {"name": 1}, {},
])
class ExtraExamples(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "demo"}], "x-owner": "team"})
    name: str = Field(examples=["a", "b"], json_schema_extra={"x-ui": {"widget": "text"}})


@case("annotations", [
    {"a": 1, "b": "s"}, {"a": "1"}, {"a": 1, "b": 2},
], stricter={1: "\"1\" for an integer: pydantic's lax coercion, the schema says integer"})
class Annotations(BaseModel):
    a: int = Field(description="an int", deprecated=True)
    b: str = Field(default="d", title="B", json_schema_extra={"readOnly": True, "$comment": "c"})


# --- formats -------------------------------------------------------------

@case("format-http-url", [
    {"u": "https://example.com"}, {"u": "http://example.com/a/b?q=1#f"}, {"u": "ftp://example.com"},
    {"u": "example.com"}, {"u": "http://"}, {"u": "http://exa mple.com"}, {"u": "http://a:99999"},
    {"u": "https://[::1]:8080/x"}, {"u": "http://1.2.3.4/"}, {"u": "https://example.com/a b"},
    {"u": "http://a.123"}, {"u": "http://user:pw@host.io:80/p"}, {"u": ""},
], stricter={9: "a space: pydantic percent-encodes it, the value would be stored unencoded"})
class FormatHttpUrl(BaseModel):
    u: HttpUrl


@case("format-any-url", [
    {"u": "mailto:a@b.c"}, {"u": "x:y"}, {"u": "ftp://files.example.com/f.txt"}, {"u": "foo"},
    {"u": "/relative"}, {"u": "https://example.com"}, {"u": "file:///etc/hosts"}, {"u": "http:x"},
], stricter={7: "pydantic rewrites it to \"http://x/\"; stored as written it is no URL"})
class FormatAnyUrl(BaseModel):
    u: AnyUrl


@case("format-ipvany", [
    {"ip": "1.2.3.4"}, {"ip": "::1"}, {"ip": "1.2.3"}, {"ip": "01.2.3.4"}, {"ip": "256.1.1.1"},
    {"ip": "fe80::1%eth0"}, {"ip": "1.2.3.4/24"}, {"ip": "::ffff:1.2.3.4"}, {"ip": "1::2::3"},
    {"ip": "2001:db8::"}, {"ip": "ABCD::ef"}, {"ip": ""},
])
class FormatIpAny(BaseModel):
    ip: IPvAnyAddress


@case("format-ipv4", [
    {"ip": "10.0.0.1"}, {"ip": "::1"}, {"ip": "10.0.0"}, {"ip": "10.0.0.01"}, {"ip": "0.0.0.0"},
])
class FormatIpv4(BaseModel):
    ip: ipaddress.IPv4Address


@case("format-ipv6", [
    {"ip": "::"}, {"ip": "1:2:3:4:5:6:7:8"}, {"ip": "1:2:3:4:5:6:7:8:9"}, {"ip": "1.2.3.4"},
    {"ip": "::12345"}, {"ip": "1:2:3:4:5:6:1.2.3.4"}, {"ip": ":1:2"}, {"ip": "1::"},
])
class FormatIpv6(BaseModel):
    ip: ipaddress.IPv6Address


@case("format-duration", [
    {"td": "P1D"}, {"td": "PT1H30M"}, {"td": "P1Y2M3W4DT5H6M7.5S"}, {"td": "-P1D"}, {"td": "PT"},
    {"td": "P"}, {"td": "1 day"}, {"td": "P1000000000D"}, {"td": "p1d"}, {"td": "PT0S"},
    {"td": 3600}, {"td": "P1D1H"},
], stricter={6: "pydantic reads \"1 day\"; only ISO 8601 is taken as written",
             10: "a number of seconds: the schema says a string"})
class FormatDuration(BaseModel):
    td: datetime.timedelta


@case("format-datetime", [
    {"at": "2024-01-02T03:04:05Z", "d": "2024-02-29", "t": "10:20:30"},
    {"at": "2024-01-02T03:04:05", "d": "2023-02-29", "t": "10:20:30"},
    {"at": "not a date", "d": "2024-01-01", "t": "10:20"},
], stricter={})
class FormatDateTime(BaseModel):
    at: datetime.datetime
    d: datetime.date
    t: datetime.time


@case("format-uuid", [
    {"id": "123e4567-e89b-12d3-a456-426614174000"}, {"id": "123e4567e89b12d3a456426614174000"},
    {"id": "xyz"},
], stricter={1: "no dashes: pydantic reads it, the schema's uuid format has them"})
class FormatUuid(BaseModel):
    id: uuid.UUID


# --- the rest of what pydantic emits --------------------------------------

class Color(str, enum.Enum):
    red = "red"
    blue = "blue"


@case("enums-literals", [
    {"c": "red", "l": "a", "n": 1}, {"c": "green", "l": "a", "n": 1}, {"c": "red", "l": "z", "n": 1},
    {"c": "red", "l": "b", "n": 3},
])
class EnumsLiterals(BaseModel):
    c: Color
    l: Literal["a", "b"]
    n: Literal[1, 2]


@case("constrained-numbers", [
    {"i": 5, "f": 0.5}, {"i": 0, "f": 0.5}, {"i": 11, "f": 0.5}, {"i": 5, "f": 1.0}, {"i": 5.5, "f": 0.5},
    {"i": 6, "f": 0.5},
])
class ConstrainedNumbers(BaseModel):
    i: conint(ge=1, le=10, multiple_of=5)
    f: confloat(gt=0, lt=1)


@case("constrained-strings", [
    {"s": "abc"}, {"s": "a"}, {"s": "abcdefghijk"}, {"s": "héllo"},
])
class ConstrainedStrings(BaseModel):
    s: constr(min_length=2, max_length=10)


@case("lists-sets-tuples", [
    {"l": [1], "s": [1, 2], "t": [1, "a"]}, {"l": [], "s": [1], "t": [1, "a"]},
    {"l": [1, 2, 3, 4], "s": [1], "t": [1, "a"]}, {"l": [1], "s": [1, 1], "t": [1, "a"]},
    {"l": [1], "s": [1], "t": [1]}, {"l": [1], "s": [1], "t": [1, "a", 2]},
], stricter={3: "a set with a repeated item: pydantic deduplicates, the schema says uniqueItems"})
class ListsSetsTuples(BaseModel):
    l: conlist(int, min_length=1, max_length=3)
    s: Set[int]
    t: Tuple[int, str]


@case("discriminated", [
    {"pet": {"kind": "cat", "lives": 9}}, {"pet": {"kind": "dog", "bark": True}},
    {"pet": {"kind": "cow"}}, {"pet": {"kind": "cat"}}, {"pet": {"kind": "dog", "bark": "loud"}},
])
class Discriminated(BaseModel):
    class Cat(BaseModel):
        kind: Literal["cat"]
        lives: int

    class Dog(BaseModel):
        kind: Literal["dog"]
        bark: bool
    pet: Annotated[Union[Cat, Dog], Field(discriminator="kind")]


@case("forbid-extra", [
    {"a": 1}, {"a": 1, "b": 2}, {"a": 1, "b": None},
], absent={2: "a null member that may be absent means absent: the value stored is {\"a\": 1}"})
class ForbidExtra(BaseModel):
    model_config = ConfigDict(extra="forbid")
    a: int


@case("recursive", [
    {"name": "root", "children": [{"name": "a", "children": []}]},
    {"name": "root", "children": [{"children": []}]},
    {"name": "root"},
])
class Node(BaseModel):
    name: str
    children: List["Node"] = []


@case("dict-of-models", [
    {"m": {"a": {"x": 1}}}, {"m": {"a": {"x": "no"}}}, {"m": {"a": None}},
], absent={2: "a null dict entry means absent (a patch's delete): the value stored is {\"m\": {}}"})
class DictOfModels(BaseModel):
    class V(BaseModel):
        x: int
    m: Dict[str, V]


@case("defaults-nested", [
    {}, {"sub": {}}, {"sub": {"a": 2}}, {"sub": {"a": "x"}},
])
class DefaultsNested(BaseModel):
    class Sub(BaseModel):
        a: int = 1
        b: List[int] = [1, 2]
    sub: Sub = Sub()
    n: Optional[int] = 3


@case("any-and-unions", [
    {"any": {"x": [1, None]}, "u": 1}, {"any": None, "u": "s"}, {"u": 1.5}, {"any": 1, "u": [1]},
])
class AnyAndUnions(BaseModel):
    any: Any = None
    u: Union[int, str]


@case("bools-strict-json", [
    {"b": True, "i": 1, "f": 1}, {"b": "yes", "i": 1, "f": 1.0}, {"b": True, "i": "1", "f": 1.0},
    {"b": 1, "i": 1, "f": 1.0}, {"b": True, "i": 1.0, "f": 1.0},
], stricter={1: "\"yes\" for a boolean: pydantic's lax coercion, the schema says boolean",
             2: "\"1\" for an integer: pydantic's lax coercion, the schema says integer",
             3: "1 for a boolean: pydantic's lax coercion, the schema says boolean"})
class BoolsStrictJson(BaseModel):
    b: bool
    i: int
    f: float


def verdict(model, value):
    try:
        model.model_validate_json(json.dumps(value))
        return True, None
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "(root)"
        return False, f"{loc}: {err['msg']}"


def main():
    if len(MODELS) < 40:
        sys.exit(f"only {len(MODELS)} models")
    for entry in os.listdir(HERE):
        if os.path.isdir(os.path.join(HERE, entry)):
            shutil.rmtree(os.path.join(HERE, entry))
    for name, model, candidates in MODELS:
        out = {"model": model.__name__, "pydantic": pydantic.VERSION,
               "schema": model.model_json_schema(), "valid": [], "invalid": [], "stricter": [],
               "absent": []}
        for i, value in enumerate(candidates):
            ok, why = verdict(model, value)
            if (name, i) in STRICTER:
                if not ok:
                    sys.exit(f"{name}[{i}]: marked stricter, but pydantic refuses it: {why}")
                out["stricter"].append({"value": value, "why": STRICTER[(name, i)]})
            elif (name, i) in ABSENT:
                if ok:
                    sys.exit(f"{name}[{i}]: marked absent, but pydantic accepts it")
                out["absent"].append({"value": value, "pydantic": why, "why": ABSENT[(name, i)]})
            elif ok:
                out["valid"].append({"value": value})
            else:
                out["invalid"].append({"value": value, "pydantic": why})
        if not out["valid"]:
            sys.exit(f"{name}: no valid instance")
        os.makedirs(os.path.join(HERE, name))
        with open(os.path.join(HERE, name, "case.json"), "w") as f:
            json.dump(out, f, indent=1, ensure_ascii=False)
            f.write("\n")
    print(f"{len(MODELS)} models, "
          f"{sum(len(c) for _, _, c in MODELS)} instances written to {HERE}")


if __name__ == "__main__":
    main()
