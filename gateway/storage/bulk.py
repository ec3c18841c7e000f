"""Many rows in few statements, inside the caller's transaction (a batch of answers, a claim).

Reads of a batch name their rows with `among` (column IN the batch's values): on PostgreSQL one
array parameter (`= ANY(..)`), so the statement's text is the same for every batch size; an IN
list instead is a new statement per size, which psycopg parses again (never cached past 50
parameters) and PostgreSQL plans again.

On PostgreSQL the rows of a batch go as one COPY (inserts) or one UPDATE .. FROM unnest(arrays)
(updates): psycopg's executemany sends each row as its own Bind/Execute with a flush and a poll,
about 18 us of CPU a row on the gateway's side against about 4 for a COPY row; a burst of
replies writes ten rows a reply.  Values go through each column's own bind processing (UTC
datetimes, JSON), as SQLAlchemy's INSERT would.  Elsewhere (SQLite, whose executemany is a C loop
in-process) the plain executemany.

Inside `together(conn)` (PostgreSQL), these writes are not sent one by one: they are held and
sent at the end of the block in one pipeline (psycopg's pipeline mode), one round trip for all
of them, an INSERT .. SELECT FROM unnest(..) standing for each COPY (COPY cannot be pipelined).
Any other statement run meanwhile on the connection goes in the same pipeline, after the held
writes (an engine event), so a read inside the block sees every write made before it and costs
no round trip more.  With `until_commit`, in a unit of work of the gateway's Database, what is
still held at the end of the block goes with the COMMIT (`commit_with`), in its round trip.  A
batch of keypad answers writes about ten statements, each a round trip of its own, and its
caller waits for all of them before hearing "recorded".  A held write's error (a constraint) is
raised where the writes are sent, as SQLAlchemy raises it, and the transaction rolls back as
before."""
from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import date, datetime

from sqlalchemy import any_, bindparam, event, func, insert, select, tuple_, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

try:
    from psycopg.types.json import Json, Jsonb
    _JSON_WRAPPERS: tuple = (Json, Jsonb)
except ImportError:         # no PostgreSQL driver: SQLite only
    _JSON_WRAPPERS = ()

HELD = "yihu.bulk.held"     # conn.info: statements held by together(): [(sql, params, then or None)]
AT_COMMIT = "yihu.bulk.at_commit"   # conn.info: the unit of work commits through commit_with()


def _pg(conn) -> bool:
    return conn.dialect.name == "postgresql"


def among(conn, column, values):
    """`column IN values` for a WHERE clause (values: any iterable; empty matches nothing)."""
    values = list(values)
    if _pg(conn):
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    return column.in_(values)


def pairs_among(conn, columns: tuple, pairs):
    """`(a, b) IN pairs` for a WHERE clause: on PostgreSQL two array parameters unnested together."""
    pairs = list(pairs)
    if _pg(conn):
        return _in_unnested(columns, [bindparam(None, [p[i] for p in pairs], type_=ARRAY(c.type))
                                      for i, c in enumerate(columns)])
    return tuple_(*columns).in_(pairs)


def _in_unnested(columns: tuple, arrays: list):
    """PostgreSQL: `(columns) IN` the rows of the array parameters unnested together."""
    listed = func.unnest(*arrays).table_valued(*[f"v{i}" for i in range(len(columns))]).render_derived()
    return tuple_(*columns).in_(select(*listed.c))


_BUILT: dict = {}


def built_once(conn, build):
    """The statement `build(conn)` makes, built once per dialect and run again with its values as
    parameters (`among_named`, `pairs_among_named`).  Built per batch, a statement is built,
    keyed and matched to SQLAlchemy's compiled cache every time: 2.5 ms of a keypress batch's
    7.4 ms of CPU went so (bench.agi_sessions' data).  Statements are immutable and shared by the
    database threads; two building one at once both build it, and either is kept."""
    key = (build, conn.dialect.name)
    statement = _BUILT.get(key)
    if statement is None:
        statement = _BUILT[key] = build(conn)
    return statement


def among_named(conn, column, name: str):
    """`among` with its values given at execution as parameter `name` (a list), for a statement
    `built_once`."""
    if _pg(conn):
        return column == any_(bindparam(name, type_=ARRAY(column.type)))
    return column.in_(bindparam(name, expanding=True))


def pairs_among_named(conn, columns: tuple, name: str):
    """`pairs_among` with its pairs given at execution by `pairs_params(conn, name, len(columns),
    pairs)`, for a statement `built_once`."""
    if _pg(conn):
        return _in_unnested(columns, [bindparam(f"{name}_{i}", type_=ARRAY(c.type)) for i, c in enumerate(columns)])
    return tuple_(*columns).in_(bindparam(name, expanding=True))


def pairs_params(conn, name: str, width: int, pairs) -> dict:
    """The parameters of a `pairs_among_named(conn, columns, name)` (`width` columns): these pairs."""
    pairs = list(pairs)
    if _pg(conn):
        return {f"{name}_{i}": [p[i] for p in pairs] for i in range(width)}
    return {name: pairs}


def _element(v) -> str:
    if v is None:
        return "NULL"
    if v is True or v is False:
        return "t" if v else "f"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (datetime, date)):
        return '"' + v.isoformat() + '"'
    if isinstance(v, _JSON_WRAPPERS):
        # SQLAlchemy's JSON binding on psycopg: the text psycopg would send for it.
        return _element((v.dumps or json.dumps)(v.obj))
    raise TypeError(type(v).__name__)


def _array_literal(values: list):
    """A PostgreSQL array's text form ('{1,NULL,"a \\"b\\""}') for a cast to TYPE[]: a join of
    strings, where psycopg would dump the list element by element in Python (a quarter of a
    batch's writing time).  Other element types go to psycopg as the list itself."""
    try:
        return "{" + ",".join(map(_element, values)) + "}"
    except TypeError:
        return values


def _processors(conn, table, names):
    dialect = conn.dialect
    return [table.c[n].type._cached_bind_processor(dialect) for n in names]


def _bound(proc, values) -> list:
    """A column's values as SQLAlchemy would bind them (its type's processor; NULL stays NULL)."""
    return values if proc is None else [None if v is None else proc(v) for v in values]


def _scalar_defaults(table, given) -> dict | None:
    """The Python-side scalar defaults SQLAlchemy would fill in for columns the rows leave out;
    None if one is a callable or SQL expression (then the caller takes the generic path)."""
    out = {}
    for c in table.columns:
        if c.name in given or c.default is None:
            continue
        if not c.default.is_scalar:
            return None
        out[c.name] = c.default.arg
    return out


@contextmanager
def together(conn, *, until_commit: bool = False):
    """The bulk writes inside go to PostgreSQL together, at the end (see the module's docstring);
    elsewhere, and inside another such block, nothing changes.  until_commit: for a block that
    ends its unit of work, when the Database commits it (AT_COMMIT): the writes still held go
    with the COMMIT, not in a round trip of their own."""
    if not _pg(conn) or HELD in conn.info:
        yield
        return
    conn.info[HELD] = []
    kept = False
    try:
        yield
        kept = until_commit and conn.info.get(AT_COMMIT, False)
        if not kept:
            send_held(conn)
    finally:
        if not kept:
            conn.info.pop(HELD, None)


def _as_sqlalchemy(conn, e, statement: str, params=None) -> DBAPIError:
    """A driver error raised on the driver's connection, as SQLAlchemy raises it for a statement
    it ran (IntegrityError, OperationalError, ...): the callers' retries, deadlines and duplicate
    checks look for those, with `.orig`."""
    return DBAPIError.instance(statement, params, e, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect)


def _driver_error(conn, e, held, statement):
    # The pipeline names no statement: the first held one that failed is not known here.
    return _as_sqlalchemy(conn, e, f"{len(held)} held write(s), the last: {statement}")


def _queue(driver, held) -> list:
    """Send the held statements into the open pipeline; [(cursor, then)] for those whose rows
    someone waits for (each on a cursor of its own: a cursor keeps one statement's rows)."""
    waiting = []
    with driver.cursor() as cur:
        for statement, params, then in held:
            if then is None:
                cur.execute(statement, params)
            else:
                own = driver.cursor()
                own.execute(statement, params)
                waiting.append((own, then))
    return waiting


def _send(driver, held, last=None) -> None:
    """The held statements, then `last()` if given (a statement, the COMMIT), in one pipeline:
    one round trip; then each held statement's rows to whoever waits for them."""
    with driver.pipeline():
        waiting = _queue(driver, held)
        if last is not None:
            last()
    for cur, then in waiting:
        with cur:
            then(cur.fetchall())


def send_held(conn) -> None:
    """The writes held so far, in one pipeline: one round trip.  (SQLAlchemy's conn, or its
    DBAPI connection's record info, as the engine event below has it.)"""
    held = conn.info.get(HELD)
    if not held:
        return
    conn.info[HELD] = []
    try:
        _send(conn.connection.driver_connection, held)
    except conn.dialect.loaded_dbapi.Error as e:
        raise _driver_error(conn, e, held, held[-1][0]) from e


def commit_with(conn, tail: list[tuple[str, dict]] = ()) -> None:
    """End the unit of work: the writes still held, then `tail` (psycopg statements whose results
    nobody reads, such as NOTIFY), then the COMMIT, in one pipeline: one round trip.  SQLAlchemy's
    own commit then finds the transaction ended and sends nothing.  Nothing to send: nothing done
    (SQLAlchemy commits as usual).  On SQLite nothing is ever held: nothing done."""
    statements = (conn.info.pop(HELD, None) or []) + [(sql, params, None) for sql, params in tail]
    if not statements or not _pg(conn):
        return
    driver = conn.connection.driver_connection
    try:
        _send(driver, statements, driver.commit)
    except conn.dialect.loaded_dbapi.Error as e:
        raise _driver_error(conn, e, statements, "COMMIT") from e


@event.listens_for(Engine, "before_cursor_execute")
def _send_held_first(conn, _cursor, _statement, _params, _context, executemany):
    # An executemany run while writes are held sees them: they go first.  (A single statement
    # takes them along in its own round trip: _send_held_with.)
    if executemany and conn.info.get(HELD):
        send_held(conn)


def _pipelined(cursor, context, send) -> bool:
    conn = context.root_connection
    try:
        held = conn.info.get(HELD)
    except NotImplementedError:     # the dialect's first look at a new engine: no pooled connection
        return False
    if not held:
        return False        # SQLAlchemy executes as usual
    conn.info[HELD] = []
    # Errors are the driver's, raised through SQLAlchemy as for any statement it runs (its class,
    # a lost connection invalidated); a held write that failed aborts the statement after it.
    _send(conn.connection.driver_connection, held, send)
    return True


@event.listens_for(Engine, "do_execute")
def _send_held_with(cursor, statement, parameters, context):
    # A statement run while writes are held goes after them in their pipeline: one round trip.
    return _pipelined(cursor, context, lambda: cursor.execute(statement, parameters))


@event.listens_for(Engine, "do_execute_no_params")
def _send_held_with_no_params(cursor, statement, context):
    return _pipelined(cursor, context, lambda: cursor.execute(statement))


def _write(conn, statement: str, params: dict, then=None) -> None:
    """One statement (psycopg's %(name)s parameters): held inside together(), else run now.
    then: given its rows (a list of tuples) once it has run; for a held one, when the held
    statements are sent (by the next read, the block's end or the COMMIT), so only for rows
    nobody needs before then (the ids of events told after the COMMIT, a time acted on once
    committed)."""
    held = conn.info.get(HELD)
    if held is not None:
        held.append((statement, params, then))
    else:
        result = conn.exec_driver_sql(statement, params)
        if then is not None:
            then([tuple(r) for r in result])


_CASTS: dict = {}


def _cast(conn, table, name: str) -> str:
    """A column's array type as a cast names it (BIGINT[]); compiled once per column."""
    key = (table.c[name], conn.dialect.name)
    cast = _CASTS.get(key)
    if cast is None:
        cast = _CASTS[key] = f"{key[0].type.compile(dialect=conn.dialect)}[]"
    return cast


def bulk_insert(conn, table, rows: list[dict]) -> None:
    """INSERT `rows` (dicts with the same keys) into `table` in one round: a COPY on PostgreSQL."""
    if not rows:
        return
    names = list(rows[0])
    defaults = _scalar_defaults(table, names) if _pg(conn) else None
    if defaults is None:
        conn.execute(insert(table), rows)
        return
    if HELD in conn.info:
        # Held: COPY cannot go in a pipeline; the same rows as arrays, bound as COPY binds them.
        _write(conn, *_insert_unnest(conn, table, rows, defaults))
        return
    given = names[:]
    names += list(defaults)
    procs = _processors(conn, table, names)
    fill = list(defaults.values())
    columns = ", ".join(f'"{n}"' for n in names)
    plain = not any(procs)
    statement = f'COPY "{table.name}" ({columns}) FROM STDIN'
    try:
        with conn.connection.driver_connection.cursor() as cur:
            with cur.copy(statement) as copy:
                write = copy.write_row
                for r in rows:
                    values = [r[n] for n in given] + fill
                    if not plain:
                        values = [p(v) if p is not None and v is not None else v for p, v in zip(procs, values)]
                    write(values)
    except conn.dialect.loaded_dbapi.Error as e:
        raise _as_sqlalchemy(conn, e, statement) from e


def _insert_unnest(conn, table, rows: list[dict], defaults: dict, numbered: str | None = None,
                   only_if: str | None = None) -> tuple[str, dict]:
    """INSERT .. SELECT FROM unnest(arrays): the rows (and the scalar defaults they leave out), each
    column's values bound as SQLAlchemy binds them.  numbered: ids drawn from this sequence as the
    rows go in, in their order (returned); only_if: a condition the insert waits on (run once,
    before the rows)."""
    names = list(rows[0]) + list(defaults)
    k = len(rows)
    values = [[r[n] for r in rows] for n in rows[0]] + [[v] * k for v in defaults.values()]
    params = {f"a{i}": _array_literal(_bound(p, vs))
              for i, (p, vs) in enumerate(zip(_processors(conn, table, names), values))}
    source = ", ".join(f"%(a{i})s::{_cast(conn, table, n)}" for i, n in enumerate(names))
    into = ", ".join(f'"{n}"' for n in ((["id"] if numbered else []) + names))
    select_ = (f"nextval('{numbered}'), v.*" if numbered else "*") + f" FROM unnest({source}) AS v"
    where = " WHERE " + only_if.replace("%", "%%") if only_if else ""     # (psycopg's placeholders)
    returning = " RETURNING id" if numbered else ""
    return f'INSERT INTO "{table.name}" ({into}) SELECT {select_}{where}{returning}', params


def holding(conn) -> bool:
    """Are writes held on this connection (inside together(), on PostgreSQL)?"""
    return HELD in conn.info


def read_held(conn, table, statement: str, among: tuple[str, list], then) -> None:
    """Inside together() on PostgreSQL (holding): a read whose rows nobody needs before the held
    writes are sent goes with them, no round trip of its own; then(rows, as tuples) once sent.
    statement: SQL on `table` with `{among}` where `among[0] IN among[1]` goes (an array)."""
    column, values = among
    _write(conn, statement.format(among=f'"{column}" = ANY(%(among)s::{_cast(conn, table, column)})'),
           {"among": _array_literal(list(values))}, then)


def insert_numbered(conn, table, rows: list[dict], sequence: str, then, *, only_if: str | None = None) -> None:
    """PostgreSQL: INSERT `rows`, their ids drawn from `sequence` as they go in; then(ids), in
    the rows' order, once they have (held inside together(): when the held writes are sent, so
    the ids are for what follows the COMMIT).  only_if: as _insert_unnest."""
    if not rows:
        then([])
        return
    defaults = _scalar_defaults(table, list(rows[0]) + ["id"])
    if defaults is None:
        raise TypeError(f"{table.name}: a column default that is not a constant")
    # One statement draws its ids in the order it inserts the rows: ascending is the rows' order.
    _write(conn, *_insert_unnest(conn, table, rows, defaults, sequence, only_if),
           then=lambda got: then(sorted(r[0] for r in got)))


def insert_returning_ids(conn, table, rows: list[dict]) -> list[int]:
    """INSERT `rows` (dicts with the same keys) into `table`; their new ids, in order.

    On PostgreSQL the ids are drawn from the table's sequence first and the rows go in one COPY
    (bulk_insert).  Elsewhere (SQLite): one INSERT .. RETURNING."""
    if not rows:
        return []
    if _pg(conn):
        ids = draw_ids(conn, [(table, len(rows))])[0]
        bulk_insert(conn, table, [{**r, "id": i} for r, i in zip(rows, ids)])
        return ids
    return list(conn.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), rows).scalars())


def draw_ids(conn, wanted: list[tuple]) -> list[list[int]]:
    """PostgreSQL: [(table, n)] -> n new ids from each table's sequence, in one round trip (rows
    of several tables that refer to one another, written with their ids)."""
    columns = ", ".join(f"ARRAY(SELECT nextval(pg_get_serial_sequence(%(t{i})s, 'id')) FROM generate_series(1, "
                        f"%(n{i})s))" for i in range(len(wanted)))
    params = {k: v for i, (table, n) in enumerate(wanted) for k, v in ((f"t{i}", table.name), (f"n{i}", n))}
    return [list(ids) for ids in _read_now(conn, f"SELECT {columns}", params)[0]]


def _read_now(conn, statement: str, params: dict) -> list[tuple]:
    """A read (psycopg's %(name)s parameters) whose rows are needed now: the held writes go
    along, in its round trip.  The driver's own statement: no SQLAlchemy text to build, execute
    and wrap (draw_ids runs twice in a keypress batch: 0.7 ms of its CPU).  Its errors are raised
    as SQLAlchemy's classes, as bulk_insert's are; a connection lost here is found by the next
    checkout's BEGIN (gateway/storage/pool.py)."""
    if conn.info.get(HELD):
        rows: list[tuple] = []
        _write(conn, statement, params, rows.extend)
        send_held(conn)
        return rows
    try:        # nothing held: no pipeline (one costs two polls more than a plain statement)
        with conn.connection.driver_connection.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall()
    except conn.dialect.loaded_dbapi.Error as e:
        raise _as_sqlalchemy(conn, e, statement, params) from e


def bulk_update(conn, table, keys: tuple[str, ...], rows: list[dict], where: dict | None = None, *,
                keep: str = "last") -> None:
    """UPDATE `table` SET the rows' other columns WHERE its `keys` columns equal the row's (and
    every column in `where` equals its constant).  One UPDATE .. FROM unnest(..) on PostgreSQL.

    Rows name the table's columns; the keys' values are matched, the rest are set.  Of several
    rows for the same keys one is applied, on every backend alike: keep="last" (what an update per
    row leaves) or "first" (an update per row whose `where` the first one already made false,
    such as cancelling what is still pending)."""
    if not rows:
        return
    chosen: dict[tuple, dict] = {}
    for r in rows:
        k = tuple(r[k] for k in keys)
        if keep == "last" or k not in chosen:
            chosen[k] = r
    rows = list(chosen.values())
    names = list(rows[0])
    sets = [n for n in names if n not in keys]
    if _pg(conn):
        procs = _processors(conn, table, names)
        params = {f"a{i}": _array_literal(_bound(p, [r[n] for r in rows])) for i, (n, p) in enumerate(zip(names, procs))}
        source = ", ".join(f"%(a{i})s::{_cast(conn, table, n)}" for i, n in enumerate(names))
        alias = ", ".join(f'"{n}"' for n in names)
        cond = [f'"{table.name}"."{k}" = v."{k}"' for k in keys]
        for i, (col, value) in enumerate((where or {}).items()):
            proc = table.c[col].type._cached_bind_processor(conn.dialect)
            cond.append(f'"{table.name}"."{col}" = %(w{i})s')
            params[f"w{i}"] = value if proc is None or value is None else proc(value)
        _write(conn, f'UPDATE "{table.name}" SET ' + ", ".join(f'"{n}" = v."{n}"' for n in sets)
               + f" FROM unnest({source}) AS v({alias}) WHERE " + " AND ".join(cond), params)
        return
    stmt = update(table).where(*[table.c[k] == bindparam(f"k_{k}") for k in keys],
                               *[table.c[c] == v for c, v in (where or {}).items()])
    stmt = stmt.values({n: bindparam(f"v_{n}") for n in sets})
    conn.execute(stmt, [{**{f"k_{k}": r[k] for k in keys}, **{f"v_{n}": r[n] for n in sets}} for r in rows])


def bulk_update_sparse(conn, table, key: str, changes: dict) -> None:
    """{key value: {column: value}}: each row's own columns set, the others left as they are.  One
    UPDATE on PostgreSQL (a column a row does not change keeps its value: CASE on a flag array);
    elsewhere one executemany per set of columns."""
    changes = {k: cols for k, cols in changes.items() if cols}
    if not changes:
        return
    if not _pg(conn):
        groups: dict[tuple, list[dict]] = {}
        for k, cols in changes.items():
            groups.setdefault(tuple(sorted(cols)), []).append({key: k, **cols})
        for rows in groups.values():
            bulk_update(conn, table, (key,), rows)
        return
    names = sorted({c for cols in changes.values() for c in cols})
    keys = list(changes)
    procs = _processors(conn, table, names)
    params = {"k": _array_literal(keys)}
    source = [f"%(k)s::{_cast(conn, table, key)}"]
    alias = [f'"{key}"']
    sets = []
    for i, (n, p) in enumerate(zip(names, procs)):
        params[f"a{i}"] = _array_literal(_bound(p, [changes[k].get(n) for k in keys]))
        params[f"f{i}"] = _array_literal([n in changes[k] for k in keys])
        source += [f"%(a{i})s::{_cast(conn, table, n)}", f"%(f{i})s::BOOLEAN[]"]
        alias += [f'"{n}"', f'"{n}__set"']
        sets.append(f'"{n}" = CASE WHEN v."{n}__set" THEN v."{n}" ELSE "{table.name}"."{n}" END')
    _write(conn, f'UPDATE "{table.name}" SET ' + ", ".join(sets) + f" FROM unnest({', '.join(source)}) AS "
           f"v({', '.join(alias)}) WHERE \"{table.name}\".\"{key}\" = v.\"{key}\"", params)
