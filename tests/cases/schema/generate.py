#!/usr/bin/env python3
"""Writes the schema.json of every case that pydantic emits.

Run it from anywhere with pydantic 2 installed (its pydantic.v1 module gives
the pydantic 1 output): python3 tests/cases/schema/generate.py
The instances (valid.json, invalid.json, defaults.json) are written by hand.
Cases not listed here (v2.8-allof, hash-ref) are written by hand too: see
README.md.
"""
import datetime
import decimal
import enum
import json
import os
import uuid
from typing import Any, Dict, List, Literal, Optional, Set, Tuple, Union

from pydantic import AnyUrl, BaseModel, ConfigDict, Field, Json, SecretStr, conint, conlist, constr
from pydantic import v1

HERE = os.path.dirname(os.path.abspath(__file__))


# plain: one flat model with defaults.
class Document(BaseModel):
    title: str
    body: str = ""
    tags: List[str] = []
    views: int = 0
    published: bool = False
    rating: float = 0.5


# nested: models inside models, lists of models, an optional model.
class Address(BaseModel):
    street: str
    city: str
    country: str = "FR"


class Customer(BaseModel):
    name: str
    address: Address


class Line(BaseModel):
    sku: str
    qty: int = Field(ge=1)
    price: float = Field(gt=0)
    gift: bool = False


class Order(BaseModel):
    customer: Customer
    lines: List[Line] = []
    shipping: Optional[Address] = None
    notes: Optional[str]


# optional: Optional in all its forms.
class Sub(BaseModel):
    x: int = 1
    y: int = 2


class Optionals(BaseModel):
    required_optional: Optional[int]
    with_none: Optional[str] = None
    with_value: Optional[int] = 7
    model: Optional[Sub] = None
    numbers: Optional[List[int]] = None
    holes: List[Optional[int]] = []


# enums: Enum, IntEnum, Literal, a single Literal (const).
class Status(str, enum.Enum):
    open = "open"
    closed = "closed"


class Priority(enum.IntEnum):
    low = 1
    mid = 2
    high = 3


class Ticket(BaseModel):
    status: Status = Status.open
    priority: Priority
    kind: Literal["bug", "feature"]
    version: Literal[1] = 1
    labels: List[Status] = []


# constrained: string, number and array constraints.
class Constrained(BaseModel):
    name: constr(min_length=2, max_length=5)
    code: str = Field(pattern=r"^[A-Z]{3}-\d{3}$")
    qty: conint(ge=1, le=10) = 1
    price: float = Field(default=1.0, gt=0, lt=100)
    step: int = Field(default=0, multiple_of=5)
    ratio: float = Field(default=0.5, multiple_of=0.25)
    tags: conlist(str, min_length=1, max_length=3) = ["a"]
    ids: Set[int] = set()
    point: Tuple[int, int] = (0, 0)


# recursive: a tree (the root is a $ref into $defs).
class TreeNode(BaseModel):
    name: str
    weight: int = 1
    children: List["TreeNode"] = []


# forbid: extra="forbid", dicts of values and of models.
class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str
    done: bool = False


class Board(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    counts: Dict[str, int] = {}
    items: Dict[str, Item] = {}


# discriminated: a tagged union.
class Cat(BaseModel):
    kind: Literal["cat"]
    lives: int = 9


class Dog(BaseModel):
    kind: Literal["dog"]
    good: bool = True


class Home(BaseModel):
    pet: Union[Cat, Dog] = Field(discriminator="kind")
    others: List[Union[Cat, Dog]] = []


# formats: the checked formats and an annotated one.
class Event(BaseModel):
    at: datetime.datetime
    day: Optional[datetime.date] = None
    time: Optional[datetime.time] = None
    id: uuid.UUID
    link: Optional[AnyUrl] = None


# annotations: every annotation pydantic writes.
class Annotated(BaseModel):
    """A model with annotations."""

    name: str = Field(title="The name", description="Who", examples=["Ada"])
    old: int = Field(default=0, deprecated=True)
    secret: SecretStr = SecretStr("")


# mixed: Any, unions of scalars, Decimal, nested lists.
class Mixed(BaseModel):
    anything: Any = None
    num_or_text: Union[int, str] = 0
    amount: decimal.Decimal = decimal.Decimal("0")
    grid: List[List[int]] = []
    flag: Optional[bool] = None


# patterns: the regex dialect.
class Patterns(BaseModel):
    word: str = Field(default="a", pattern=r"^\w+$")
    email: str = Field(default="a@b.c", pattern=r"^[\w.+-]+@[\w-]+\.[\w.]+$")
    group: str = Field(default="ab", pattern=r"^(?:ab)+$")
    named: str = Field(default="x1", pattern=r"^(?P<letter>[a-z])\d$")
    spaced: str = Field(default="a b", pattern=r"^\S+\s\S+$")
    lazy: str = Field(default="ab", pattern=r"^a.*?b$")
    dot: str = Field(default="a.b", pattern=r"^a\.b$")
    nodigit: str = Field(default="x", pattern=r"^[^\d\s]+$")
    brackets: str = Field(default="[]", pattern=r"^[\]\[]+$")
    unanchored: str = Field(default="xx42xx", pattern=r"\d{2}")
    hexa: str = Field(default="A", pattern=r"^\x41\u0042?$")


# unicode: lengths in code points.
class Unicode(BaseModel):
    name: constr(min_length=2, max_length=3) = "ab"
    two: str = Field(default="ab", pattern=r"^.{2}$")
    accents: str = Field(default="é", pattern=r"^[à-ÿ]+$")


# dict-keys: constrained dict keys (propertyNames), a Json field (contentSchema).
class Keys(BaseModel):
    by_status: Dict[Status, int] = {}
    long_keys: Dict[constr(min_length=2), bool] = {}
    raw: Optional[Json[List[int]]] = None


# v1-definitions: the pydantic 1 form (definitions, #/definitions/ refs).
class V1Color(str, enum.Enum):
    red = "red"
    green = "green"


class V1Part(v1.BaseModel):
    name: str = v1.Field(..., min_length=1)
    count: int = v1.Field(1, ge=0)


class V1Machine(v1.BaseModel):
    title: str
    main: V1Part
    spare: Optional[V1Part] = None
    parts: List[V1Part] = []
    color: V1Color = V1Color.red
    size: Tuple[int, int] = (1, 1)
    note: Optional[str]


V2 = {
    "plain": Document,
    "nested": Order,
    "optional": Optionals,
    "enums": Ticket,
    "constrained": Constrained,
    "recursive": TreeNode,
    "forbid": Board,
    "discriminated": Home,
    "formats": Event,
    "annotations": Annotated,
    "mixed": Mixed,
    "patterns": Patterns,
    "unicode": Unicode,
    "dict-keys": Keys,
}


def write(case, schema):
    d = os.path.join(HERE, case)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "schema.json"), "w") as f:
        json.dump(schema, f, indent=2, ensure_ascii=False)
        f.write("\n")


for case, model in V2.items():
    write(case, model.model_json_schema())
write("v1-definitions", V1Machine.schema())
