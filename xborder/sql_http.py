"""ClickHouse's HTTP interface, served by the process that owns the embedded engine.

chDB lets one process own a data directory, and in embedded mode that is the sink. So
that analysts can query live data, the sink also serves ClickHouse's HTTP interface
(``GET``/``POST /?query=``, the query in the body, ``default_format`` and the ``FORMAT``
clause, ``X-ClickHouse-User``/``X-ClickHouse-Key``, basic auth or ``user``/``password``
parameters, ``database``, ``param_<name>`` for ``{name:Type}`` placeholders, ``/ping``),
on loopback by default, so that any ClickHouse HTTP client works against it.

Each request runs on its own chDB connection to the engine the sink's client opened
(chDB allows any number of connections to the one engine of a process; each has its
own ``USE`` and ``SET`` state), on a thread of its own: a query never waits for the
sink's writes, nor they for it. The engine formats the result: its bytes are sent as
they are, in whatever format the query or ``default_format`` names.

Every user of the endpoint is read-only. A request's connection runs ``SET readonly =
2`` (writes, DDL and system commands are refused by ClickHouse itself, with its own
error; output settings stay settable), and each statement is checked first on its
parsed form (``EXPLAIN AST``, which reads nothing): one statement only, of a reading
kind, and no table function that reads outside the database (``file``, ``url``,
``s3``, ``remote``...) nor the ``file`` function, which readonly mode does not stop.
Refusals use ClickHouse's codes and wording (``READONLY``, ``ACCESS_DENIED``,
``INTO_OUTFILE_NOT_ALLOWED``). Errors go back as ClickHouse sends them: the
``X-ClickHouse-Exception-Code`` header, ``Code: N. DB::Exception: ...`` in the body,
and ClickHouse's HTTP status for the code.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import itertools
import json
import logging
import os
import re
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from xborder.errors import ConfigurationError
from xborder.settings import Settings

logger = logging.getLogger(__name__)

ENGINE_HEADER = "X-Xborder-Engine"
"""Names the engine an endpoint serves (a digest of its directory and database), so that
``xborder query`` never reads another sink's data on a shared port."""

ACCESS_DENIED = 497
AUTHENTICATION_FAILED = 516
INTO_OUTFILE_NOT_ALLOWED = 358
NOT_IMPLEMENTED = 48
QUERY_IS_TOO_LARGE = 229
READONLY = 164
SYNTAX_ERROR = 62
TOO_MANY_SIMULTANEOUS_QUERIES = 202
UNSUPPORTED_METHOD = 1

MARKER = "/* xborder sql_http */"
"""Opens every analyst statement the engine runs, so that :meth:`ReadOnlyEngine.cancel`
finds them in ``system.processes``."""
ABORTED = 236
STOP_WAIT_S = 10.0
"""How long the sink's shutdown waits for cancelled analyst statements to end."""

MAX_QUERY_BYTES = 16 * 1024 * 1024
"""Longest query text (with any body) a request may carry."""

READING_STATEMENTS = (
    "SelectWithUnionQuery",
    "SelectIntersectExceptQuery",
    "SelectQuery",
    "Explain",
    "Show",
    "Describe",
    "Exists",
    "UseQuery",
)
"""Kinds of statement (the root of ``EXPLAIN AST``) an analyst may run; ``Set`` and
``USE`` change only the request's own connection."""

INTERNAL_TABLE_FUNCTIONS = frozenset(
    {
        "numbers",
        "numbers_mt",
        "zeros",
        "zeros_mt",
        "generate_series",
        "generateseries",
        "values",
        "view",
        "null",
        "format",
        "generaterandom",
    }
)
"""Table functions that read nothing outside the database (names in lower case)."""

FORBIDDEN_FUNCTIONS = frozenset({"file"})
"""Ordinary functions that read outside the database and readonly mode allows."""

SOURCE_GRANTS = {
    "file": "FILE",
    "url": "URL",
    "urlcluster": "URL",
    "s3": "S3",
    "s3cluster": "S3",
    "gcs": "S3",
    "remote": "REMOTE",
    "remotesecure": "REMOTE",
    "cluster": "REMOTE",
    "clusterallreplicas": "REMOTE",
    "mysql": "MYSQL",
    "postgresql": "POSTGRES",
    "sqlite": "SQLITE",
    "odbc": "ODBC",
    "jdbc": "JDBC",
    "hdfs": "HDFS",
    "mongodb": "MONGO",
    "redis": "REDIS",
    "azureblobstorage": "AZURE",
}
"""The grant ClickHouse names when a user may not read a table function's source."""

TRANSPORT_PARAMETERS = frozenset(
    {
        "query",
        "user",
        "password",
        "database",
        "default_format",
        "query_id",
        "session_id",
        "session_timeout",
        "session_check",
        "quota_key",
        "buffer_size",
        "wait_end_of_query",
        "compress",
        "decompress",
        "enable_http_compression",
        "http_zlib_compression_level",
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "client_protocol_version",
        "role",
        "stacktrace",
        "cancel_http_readonly_queries_on_client_close",
    }
)
"""URL parameters that configure the HTTP exchange, not the query: not passed on as
settings (sessions are not kept: each request stands alone)."""

_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CODE = re.compile(r"Code: (\d+)\.")
_ERROR_NAME = re.compile(r"\(([A-Z][A-Z0-9_]+)\)\s*$")
_IN_SCOPE = re.compile(
    r"\.?\s*: In scope SELECT formatQuery\(.*(\([A-Z][A-Z0-9_]*\))\s*$", re.DOTALL
)
_VERSION = re.compile(r"\s*\(version [^)]*\)\s*$")
_AST_LINE = re.compile(r"^( *)(\S.*)$")

FORBIDDEN = frozenset({"ACCESS_DENIED", "AUTHENTICATION_FAILED", "UNKNOWN_USER", "WRONG_PASSWORD"})
BAD_REQUEST = frozenset(
    {
        "BAD_ARGUMENTS",
        "CANNOT_COMPILE_REGEXP",
        "CANNOT_PARSE_TEXT",
        "CANNOT_PARSE_ESCAPE_SEQUENCE",
        "CANNOT_PARSE_QUOTED_STRING",
        "CANNOT_PARSE_DATE",
        "CANNOT_PARSE_DATETIME",
        "CANNOT_PARSE_NUMBER",
        "CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING",
        "CANNOT_PARSE_IPV4",
        "CANNOT_PARSE_IPV6",
        "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
        "CANNOT_PARSE_UUID",
        "DUPLICATE_COLUMN",
        "ILLEGAL_COLUMN",
        "UNKNOWN_ELEMENT_IN_AST",
        "UNKNOWN_TYPE_OF_AST_NODE",
        "THERE_IS_NO_COLUMN",
        "TOO_DEEP_AST",
        "TOO_BIG_AST",
        "UNEXPECTED_AST_STRUCTURE",
        "SYNTAX_ERROR",
        "INCORRECT_DATA",
        "TYPE_MISMATCH",
        "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
    }
)
NOT_FOUND = frozenset(
    {
        "UNKNOWN_TABLE",
        "UNKNOWN_FUNCTION",
        "UNKNOWN_IDENTIFIER",
        "UNKNOWN_TYPE",
        "UNKNOWN_STORAGE",
        "UNKNOWN_DATABASE",
        "UNKNOWN_SETTING",
        "UNKNOWN_DIRECTION_OF_SORTING",
        "UNKNOWN_AGGREGATE_FUNCTION",
        "UNKNOWN_FORMAT",
        "UNKNOWN_DATABASE_ENGINE",
        "UNKNOWN_TYPE_OF_QUERY",
        "UNKNOWN_ROLE",
    }
)
"""ClickHouse's HTTP status for an error, by name (its ``exceptionCodeToHTTPStatus``)."""


def http_status(name: str | None) -> int:
    """The HTTP status ClickHouse answers an error of this name with."""
    if name == "REQUIRED_PASSWORD":
        return 401
    if name in FORBIDDEN or name == "SET_NON_GRANTED_ROLE":
        return 403
    if name in BAD_REQUEST:
        return 400
    if name in NOT_FOUND:
        return 404
    statuses = {
        "QUERY_IS_TOO_LARGE": 413,
        "NOT_IMPLEMENTED": 501,
        "SOCKET_TIMEOUT": 503,
        "CANNOT_OPEN_FILE": 503,
        "CANNOT_SCHEDULE_TASK": 503,
        "HTTP_LENGTH_REQUIRED": 411,
        "TIMEOUT_EXCEEDED": 408,
        "UNSUPPORTED_MEDIA_TYPE": 415,
    }
    return statuses.get(name or "", 500)


class EngineError(Exception):
    """A ClickHouse error: its code and its text (``Code: N. DB::Exception: ... (NAME)``)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text
        match = _ERROR_NAME.search(text)
        self.name = match.group(1) if match else None

    @classmethod
    def of(cls, code: int, name: str, message: str) -> EngineError:
        """An error in ClickHouse's words, for a refusal made here."""
        return cls(code, f"Code: {code}. DB::Exception: {message}. ({name})")

    @classmethod
    def from_engine(cls, exc: Exception) -> EngineError:
        text = str(exc)
        start = text.find("Code: ")
        text = (text[start:] if start > 0 else text).strip()
        match = _CODE.search(text)
        return cls(int(match.group(1)) if match else 0, text)

    @property
    def status(self) -> int:
        return http_status(self.name)


@dataclass(frozen=True)
class Result:
    """A query's result as the engine formatted it."""

    body: bytes
    format: str
    summary: dict[str, str] = field(default_factory=dict)


def content_type(fmt: str) -> str:
    """The Content-Type ClickHouse sends for a result format."""
    lower = fmt.lower()
    if lower == "jsoneachrow" or lower.startswith("jsoncompacteachrow"):
        return "application/x-ndjson; charset=UTF-8"
    if lower.startswith("json"):
        return "application/json; charset=UTF-8"
    if lower.startswith(("tabseparated", "tsv")):
        return "text/tab-separated-values; charset=UTF-8"
    if lower.startswith("csv"):
        return "text/csv; charset=UTF-8; header=" + ("present" if "names" in lower else "absent")
    if lower.startswith(("pretty", "vertical", "markdown", "values")):
        return "text/plain; charset=UTF-8"
    if lower == "xml":
        return "application/xml; charset=UTF-8"
    return "application/octet-stream"


def _parameter_literal(text: str) -> str:
    """A String query parameter's value as the engine reads it (escaped like TSV)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def _ast(text: str) -> list[tuple[int, str]]:
    """``EXPLAIN AST`` output as (depth, node) lines."""
    lines = []
    for raw in text.splitlines():
        match = _AST_LINE.match(raw)
        if match:
            lines.append((len(match.group(1)), match.group(2)))
    return lines


def check_statement(ast: list[tuple[int, str]], user: str) -> str | None:
    """Refuse what an analyst may not run (raises EngineError); returns the statement's
    own ``FORMAT``, if it names one."""
    if not ast:
        return None
    root = ast[0][1]
    kind = root.split(" ", 1)[0]
    if kind.startswith("KillQuery"):
        raise EngineError.of(
            ACCESS_DENIED,
            "ACCESS_DENIED",
            f"{user}: Not enough privileges. To execute this query, it's necessary to "
            "have the grant KILL QUERY ON *.*",
        )
    if not (kind.startswith(READING_STATEMENTS) or kind == "Set"):
        raise EngineError.of(READONLY, "READONLY", f"{user}: Cannot execute query in readonly mode")
    fmt = None
    if kind.startswith(("SelectWithUnionQuery", "SelectIntersectExceptQuery", "Explain")):
        for depth, node in ast[1:]:
            if depth == 1 and node.startswith("Literal"):
                raise EngineError.of(
                    INTO_OUTFILE_NOT_ALLOWED,
                    "INTO_OUTFILE_NOT_ALLOWED",
                    "INTO OUTFILE is not allowed",
                )
            if depth == 1 and node.startswith("Identifier "):
                fmt = node.split(" ")[1]
    for (depth, node), (next_depth, child) in itertools.pairwise(ast):
        if not child.startswith("Function "):
            continue
        name = child.split(" ")[1].lower()
        table_function = node.startswith("TableExpression") and next_depth == depth + 1
        if (table_function and name not in INTERNAL_TABLE_FUNCTIONS) or (
            name in FORBIDDEN_FUNCTIONS
        ):
            grant = SOURCE_GRANTS.get(name, name.upper())
            raise EngineError.of(
                ACCESS_DENIED,
                "ACCESS_DENIED",
                f"{user}: Not enough privileges. To execute this query, it's necessary to "
                f"have the grant READ ON {grant} ({child.split(' ')[1]}() reads outside the "
                "database; analyst users read only its tables)",
            )
    return fmt


class ReadOnlyEngine:
    """Runs analysts' statements on the process's embedded engine, read-only, each on a
    chDB connection of its own."""

    def __init__(self, path: str | Path, database: str, nice: int = 0) -> None:
        import chdb

        self._connect = chdb.connect
        self.path = os.path.realpath(path)
        """The engine's directory, spelled as clickhouse-connect's chdb:// client opens it
        (chDB compares paths literally)."""
        self.database = database
        self.nice = nice
        """OS priority of the queries' threads (ClickHouse's ``os_thread_priority``)."""
        self.running = 0
        """Statements running now."""
        self.idle = threading.Condition()
        conn = self._connect(self.path)
        try:
            row = conn.query("SELECT version(), timezone()", "TabSeparated").bytes().decode()
        finally:
            conn.close()
        self.version, self.timezone = row.strip().split("\t")

    def run(
        self,
        sql: str,
        user: str,
        fmt: str = "TabSeparated",
        params: dict[str, str] | None = None,
        settings: dict[str, str] | None = None,
        database: str | None = None,
    ) -> Result:
        """The statement's result, formatted by the engine; EngineError when it fails or
        is refused."""
        with self.idle:
            self.running += 1
        conn = self._connect(self.path)
        try:
            try:
                conn.query(f"USE `{(database or self.database).replace('`', '')}`", "TabSeparated")
                requested = dict(settings or {})
                readonly = "1" if requested.pop("readonly", None) == "1" else "2"
                conn.query(f"SET readonly = {readonly}", "TabSeparated")
                for name, value in requested.items():
                    if not _SETTING_NAME.match(name):
                        raise EngineError.of(36, "BAD_ARGUMENTS", f"Invalid setting name {name!r}")
                    quoted = value.replace("\\", "\\\\").replace("'", "\\'")
                    conn.query(f"SET {name} = '{quoted}'", "TabSeparated")
                if self.nice:  # after the client's settings: the sink's writes come first
                    conn.query(f"SET os_thread_priority = {int(self.nice)}", "TabSeparated")
                # one statement: chDB runs every statement of a multi-statement text
                try:
                    conn.query(
                        "SELECT formatQuery({q:String})",
                        "TabSeparated",
                        params={"q": _parameter_literal(sql)},
                    )
                except Exception as exc:
                    error = EngineError.from_engine(exc)
                    raise EngineError(error.code, _IN_SCOPE.sub(r". \1", error.text)) from exc
                ast = conn.query(f"EXPLAIN AST {sql}", "TabSeparated", params=params or {})
                own_format = check_statement(_ast(ast.bytes().decode("utf-8", "replace")), user)
                # the marker lets cancel() find it (the syntax was checked without it)
                result = conn.query(f"{MARKER}\n{sql}", fmt, params=params or {})
            except EngineError:
                raise
            except Exception as exc:
                raise EngineError.from_engine(exc) from exc
            return Result(result.bytes() or b"", own_format or fmt, _summary(result))
        finally:
            conn.close()
            with self.idle:
                self.running -= 1
                self.idle.notify_all()

    def cancel(self, timeout_s: float) -> bool:
        """Cancel the statements running now and wait for them to end (a process must not
        exit while chDB runs a query); False when some still run after ``timeout_s``."""
        conn = self._connect(self.path)
        try:
            conn.query(f"KILL QUERY WHERE startsWith(query, '{MARKER}') ASYNC", "TabSeparated")
        except Exception as exc:  # nothing to kill, or the engine is going: wait anyway
            logger.debug("cancelling analysts' queries: %s", exc)
        finally:
            conn.close()
        with self.idle:
            return self.idle.wait_for(lambda: self.running == 0, timeout_s)


def _summary(result: Any) -> dict[str, str]:
    try:
        return {
            "read_rows": str(result.rows_read()),
            "read_bytes": str(result.bytes_read()),
            "written_rows": "0",
            "written_bytes": "0",
            "total_rows_to_read": str(result.rows_read()),
            "result_rows": "0",
            "result_bytes": "0",
            "elapsed_ns": str(int(result.elapsed() * 1e9)),
        }
    except Exception:  # statistics are a courtesy
        return {}


def parse_users(spec: str) -> dict[str, str]:
    """``user:password,user2:password2`` as a mapping (a password may hold colons)."""
    users = {}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, password = item.partition(":")
        if not sep or not name.strip():
            raise ConfigurationError(
                "XBORDER_SQL_HTTP__USERS must list user:password pairs separated by commas"
                f" (got an item without a user name and colon: {name.strip() or '(empty)'!r})"
            )
        users[name.strip()] = password
    if not users:
        raise ConfigurationError("XBORDER_SQL_HTTP__USERS names no user; give at least one")
    return users


def engine_id(path: str | Path, database: str) -> str:
    """What :data:`ENGINE_HEADER` carries for an engine directory and database."""
    digest = hashlib.sha256(f"{os.path.realpath(path)}\0{database}".encode())
    return digest.hexdigest()[:16]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        engine: ReadOnlyEngine,
        users: dict[str, str],
        max_queries: int,
        queue_timeout_s: float,
    ) -> None:
        super().__init__(address, _Handler)
        self.engine = engine
        self.users = users
        self.max_queries = max_queries
        self.slots = threading.BoundedSemaphore(max_queries)
        self.queue_timeout_s = queue_timeout_s
        self.engine_id = engine_id(engine.path, engine.database)
        self.stopping = False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    server_version = "xborder-clickhouse-http"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("sql http %s: " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._guarded(lambda: self._handle(b""))

    def do_HEAD(self) -> None:
        self._send(200, b"", {"Content-Type": "text/html; charset=UTF-8"})

    def do_POST(self) -> None:
        self._guarded(lambda: self._handle(self._body()))

    def _guarded(self, answer: Callable[[], None]) -> None:
        """Answer; a request that fails before its query runs (a bad body, a bug) gets
        a ClickHouse-style error, and its connection is closed."""
        try:
            answer()
        except EngineError as exc:
            self._error(exc)
            self.close_connection = True
        except (ValueError, OSError, EOFError, zlib.error) as exc:
            logger.warning("sql http: bad request from %s: %s", self.address_string(), exc)
            self._error(EngineError.of(36, "BAD_ARGUMENTS", f"Cannot read the request: {exc}"))
            self.close_connection = True

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b"".join(self._chunks())
        else:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_QUERY_BYTES:
                raise EngineError.of(
                    QUERY_IS_TOO_LARGE, "QUERY_IS_TOO_LARGE", f"Query is too large ({length})"
                )
            data = self.rfile.read(length) if length else b""
        encoding = self.headers.get("Content-Encoding", "").lower()
        if encoding == "gzip":
            return gzip.decompress(data)
        if encoding == "deflate":
            return zlib.decompress(data)
        if encoding not in ("", "identity"):
            raise EngineError.of(
                UNSUPPORTED_METHOD, "UNSUPPORTED_METHOD", f"Unknown HTTP compression {encoding!r}"
            )
        return data

    def _chunks(self) -> Iterator[bytes]:
        total = 0
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return
            total += size
            if total > MAX_QUERY_BYTES:
                raise EngineError.of(
                    QUERY_IS_TOO_LARGE, "QUERY_IS_TOO_LARGE", f"Query is too large ({total})"
                )
            yield self.rfile.read(size)
            self.rfile.readline()

    def _handle(self, body: bytes) -> None:
        url = urlsplit(self.path)
        if url.path in ("/ping", "/replicas_status"):
            self._send(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
            return
        if url.path not in ("/", "/query"):
            text = (
                f"There is no handle {url.path}\n\nUse / or /ping for health checks.\n\n"
                "Send queries from your program with POST method or GET /?query=...\n"
            )
            self._send(404, text.encode(), {"Content-Type": "text/plain; charset=UTF-8"})
            return
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        sql = params.get("query", "")
        if body:
            text = body.decode("utf-8", "replace")
            sql = f"{sql}\n{text}" if sql else text
        if not sql.strip() and self.command == "GET" and "query" not in params:
            self._send(200, b"Ok.\n", {"Content-Type": "text/html; charset=UTF-8"})
            return
        query_id = params.get("query_id") or str(uuid.uuid4())
        try:
            user = self._authenticate(params)
            if "1" in (params.get("compress"), params.get("decompress")):
                raise EngineError.of(
                    NOT_IMPLEMENTED,
                    "NOT_IMPLEMENTED",
                    "ClickHouse's native block compression (compress=1, decompress=1) is not "
                    "served here; turn the client's compression off or use HTTP compression",
                )
            result = self._run(sql, user, params)
        except EngineError as exc:
            self._error(exc, query_id)
            return
        headers = {
            "Content-Type": content_type(result.format),
            "X-ClickHouse-Format": result.format,
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Timezone": self.server.engine.timezone,
            "X-ClickHouse-Summary": json.dumps(result.summary, separators=(",", ":")),
        }
        self._send(200, result.body, headers)

    def _authenticate(self, params: dict[str, str]) -> str:
        user, password = self.headers.get("X-ClickHouse-User"), self.headers.get("X-ClickHouse-Key")
        authorization = self.headers.get("Authorization", "")
        if user is None and authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:].strip()).decode()
            except ValueError:
                decoded = ""
            user, _, password = decoded.partition(":")
        if user is None:
            user, password = params.get("user"), params.get("password")
        user = user or "default"
        expected = self.server.users.get(user)
        if expected is None or not hmac.compare_digest(
            (password or "").encode(), expected.encode()
        ):
            raise EngineError.of(
                AUTHENTICATION_FAILED,
                "AUTHENTICATION_FAILED",
                f"{user}: Authentication failed: password is incorrect, or there is no user "
                "with such name",
            )
        return user

    def _run(self, sql: str, user: str, params: dict[str, str]) -> Result:
        if self.server.stopping:
            raise EngineError.of(ABORTED, "ABORTED", "The sink is shutting down")
        if not self.server.slots.acquire(timeout=self.server.queue_timeout_s):
            raise EngineError.of(
                TOO_MANY_SIMULTANEOUS_QUERIES,
                "TOO_MANY_SIMULTANEOUS_QUERIES",
                f"Too many simultaneous queries. Maximum: {self.server.max_queries}",
            )
        try:
            started = time.monotonic()
            result = self.server.engine.run(
                sql,
                user,
                fmt=params.get("default_format") or "TabSeparated",
                params={k[6:]: v for k, v in params.items() if k.startswith("param_")},
                settings={
                    k: v
                    for k, v in params.items()
                    if k not in TRANSPORT_PARAMETERS and not k.startswith("param_")
                },
                database=params.get("database") or None,
            )
            logger.debug(
                "sql http %s: %.3f s, %s bytes", user, time.monotonic() - started, len(result.body)
            )
            return result
        finally:
            self.server.slots.release()

    def _error(self, exc: EngineError, query_id: str | None = None) -> None:
        body = f"{exc.text} (version {self.server.engine.version})\n".encode()
        headers = {
            "Content-Type": "text/plain; charset=UTF-8",
            "X-ClickHouse-Exception-Code": str(exc.code),
        }
        if query_id:
            headers["X-ClickHouse-Query-Id"] = query_id
        self._send(exc.status, body, headers)

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header(ENGINE_HEADER, self.server.engine_id)
        self.send_header("X-ClickHouse-Server-Display-Name", "xborder-sink")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class SqlHttpServer:
    """The HTTP endpoint on a thread of its own; :meth:`stop` closes it."""

    def __init__(self, server: _Server) -> None:
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="sql-http", kwargs={"poll_interval": 0.2}, daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> SqlHttpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening, cancel the statements running and wait for them to end."""
        self._server.stopping = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        if not self._server.engine.cancel(STOP_WAIT_S):
            logger.warning("analysts' queries still run after %.0f s of shutdown", STOP_WAIT_S)


def start_sql_http(settings: Settings) -> SqlHttpServer | None:
    """Serve ClickHouse's HTTP interface on the embedded engine this process opened;
    None with a server URL (the server answers), when turned off, or when the port is
    taken (logged: the sink goes on without it)."""
    http = settings.sql_http
    if settings.clickhouse.url or not http.enabled:
        return None
    users = parse_users(http.users.get_secret_value())
    if http.host not in ("127.0.0.1", "::1", "localhost") and any(not p for p in users.values()):
        raise ConfigurationError(
            f"the SQL endpoint would listen on {http.host} with a user without a password; "
            "give every user in XBORDER_SQL_HTTP__USERS a password, or bind it to 127.0.0.1"
        )
    engine = ReadOnlyEngine(settings.clickhouse_dir, settings.clickhouse.database, http.nice)
    try:
        server = _Server(
            (http.host, http.port), engine, users, http.max_concurrent_queries, http.queue_timeout_s
        )
    except OSError as exc:
        logger.error(
            "the SQL endpoint cannot listen on %s:%s (%s): analysts cannot query while this "
            "sink runs; free the port or set XBORDER_SQL_HTTP__PORT",
            http.host,
            http.port,
            exc,
        )
        return None
    logger.info(
        "ClickHouse HTTP interface on http://%s:%s (read-only users: %s)",
        http.host,
        http.port,
        ", ".join(sorted(users)),
    )
    return SqlHttpServer(server).start()


FORMAT_ALIASES = {
    "table": "PrettyCompact",
    "csv": "CSVWithNames",
    "json": "JSONEachRow",
    "tsv": "TabSeparatedWithNames",
}
"""``xborder query --format`` names; any other value is a ClickHouse format name."""


def query(settings: Settings, sql: str, fmt: str = "PrettyCompact") -> bytes:
    """Run one read-only statement where the data is and return the engine's bytes: on a
    server when one is configured, else through the running sink's endpoint, else on the
    embedded engine opened here. A ``FORMAT`` clause in ``sql`` wins over ``fmt``.
    Raises EngineError (or the driver's DatabaseError) with ClickHouse's code."""
    from xborder.clickhouse import get_client

    fmt = FORMAT_ALIASES.get(fmt, fmt)
    if settings.clickhouse.url:
        client = get_client(settings)
        try:
            return bytes(client.raw_query(sql, settings={"default_format": fmt}))
        finally:
            client.close()
    users = parse_users(settings.sql_http.users.get_secret_value())
    user, password = next(iter(users.items()))
    if settings.sql_http.enabled:
        answer = _via_endpoint(settings, sql, fmt, user, password)
        if answer is not None:
            return answer
    client = get_client(settings)  # opens the engine, or says which process holds it
    try:
        engine = ReadOnlyEngine(settings.clickhouse_dir, settings.clickhouse.database)
        return engine.run(sql, user, fmt).body
    finally:
        client.close()


def _via_endpoint(settings: Settings, sql: str, fmt: str, user: str, password: str) -> bytes | None:
    """The answer of the running sink's endpoint; None when no sink of this engine listens."""
    import urllib.error
    import urllib.request
    from urllib.parse import urlencode

    http = settings.sql_http
    host = "127.0.0.1" if http.host in ("0.0.0.0", "::", "") else http.host
    base = f"http://[{host}]:{http.port}" if ":" in host else f"http://{host}:{http.port}"
    ours = engine_id(settings.clickhouse_dir, settings.clickhouse.database)
    try:
        with urllib.request.urlopen(f"{base}/ping", timeout=2) as ping:
            if ping.headers.get(ENGINE_HEADER) != ours:
                return None  # another sink's engine on this port
    except (OSError, ValueError):
        return None
    request = urllib.request.Request(
        f"{base}/?{urlencode({'default_format': fmt})}",
        data=sql.encode(),
        method="POST",
        headers={"X-ClickHouse-User": user, "X-ClickHouse-Key": password},
    )
    try:
        with urllib.request.urlopen(request) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as exc:
        text = _VERSION.sub("", exc.read().decode("utf-8", "replace").strip())
        code = exc.headers.get("X-ClickHouse-Exception-Code")
        raise EngineError(int(code) if code and code.isdigit() else 0, text) from exc
    except OSError:
        return None  # the sink stopped meanwhile: open the engine here
