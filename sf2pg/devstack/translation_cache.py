"""Translate each SQL text once in the emulator, as Snowflake's compile cache would.

fakesnow parses every statement twice (the HTTP route, then the cursor), rewrites it for DuckDB
with some eighty tree transforms, generates DuckDB's SQL from the result, and parses and generates
once more to describe its columns. For the long fingerprint statements that was about two seconds
of the emulator's CPU each, more than DuckDB spent running them: the test suite and the benchmark
were timing sqlglot. Snowflake does not charge its client for compiling, so the dev stack should
not either.

Parsing is a pure function of the text and the dialect, so parse trees are cached by both. A
SELECT's transforms depend only on its text and the session's database and schema (fakesnow
inlines session variables into the text before parsing), so a SELECT without bindings is also
cached transformed, keyed by those three, with its generated SQL. Cached trees are shared and
never rewritten: fakesnow's transforms rewrite trees in place, so they get a copy, and only the
statements they do not rewrite afterwards (SELECTs and DESCRIBEs) get the shared tree.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

_CACHED = "sf2pg_cached_text"  # meta of a shared parse tree: the text it came from
# A tree takes about 150 bytes per character of its SQL, so each cache is bounded by the length of
# the texts it holds: 500 kB of SQL, some 75 MB of trees, a dozen of the longest fingerprint
# statements (a repeat follows its first run closely: a check run twice, a verify after a load).
_TEXT_BUDGET = 500_000


class _Trees:
    """A thread-safe LRU of shared sqlglot trees, bounded by the total length of their texts."""

    def __init__(self, budget: int = _TEXT_BUDGET) -> None:
        self._items: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self._budget, self._held = budget, 0
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: Any, tree: Any, size: int) -> None:
        with self._lock:
            if (old := self._items.pop(key, None)) is not None:
                self._held -= old[1]
            self._items[key] = (tree, size)
            self._held += size
            while self._held > self._budget and len(self._items) > 1:
                _, (_, dropped) = self._items.popitem(last=False)
                self._held -= dropped


_parsed, _transformed = _Trees(), _Trees()


def _shared_parse(text: str, dialect: str, parse: Callable[[str], Any]) -> Any:
    """The shared tree of ``text``: read it, never rewrite it."""
    key = (dialect, text)
    if (tree := _parsed.get(key)) is None:
        tree = parse(text)
        tree.meta[_CACHED] = text
        _memoize_sql(tree)
        _parsed.put(key, tree, len(text))
    return tree


def _memoize_sql(tree: Any) -> None:
    """Generate each dialect's SQL of a shared tree once (the tree never changes)."""
    generate, memo = tree.sql, {}

    def sql(dialect: Any = None, **opts: Any) -> str:
        if opts:
            return generate(dialect=dialect, **opts)
        if dialect not in memo:
            memo[dialect] = generate(dialect=dialect)
        return memo[dialect]

    tree.sql = sql


def install() -> None:
    """Route fakesnow's parses, SELECT transforms and describes through the caches (idempotent)."""
    import fakesnow.cursor
    import fakesnow.dialect
    import fakesnow.server
    import sqlglot
    from sqlglot import exp

    cursor_class = fakesnow.cursor.FakeSnowflakeCursor
    if getattr(cursor_class, "_sf2pg_translation_cache", False):
        return
    snowflake_parse = fakesnow.dialect.parse_one

    def route_parse(command: str) -> Any:
        # the route only reads its tree (the statement type, the placeholders)
        return _shared_parse(command, "snowflake", snowflake_parse)

    def cursor_parse(command: str) -> Any:
        # a SELECT reaches the transforms below as the shared tree, anything else as a copy
        tree = _shared_parse(command, "snowflake", snowflake_parse)
        return tree if isinstance(tree, exp.Select) else tree.copy()

    fakesnow.server.parse_one = route_parse
    fakesnow.cursor.parse_one = cursor_parse

    transform = cursor_class._transform

    def cached_transform(self: Any, expression: Any, params: Any) -> Any:
        text = expression.meta.get(_CACHED)
        if text is None:
            return transform(self, expression, params)
        if params:
            return transform(self, expression.copy(), params)
        key = (text, self._conn.database, self._conn.schema)
        if (tree := _transformed.get(key)) is None:
            tree = transform(self, expression.copy(), params)
            _memoize_sql(tree)
            _transformed.put(key, tree, len(text))
        return tree

    def describe_last_sql(self: Any) -> list:
        # fakesnow's own, with the DESCRIBE's tree shared: it recurs as often as the statement does
        with self._conn.cursor() as cur:
            text = f"DESCRIBE {self._last_sql}"
            expression = _shared_parse(text, "duckdb", lambda t: sqlglot.parse_one(t, read="duckdb"))
            cur._execute(expression, self._last_params)
            return cur.fetchall()

    cursor_class._transform = cached_transform
    cursor_class._describe_last_sql = describe_last_sql
    cursor_class._sf2pg_translation_cache = True
