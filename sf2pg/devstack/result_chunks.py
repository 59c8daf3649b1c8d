"""Large results the way Snowflake serves them: the first chunk inline, the rest as URLs to download.

Real Snowflake answers a query with its first result chunk inside the JSON (``rowsetBase64``) and
lists the others under ``chunks`` (``url``, ``rowCount``, ``uncompressedSize``, ``compressedSize``),
with ``qrmk`` and ``chunkHeaders``: presigned cloud-storage URLs the connector downloads in parallel
(``client_prefetch_threads``), gzip-compressed, sending the SSE-C headers. Chunks grow as the result
goes on, and each one carries its own Arrow types: a NUMBER column arrives as int8, int16, int32 or
int64 (or decimal128 past int64) depending on that chunk's values. fakesnow sends every result as one
inline batch with the DuckDB column types, which hides all of that; this module serves it the
Snowflake way from the emulator process itself.

Chunk sizes, in rows, from the environment of the emulator process:

- ``SF2PG_EMULATOR_INLINE_ROWS``: rows of the first chunk, sent inline (default 2000);
- ``SF2PG_EMULATOR_CHUNK_ROWS``: rows of the first downloaded chunk (default 16000); each next
  chunk has twice the rows of the one before ...
- ``SF2PG_EMULATOR_MAX_CHUNK_ROWS``: ... up to this many (default 256000).

The defaults give Snowflake-like sizes for a row of 100-200 bytes: a small inline chunk, then
downloads growing from about 2 MB to tens of MB uncompressed. A session (or statement) that sets
``CLIENT_RESULT_CHUNK_SIZE`` (MB) gets no chunk larger than that, uncompressed, as Snowflake enforces
it with the 2026_04 behavior change bundle.
"""

from __future__ import annotations

import base64
import contextvars
import gzip
import hashlib
import hmac
import os
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SSE_C_ALGORITHM = "x-amz-server-side-encryption-customer-algorithm"
SSE_C_KEY = "x-amz-server-side-encryption-customer-key"
ROUTE = "/sf2pg-stage/results"
KEEP_UNREAD_SECONDS = 900.0  # a result nobody downloads (its cursor closed early) is dropped after this
KEEP_READ_SECONDS = 60.0  # a downloaded chunk stays this long, for the connector's retry of a failed read

_INTEGERS = (pa.int8(), pa.int16(), pa.int32(), pa.int64())


@dataclass(frozen=True)
class ChunkSizes:
    """How many rows each chunk of a result holds."""

    inline_rows: int = 2000
    first_rows: int = 16000
    max_rows: int = 256000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ChunkSizes:
        env = os.environ if env is None else env
        default = cls()
        sizes = cls(
            int(env.get("SF2PG_EMULATOR_INLINE_ROWS", default.inline_rows)),
            int(env.get("SF2PG_EMULATOR_CHUNK_ROWS", default.first_rows)),
            int(env.get("SF2PG_EMULATOR_MAX_CHUNK_ROWS", default.max_rows)),
        )
        if min(sizes.inline_rows, sizes.first_rows, sizes.max_rows) < 1:
            raise ValueError(f"SF2PG_EMULATOR_*_ROWS must be at least 1, found {sizes}")
        return sizes

    def split(self, total: int, most_rows: int | None = None) -> list[int]:
        """Row counts of the chunks of a ``total``-row result: inline first, then growing (to at most
        ``most_rows``, the rows that fit CLIENT_RESULT_CHUNK_SIZE)."""
        cap = most_rows or total or 1
        counts = [min(total, self.inline_rows, cap)]
        rest, size = total - counts[0], self.first_rows
        while rest > 0:
            counts.append(min(rest, size, cap))
            rest -= counts[-1]
            size = min(size * 2, self.max_rows)
        return counts


def narrow_fixed_columns(table: pa.Table) -> pa.Table:
    """Each FIXED (NUMBER) column in the narrowest Arrow integer that holds this chunk's unscaled values,
    as Snowflake encodes it; decimal128 only when a value is beyond int64."""
    arrays, fields = [], []
    for i, f in enumerate(table.schema):
        column = table.column(i).combine_chunks()
        meta = f.metadata or {}
        if meta.get(b"logicalType") == b"FIXED":
            column = _narrowest(column)
            f = f.with_type(column.type)
        arrays.append(column)
        fields.append(f)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=table.schema.metadata))


def _narrowest(arr: pa.Array) -> pa.Array:
    if pa.types.is_decimal(arr.type):
        unscaled = _unscaled_int64(arr)
        if unscaled is None:
            return arr  # a value beyond int64: Snowflake sends this chunk as decimal128 too
        arr = unscaled
    elif not pa.types.is_integer(arr.type):
        return arr
    low, high = pc.min_max(arr).values()
    low, high = low.as_py() or 0, high.as_py() or 0
    for t in _INTEGERS:
        info = np.iinfo(t.to_pandas_dtype())
        if info.min <= low and high <= info.max:
            return pc.cast(arr, t)
    return arr


def _unscaled_int64(arr: pa.Array) -> pa.Array | None:
    """A decimal128 array's unscaled values as int64, or None when one does not fit."""
    words = np.frombuffer(arr.buffers()[1], dtype="<i8")[2 * arr.offset : 2 * (arr.offset + len(arr))]
    low, high = words[0::2], words[1::2]
    valid = arr.is_valid().to_numpy(zero_copy_only=False)
    if not np.array_equal(high[valid], low[valid] >> 63):
        return None
    return pa.array(low, type=pa.int64(), mask=~valid)


def ipc_stream(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


@dataclass
class _Chunk:
    body: bytes  # gzip
    rows: int
    uncompressed: int
    key: str  # the SSE-C key the download must present
    created: float = field(default_factory=time.monotonic)
    first_read: float | None = None


class ChunkStore:
    """Result chunks waiting to be downloaded, behind presigned, SSE-C protected URLs."""

    def __init__(self) -> None:
        self._secret = secrets.token_bytes(32)
        self._chunks: dict[str, _Chunk] = {}
        self._lock = threading.Lock()
        self.served = 0  # downloads answered, for tests of how far a client reads ahead

    def put(self, base_url: str, tables: list[pa.Table]) -> dict[str, Any]:
        """Store a result's remote chunks; the response fields that point the connector at them."""
        self._expire()
        result_id = secrets.token_hex(12)
        qrmk = base64.b64encode(secrets.token_bytes(32)).decode()
        listed = []
        for n, table in enumerate(tables):
            raw = ipc_stream(table)
            body = gzip.compress(raw, compresslevel=1)
            path = f"{ROUTE}/{result_id}_0/main/data_0_0_{n}"
            with self._lock:
                self._chunks[path] = _Chunk(body, table.num_rows, len(raw), qrmk)
            expires = int(time.time()) + int(KEEP_UNREAD_SECONDS)
            url = f"{base_url}{path}?Expires={expires}&Signature={self._sign(path, expires)}"
            listed.append(
                {"url": url, "rowCount": table.num_rows, "uncompressedSize": len(raw), "compressedSize": len(body)}
            )
        return {
            "chunks": listed,
            "qrmk": qrmk,
            "chunkHeaders": {SSE_C_ALGORITHM: "AES256", SSE_C_KEY: qrmk},
        }

    def get(self, path: str, query: Mapping[str, str], headers: Mapping[str, str]) -> tuple[int, bytes]:
        """(HTTP status, body) for a download, checking the signature and the SSE-C key as S3 does."""
        expires = query.get("Expires", "")
        signature = query.get("Signature", "")
        if not expires.isdigit() or not hmac.compare_digest(signature, self._sign(path, int(expires))):
            return 403, b"<Error><Code>SignatureDoesNotMatch</Code></Error>"
        if int(expires) < time.time():
            return 403, b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
        with self._lock:
            chunk = self._chunks.get(path)
            if chunk is not None and chunk.first_read is None:
                chunk.first_read = time.monotonic()
        if chunk is None:
            return 404, b"<Error><Code>NoSuchKey</Code></Error>"
        if headers.get(SSE_C_ALGORITHM) != "AES256" or headers.get(SSE_C_KEY) != chunk.key:
            return 400, b"<Error><Code>InvalidRequest</Code><Message>SSE-C key missing or wrong</Message></Error>"
        with self._lock:
            self.served += 1
        return 200, chunk.body

    def _sign(self, path: str, expires: int) -> str:
        return hmac.new(self._secret, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def _expire(self) -> None:
        now = time.monotonic()
        with self._lock:
            for path, chunk in list(self._chunks.items()):
                read = chunk.first_read is not None and now - chunk.first_read > KEEP_READ_SECONDS
                if read or now - chunk.created > KEEP_UNREAD_SECONDS:
                    del self._chunks[path]


@dataclass
class _PendingResult:
    sizes: ChunkSizes
    max_bytes: int | None = None  # CLIENT_RESULT_CHUNK_SIZE, in bytes
    remote: list[pa.Table] = field(default_factory=list)


_CURRENT: contextvars.ContextVar[_PendingResult | None] = contextvars.ContextVar("sf2pg_result", default=None)


class ResultChunking:
    """Installs the chunked results into fakesnow's server: the query answer and the download route."""

    def __init__(self, sizes: ChunkSizes) -> None:
        self.sizes = sizes
        self.store = ChunkStore()

    def to_ipc(self, original: Any) -> Any:
        """fakesnow's ``to_ipc`` (the whole result, Snowflake-encoded, as one IPC stream), cut into chunks
        when called inside a query answer: returns the inline chunk, keeps the others for ``answer``."""

        def chunked(table: pa.Table) -> pa.Buffer:
            pending = _CURRENT.get()
            if pending is None:
                return original(table)
            most_rows = None
            if pending.max_bytes and table.num_rows:
                most_rows = max(1, int(pending.max_bytes * table.num_rows / max(table.nbytes, 1)))
            counts = pending.sizes.split(table.num_rows, most_rows)
            offsets = np.cumsum([0, *counts])
            parts = [narrow_fixed_columns(table.slice(int(o), n)) for o, n in zip(offsets, counts, strict=False)]
            pending.remote = parts[1:]
            return pa.py_buffer(ipc_stream(parts[0]))

        return chunked

    def answer(self, query_request: Any) -> Any:
        """Wrap fakesnow's query endpoint: the result's remote chunks are listed in its JSON."""
        import json

        from starlette.responses import JSONResponse

        async def endpoint(request: Any) -> Any:
            chunk_mb = getattr(request.state, "sf_parameters", {}).get("CLIENT_RESULT_CHUNK_SIZE")
            pending = _PendingResult(self.sizes, int(chunk_mb) * 2**20 if chunk_mb else None)
            token = _CURRENT.set(pending)
            try:
                response = await query_request(request)
            finally:
                _CURRENT.reset(token)
            if not pending.remote:
                return response
            body = json.loads(response.body)
            base = f"{request.url.scheme}://{request.url.netloc}"
            body["data"].update(self.store.put(base, pending.remote))
            return JSONResponse(body, status_code=response.status_code)

        return endpoint

    async def introspect_downloads(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse({"served": self.store.served})

    async def download(self, request: Any) -> Any:
        from starlette.responses import Response

        status, body = self.store.get(request.url.path, request.query_params, request.headers)
        if status != 200:
            return Response(body, status_code=status, media_type="application/xml")
        return Response(body, media_type="binary/octet-stream", headers={"Content-Encoding": "gzip"})
