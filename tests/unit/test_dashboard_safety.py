"""The dashboard's SQL text is built from constants only, and it opens data read-only.

``dashboards/queries.py`` passes every value a user chooses (filters, order and
dead-letter ids, lanes, topics, limits) as a DuckDB parameter. The scan below proves
the other half: the SQL *text* that reaches DuckDB (``con.sql``, ``con.execute``,
``_frame``, ``_scalar``) is made only of literals, module constants, helpers called
with constants, and identifiers checked against a whitelist; never of a function's
parameters. A second test shows the scan catches an interpolated parameter.
"""

import ast
import builtins
from pathlib import Path

import duckdb
import pytest

from allocflow.dashboards import data

pytestmark = pytest.mark.unit

QUERIES = Path(__file__).resolve().parents[2] / "dashboards" / "queries.py"

_SQL_SINKS = {"sql": 0, "execute": 0, "_frame": 1, "_scalar": 1}
"""Callee name → position of the SQL text among its arguments."""

_PASSED_THROUGH = frozenset({"con", "parameters"})
"""Helper parameters that never become SQL text: the connection, the parameter values."""


class _StaticSql:
    """Decides whether expressions of one module are built from constants only.

    Module-level names (constants, imports, functions) are static. Inside a function,
    a local name is static when every assignment to it is, a comprehension variable
    when what it iterates over is, and a parameter only when the function rejects
    every value outside a constant whitelist (``if p not in CONST: raise``). The
    parameters of private helpers are taken as static here; :meth:`violations`
    then checks every call of a helper passes static arguments.
    """

    def __init__(self, tree: ast.Module) -> None:
        self._module_names = set(dir(builtins))
        self._helpers: dict[str, ast.FunctionDef] = {}
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                self._module_names.add(node.name)
            if isinstance(node, ast.FunctionDef) and node.name.startswith("_"):
                self._helpers[node.name] = node
            if isinstance(node, ast.Import | ast.ImportFrom):
                self._module_names.update((a.asname or a.name).split(".")[0] for a in node.names)
            for target in _targets(node):
                self._module_names.add(target)
        self._tree = tree

    def violations(self) -> list[str]:
        """Every place where non-static text reaches DuckDB or a SQL helper."""
        found = []
        for function in ast.walk(self._tree):
            if not isinstance(function, ast.FunctionDef):
                continue
            static = self._static_names(function)
            for call in ast.walk(function):
                if not isinstance(call, ast.Call):
                    continue
                for argument in self._sql_arguments(call):
                    if not self._is_static(argument, static, function):
                        found.append(f"{function.name}:{argument.lineno}: {ast.unparse(argument)}")
        return found

    def _sql_arguments(self, call: ast.Call) -> list[ast.expr]:
        name = _callee(call)
        if name in _SQL_SINKS:
            position = _SQL_SINKS[name]
            return [call.args[position]] if len(call.args) > position else []
        if name in self._helpers:
            parameters = [a.arg for a in self._helpers[name].args.args]
            return [
                argument
                for parameter, argument in zip(parameters, call.args, strict=False)
                if parameter not in _PASSED_THROUGH
            ]
        return []

    def _static_names(self, function: ast.FunctionDef) -> set[str]:
        names = set(self._module_names)
        parameters = [a.arg for a in function.args.args]
        if function.name in self._helpers:
            names.update(parameters)
        names.update(p for p in parameters if _whitelisted(function, p, self._module_names))
        assignments = list(_local_assignments(function))
        changed = True
        while changed:
            changed = False
            for target, value in assignments:
                if target not in names and self._is_static(value, names, function):
                    names.add(target)
                    changed = True
        return names

    def _is_static(self, node: ast.expr, names: set[str], function: ast.FunctionDef) -> bool:
        result: bool
        match node:
            case ast.Constant():
                result = True
            case ast.Name(id=name):
                result = name in names
            case ast.JoinedStr(values=values) | ast.Tuple(elts=values) | ast.List(elts=values):
                result = all(self._is_static(v, names, function) for v in values)
            case ast.FormattedValue(value=value):
                result = self._is_static(value, names, function)
            case ast.Attribute(value=value) | ast.Starred(value=value):
                result = self._is_static(value, names, function)
            case ast.Subscript(value=value, slice=index):
                result = self._is_static(value, names, function) and self._is_static(
                    index, names, function
                )
            case ast.BinOp(left=left, right=right):
                result = self._is_static(left, names, function) and self._is_static(
                    right, names, function
                )
            case ast.IfExp(body=body, orelse=orelse):
                result = self._is_static(body, names, function) and self._is_static(
                    orelse, names, function
                )
            case ast.Call(func=func, args=args, keywords=keywords):
                result = all(
                    self._is_static(part, names, function)
                    for part in (func, *args, *(k.value for k in keywords))
                )
            case ast.GeneratorExp() | ast.ListComp():
                inner = set(names)
                result = True
                for generator in node.generators:
                    result = result and self._is_static(generator.iter, inner, function)
                    inner.update(_names(generator.target))
                    result = result and all(
                        self._is_static(test, inner, function) for test in generator.ifs
                    )
                result = result and self._is_static(node.elt, inner, function)
            case _:
                result = False
        return result


def _targets(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.Assign):
        return [name for target in node.targets for name in _names(target)]
    if isinstance(node, ast.AnnAssign):
        return _names(node.target)
    return []


def _names(target: ast.expr) -> list[str]:
    return [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]


def _local_assignments(function: ast.FunctionDef) -> list[tuple[str, ast.expr]]:
    found = []
    for node in ast.walk(function):
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            found.extend((name, node.value) for name in _targets(node))
    return found


def _callee(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _whitelisted(function: ast.FunctionDef, parameter: str, constants: set[str]) -> bool:
    """Whether ``function`` raises for any ``parameter`` not in a module constant."""
    for node in ast.walk(function):
        if (
            isinstance(node, ast.If)
            and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name)
            and node.test.left.id == parameter
            and [type(op) for op in node.test.ops] == [ast.NotIn]
            and isinstance(node.test.comparators[0], ast.Name)
            and node.test.comparators[0].id in constants
            and any(isinstance(statement, ast.Raise) for statement in node.body)
        ):
            return True
    return False


def test_dashboard_sql_text_is_built_from_constants_only() -> None:
    tree = ast.parse(QUERIES.read_text(encoding="utf-8"))
    checker = _StaticSql(tree)

    sinks = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and _callee(node) in ("_frame", "_scalar", "execute")
    ]

    assert len(sinks) >= 30, "the scan must see the queries"
    assert checker.violations() == []


@pytest.mark.parametrize(
    "source",
    [
        "def q(con, order_id):\n"
        "    return _frame(con, f\"SELECT * FROM o WHERE id = '{order_id}'\")",
        "def q(con, filters):\n    sql = 'SELECT ' + filters.column\n    return con.sql(sql)",
        "def q(con, by):\n    return con.execute(f'SELECT {by} FROM t')",
        "def _where(column):\n    return f'WHERE {column} = 1'\n"
        "def q(con, column):\n    return _frame(con, 'SELECT 1 ' + _where(column))",
    ],
    ids=["f-string", "concatenation", "execute", "through a helper"],
)
def test_the_scan_catches_user_values_in_sql_text(source: str) -> None:
    assert _StaticSql(
        ast.parse("def _frame(con, sql, parameters=None): ...\n" + source)
    ).violations()


def test_the_scan_accepts_a_whitelisted_identifier() -> None:
    source = (
        "COLUMNS = ('a', 'b')\n"
        "def q(con, by):\n"
        "    if by not in COLUMNS:\n"
        "        raise ValueError(by)\n"
        "    return con.sql(f'SELECT {by} FROM t WHERE x = $x', params={'x': 1})\n"
    )

    assert _StaticSql(ast.parse(source)).violations() == []


def test_dashboard_opens_the_data_read_only(tmp_path: Path) -> None:
    db = tmp_path / "allocflow.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE orders (order_id VARCHAR)")
        con.execute("INSERT INTO orders VALUES ('o-1')")

    with data.read_only(db) as (con, source):
        assert source == db
        assert con.execute("SELECT count(*) FROM orders").fetchone() == (1,)
        with pytest.raises(duckdb.Error, match="read-only"):
            con.execute("DELETE FROM orders")

    with duckdb.connect(str(db)) as con:
        assert con.execute("SELECT count(*) FROM orders").fetchone() == (1,)


def test_dashboard_prefers_the_snapshot_and_opens_it_read_only(tmp_path: Path) -> None:
    db = tmp_path / "allocflow.duckdb"
    snapshot = tmp_path / "allocflow.duckdb.snapshot"
    with duckdb.connect(str(snapshot)) as con:
        con.execute("CREATE TABLE t (x INTEGER)")

    with data.read_only(db) as (con, source):
        assert source == snapshot
        with pytest.raises(duckdb.Error, match="read-only"):
            con.execute("INSERT INTO t VALUES (1)")


def test_every_duckdb_connection_of_the_dashboard_is_read_only() -> None:
    dashboards = QUERIES.parent
    connects = []
    for path in sorted(dashboards.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        connects += [
            (path.name, node)
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "connect"
        ]

    assert connects
    for name, call in connects:
        read_only = {k.arg: k.value for k in call.keywords}.get("read_only")
        assert isinstance(read_only, ast.Constant), f"{name}:{call.lineno}"
        assert read_only.value is True, f"{name}:{call.lineno}"
