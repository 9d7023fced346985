"""The versioned table schemas in ``schemas/`` as Arrow schemas: the single source of truth.

Each ``schemas/<table>.json`` holds ``name``, ``version``, ``description`` and ``fields``
(``name``, ``type``, ``nullable``, ``description``). Unless a schema says ``"provenance": false``
every table also gets the provenance columns of ``schemas/_provenance.json``. Writers build tables
with :func:`table_from_rows`, the build writes them under :func:`as_schema`, readers check them with
:func:`check_table`; nothing re-declares a column by hand.

>>> schema = load_schema("quarantine")            # doctest: +SKIP
>>> table = table_from_rows("quarantine", rows)   # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from operator import attrgetter
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa

from ctcorpus.errors import OutputError

#: ``schemas/`` of the checkout, through the package's ``_schemas`` link to it: a wheel holds the
#: files there (package data), where ``schemas/`` beside the package is not installed.
SCHEMA_DIR = (Path(__file__).parent / "_schemas").resolve()

_SCALARS: dict[str, pa.DataType] = {
    "string": pa.string(),
    "bool": pa.bool_(),
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "uint8": pa.uint8(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "binary": pa.binary(),
    "date32": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}
_LIST = re.compile(r"^list<(.+)>$")


#: A record type (a dataclass) of one table's rows.
Row = TypeVar("Row")


def arrow_type(spec: str) -> pa.DataType:
    """Parse a schema type string (``float64``, ``list<string>``, ``list<list<int64>>``)."""
    match = _LIST.match(spec)
    if match:
        return pa.list_(arrow_type(match.group(1)))
    try:
        return _SCALARS[spec]
    except KeyError:
        raise OutputError(f"unknown column type {spec!r}; use one of {sorted(_SCALARS)} or list<...>") from None


@dataclass(frozen=True, slots=True)
class TableSchema:
    """One table's schema: its name, version, Arrow schema and column descriptions."""

    name: str
    version: int
    description: str
    arrow: pa.Schema
    descriptions: Mapping[str, str]

    @property
    def columns(self) -> list[str]:
        return list(self.arrow.names)


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OutputError("no such schema file", path=path) from None


def schema_names() -> list[str]:
    """Names of all table schemas (files not starting with ``_``)."""
    return sorted(p.stem for p in SCHEMA_DIR.glob("*.json") if not p.stem.startswith("_"))


@cache
def load_schema(name: str) -> TableSchema:
    """Load ``schemas/<name>.json`` (plus provenance columns) as a :class:`TableSchema`."""
    doc = _read(SCHEMA_DIR / f"{name}.json")
    fields = list(doc["fields"])
    if doc.get("provenance", True):
        fields += _read(SCHEMA_DIR / "_provenance.json")["fields"]
    names = [f["name"] for f in fields]
    if len(set(names)) != len(names):
        raise OutputError(f"schema {name!r} declares a column twice", path=SCHEMA_DIR / f"{name}.json")
    arrow = pa.schema(
        [pa.field(f["name"], arrow_type(f["type"]), nullable=f.get("nullable", False)) for f in fields],
        metadata={"ctcorpus.table": name, "ctcorpus.schema_version": str(doc["version"])},
    )
    return TableSchema(
        name=name,
        version=int(doc["version"]),
        description=doc.get("description", ""),
        arrow=arrow,
        descriptions={f["name"]: f.get("description", "") for f in fields},
    )


def _as_mapping(row: Any) -> Mapping[str, Any]:
    if dataclasses.is_dataclass(row) and not isinstance(row, type):
        return {f.name: getattr(row, f.name) for f in dataclasses.fields(row)}
    if isinstance(row, Mapping):
        return row
    raise OutputError(f"cannot turn a {type(row).__name__} into a table row")


def _plain(value: Any) -> Any:
    """Enums to their values, tuples to lists: what Arrow takes."""
    if hasattr(value, "value") and isinstance(getattr(type(value), "__members__", None), Mapping):
        return value.value
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def table_from_rows(name: str, rows: Iterable[Any], **provenance: Any) -> pa.Table:
    """Build a table of schema ``name`` from dataclass records or mappings.

    ``provenance`` fills columns the rows lack (e.g. ``pipeline_version=...``). A row that
    lacks a column, or has one the schema does not know, is an error: code and schema agree.
    Records of one dataclass (what a stage returns) are read column by column and checked once:
    a dict per row cost more than building the rows (the reports' 35 rows a report: 190 µs).
    """
    schema = load_schema(name)
    names = schema.columns
    rows = list(rows)
    if rows and len(kinds := set(map(type, rows))) == 1 and dataclasses.is_dataclass(record := kinds.pop()):
        fields = {f.name for f in dataclasses.fields(record)}
        _check_columns_of_row(name, fields, names, provenance)
        columns = {c: _plain_column(list(map(attrgetter(c), rows))) if c in fields
                   else [_plain(provenance[c])] * len(rows) for c in names}
    else:
        columns = {c: [] for c in names}
        for row in rows:
            data = _as_mapping(row)
            _check_columns_of_row(name, data, names, provenance)
            for column, values in columns.items():
                values.append(_plain(data[column] if column in data else provenance[column]))
    return pa.Table.from_pydict(columns, schema=schema.arrow)


def _check_columns_of_row(name: str, row: Collection[str], columns: Sequence[str], provenance: Mapping[str, Any]) -> None:
    """Raise :class:`OutputError` unless a row's columns (and ``provenance``) are the schema's ``columns``."""
    if unknown := set(row) - set(columns):
        raise OutputError(f"rows for table {name!r} have columns not in its schema: {sorted(unknown)}")
    for column in columns:
        if column not in row and column not in provenance:
            raise OutputError(f"a row for table {name!r} lacks column {column!r}")


#: The exact types :func:`_plain` returns as they are (an enum is none of them, even one of strs).
_AS_IS = frozenset({str, int, float, bool, type(None)})


def _plain_column(values: list[Any]) -> list[Any]:
    """:func:`_plain` of each value, skipped where all are of a type Arrow takes as it is (most columns)."""
    return values if _AS_IS.issuperset(map(type, values)) else [_plain(v) for v in values]


def rows_from_table(record: type[Row], table: pa.Table) -> list[Row]:
    """The records a table written by :func:`table_from_rows` holds: the record's fields read
    back (provenance columns it lacks are left out, lists become tuples)."""
    names = [f.name for f in dataclasses.fields(record)]  # type: ignore[arg-type]
    columns = [table.column(name).to_pylist() for name in names]
    return [record(**{n: tuple(v) if isinstance(v, list) else v for n, v in zip(names, values, strict=True)})
            for values in zip(*columns, strict=True)]


def _check_columns(name: str, table: pa.Table) -> None:
    """Raise :class:`OutputError` unless ``table``'s column names and types are those of schema ``name``."""
    schema = load_schema(name)
    if table.schema.names != schema.arrow.names:
        raise OutputError(
            f"table {name!r} has columns {table.schema.names}, schema v{schema.version} expects {schema.arrow.names}"
        )
    for field in schema.arrow:
        actual = table.schema.field(field.name).type
        if actual != field.type:
            raise OutputError(f"table {name!r} column {field.name!r} is {actual}, schema says {field.type}")


def as_schema(name: str, table: pa.Table) -> pa.Table:
    """``table`` under the exact Arrow schema of ``name`` (nullability, version metadata) once its column
    names and types match it: a stored result carries the schema file of the run that stored it, which a
    bump that left the stage's key alone made older than the version the manifest states."""
    _check_columns(name, table)
    try:
        return table.cast(load_schema(name).arrow)
    except (pa.ArrowInvalid, ValueError) as exc:  # nulls in a column the schema says is never null
        raise OutputError(f"table {name!r} does not fit schema v{load_schema(name).version} ({exc})") from None


def check_table(name: str, table: pa.Table) -> None:
    """Raise :class:`OutputError` if ``table`` does not match schema ``name`` exactly: column names,
    types and nullability, no nulls where none may be, and the schema version in its metadata."""
    _check_columns(name, table)
    schema = load_schema(name)
    for field in schema.arrow:
        actual = table.schema.field(field.name)
        if actual.nullable != field.nullable:
            raise OutputError(f"table {name!r} column {field.name!r} is {'' if actual.nullable else 'not '}nullable, "
                              f"schema v{schema.version} says {'' if field.nullable else 'not '}nullable")
        if not field.nullable and table.column(field.name).null_count:
            raise OutputError(f"table {name!r} column {field.name!r} holds nulls, schema v{schema.version} allows none")
    written = (table.schema.metadata or {}).get(b"ctcorpus.schema_version", b"").decode()
    if written != str(schema.version):
        raise OutputError(f"table {name!r} is marked schema version {written or 'none'}, schema is v{schema.version}")
