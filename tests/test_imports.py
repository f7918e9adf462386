"""Import hygiene of the ferkeras package, checked on the source (``ast``), without importing anything.

Rules:

1. **No import cycle between ferkeras modules at import time.** An edge A -> B exists when A's module-level code
   imports B: ``import ferkeras.b``, ``from ferkeras import b`` where ``b`` is a submodule (that imports the
   submodule), ``from ferkeras.b import name`` (imports ``ferkeras.b``; ``ferkeras.b``'s ``__init__`` when ``b`` is
   a package and ``name`` is not a submodule of it), and the relative forms of each. Imports in a class body,
   ``try`` or ``if`` at module level run at import time and count. Imports under ``if TYPE_CHECKING:`` never run
   and do not count. Importing ``ferkeras.x.y`` also runs the parent packages' ``__init__``; those implicit edges
   are NOT counted (Python has already started the parents when it runs the child, so a child may always import
   its own package path; only taking a *name* from a parent's ``__init__`` is an edge, and that one counts).
2. **No cycle through deferred imports either.** An import inside a function (or lambda) runs on first call, so it
   cannot break the import of a module; but a cycle it closes is still two modules that depend on each other, the
   usual way a real cycle is hidden. Decision: such cycles fail too, in their own test, with their own message, so a
   module-level cycle and a deferred one are never confused. ``ALLOWED_DEFERRED_EDGES`` below lists any deferred
   edge accepted on purpose, each with its reason (none today).
3. **No use of another module's ``_private`` name** (single leading underscore, not dunder): neither
   ``from ferkeras.x import _y`` nor ``ferkeras.x._y`` / ``alias._y`` on a name bound to a ferkeras module, in
   module-level or function code. A private *module* (``ferkeras/pkg/_impl.py``) may be imported by the modules
   of its own package ``ferkeras.pkg`` (and its subpackages) and by nobody else. The same rule holds for the
   ``experiments/`` binaries and ``tools/`` scripts, which must use ferkeras through its public API.

Not seen by a static check: ``importlib.import_module`` / ``__import__`` with computed names and ``getattr(module,
"_name")``.

The core, :func:`analyse`, takes any package directory, so the tests below also run it on small fake packages with
a planted cycle / private import and show it fails when it should.
"""

import ast
import collections
import dataclasses
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Deferred (in-function) import edges accepted on purpose: {(importer, imported): reason}.
ALLOWED_DEFERRED_EDGES = {}


# ------------------------------------------------------------------------------------------------ the analysis
@dataclasses.dataclass(frozen=True)
class ImportSite:
    """One import statement (or private attribute use) in a source file."""

    module: str  # the importing module, e.g. "ferkeras.data.tfrecord"
    path: str  # its file, relative to the scanned root's parent
    line: int
    text: str  # the source line

    def __str__(self):
        return f"{self.path}:{self.line}: {self.text}"


@dataclasses.dataclass
class ImportReport:
    modules: dict  # module name -> file Path
    eager: dict  # importer -> {imported: [ImportSite]}  (runs at import time)
    deferred: dict  # importer -> {imported: [ImportSite]}  (inside a function)
    private: list  # [(ImportSite, "what is private")]

    def cycles(self, include_deferred=False, allowed=()):
        """Strongly connected import groups of two or more modules (or a module importing itself), each as
        ``(members, one shortest cycle as a list of module names ending where it starts)``."""
        graph = collections.defaultdict(set)
        for table in (self.eager, self.deferred) if include_deferred else (self.eager,):
            for src, targets in table.items():
                graph[src].update(t for t in targets if (src, t) not in allowed)
        return [(scc, _shortest_cycle(graph, scc)) for scc in _strongly_connected(graph)]

    def sites(self, cycle):
        """The import statements behind each edge of ``cycle`` (module-level ones first)."""
        out = []
        for src, dst in zip(cycle, cycle[1:]):
            found = list(dict.fromkeys(self.eager.get(src, {}).get(dst, []) + self.deferred.get(src, {}).get(dst, [])))
            kind = "" if self.eager.get(src, {}).get(dst) else " (inside a function)"
            out.append(f"{src} -> {dst}{kind}: " + "; ".join(str(s) for s in found[:2]))
        return out


def _module_names(root: Path, package: str):
    modules = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if any(not p.isidentifier() for p in parts):
            continue
        modules[".".join([package] + parts)] = path
    return modules


def _is_type_checking(test):
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _is_private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


class _Scanner(ast.NodeVisitor):
    """Collects one module's imports (module level vs deferred) and its uses of private names of ferkeras modules."""

    def __init__(self, module, is_package, modules, package, source_lines, display_path):
        self.module, self.is_package, self.modules, self.package = module, is_package, modules, package
        self.lines, self.display = source_lines, display_path
        self.depth = 0  # > 0 inside a function or lambda
        self.type_checking = 0
        self.imports = []  # (imported module, deferred?, ImportSite)
        self.private = []  # (ImportSite, description)
        self.bound = {}  # local name -> ferkeras module it is bound to (any scope; names are rarely reused)

    # -- helpers
    def _site(self, node):
        text = self.lines[node.lineno - 1].strip() if node.lineno - 1 < len(self.lines) else ""
        return ImportSite(self.module, self.display, node.lineno, text)

    def _inside(self, name):
        return name == self.package or name.startswith(self.package + ".")

    def _known(self, name):
        """``name`` if it is a module of the package, else its longest known prefix (None outside the package)."""
        while name and self._inside(name):
            if name in self.modules:
                return name
            name = name.rpartition(".")[0]
        return None

    def _private_module_allowed(self, target):
        """A ``_private`` module is importable from inside its own package only."""
        owner = target.rpartition(".")[0]
        return self.module == owner or self.module.startswith(owner + ".")

    def _check_private_path(self, node, dotted):
        """Private components in a dotted module path (``ferkeras.pkg._impl``)."""
        parts = dotted.split(".")
        for i, part in enumerate(parts[1:], start=1):
            if _is_private(part):
                target = ".".join(parts[:i + 1])
                if target in self.modules and self._private_module_allowed(target):
                    continue
                self.private.append((self._site(node), f"{'.'.join(parts[:i])}.{part}"))
                return

    def _record(self, node, target):
        if target is not None and target != self.module:
            self.imports.append((target, self.depth > 0, self._site(node)))

    def _base_of_relative(self, node):
        package = self.module if self.is_package else self.module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        return package

    # -- scopes
    def visit_FunctionDef(self, node):
        for deco in node.decorator_list:
            self.visit(deco)
        for default in node.args.defaults + node.args.kw_defaults:
            if default is not None:
                self.visit(default)
        self.depth += 1
        for stmt in node.body:
            self.visit(stmt)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    def visit_If(self, node):
        if _is_type_checking(node.test):
            self.type_checking += 1
            for stmt in node.body:
                self.visit(stmt)
            self.type_checking -= 1
            for stmt in node.orelse:
                self.visit(stmt)
        else:
            self.generic_visit(node)

    # -- imports
    def visit_Import(self, node):
        for alias in node.names:
            target = self._known(alias.name)
            if target is None:
                continue
            self._check_private_path(node, alias.name)
            if not self.type_checking:
                self._record(node, target)
            if alias.asname:
                self.bound[alias.asname] = target
            else:  # `import ferkeras.a.b` binds `ferkeras`
                self.bound[alias.name.split(".")[0]] = self._known(alias.name.split(".")[0])

    def visit_ImportFrom(self, node):
        base = self._base_of_relative(node) if node.level else (node.module or "")
        if node.level and node.module:
            base = f"{base}.{node.module}" if base else node.module
        if not self._inside(base):
            return
        self._check_private_path(node, base)
        base_module = self._known(base)
        for alias in node.names:
            if alias.name == "*":
                if not self.type_checking:
                    self._record(node, base_module)
                continue
            sub = f"{base}.{alias.name}"
            if sub in self.modules:  # `from pkg import submodule`
                if _is_private(alias.name) and not self._private_module_allowed(sub):
                    self.private.append((self._site(node), sub))
                if not self.type_checking:
                    self._record(node, sub)
                self.bound[alias.asname or alias.name] = sub
            else:  # a name defined in base's module (or package __init__)
                if _is_private(alias.name) and base_module != self.module:
                    self.private.append((self._site(node), f"{base}.{alias.name}"))
                if not self.type_checking:
                    self._record(node, base_module)

    # -- attribute use: alias._name, ferkeras.x._name
    def _resolve(self, node):
        if isinstance(node, ast.Name):
            return self.bound.get(node.id)
        if isinstance(node, ast.Attribute):
            owner = self._resolve(node.value)
            if owner is not None and f"{owner}.{node.attr}" in self.modules:
                return f"{owner}.{node.attr}"
        return None

    def visit_Attribute(self, node):
        owner = self._resolve(node.value)
        if owner is not None and owner != self.module and _is_private(node.attr):
            target = f"{owner}.{node.attr}"
            if not (target in self.modules and self._private_module_allowed(target)):
                self.private.append((self._site(node), target))
        self.generic_visit(node)


def analyse(root, package=None, extra_roots=()):
    """Scans the package in directory ``root`` (its name is ``package``, default the directory's name).

    ``extra_roots``: further directories of scripts (e.g. ``experiments/``) checked for private uses of the package
    only; their own imports do not enter the cycle graph. Returns an :class:`ImportReport`.
    """
    root = Path(root)
    package = package or root.name
    modules = _module_names(root, package)
    eager = collections.defaultdict(lambda: collections.defaultdict(list))
    deferred = collections.defaultdict(lambda: collections.defaultdict(list))
    private = []

    def scan(path, module, is_package, record_edges):
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source, filename=str(path))
        display = str(path.relative_to(root.parent)) if path.is_relative_to(root.parent) else str(path)
        scanner = _Scanner(module, is_package, modules, package, source.splitlines(), display)
        scanner.visit(tree)
        if record_edges:
            for target, is_deferred, site in scanner.imports:
                (deferred if is_deferred else eager)[module][target].append(site)
        private.extend(scanner.private)

    for module, path in modules.items():
        scan(path, module, path.name == "__init__.py", record_edges=True)
    for extra in extra_roots:
        extra = Path(extra)
        for path in sorted(extra.rglob("*.py")):
            scan(path, f"{extra.name}.{path.stem}", False, record_edges=False)
    return ImportReport(dict(modules), {k: dict(v) for k, v in eager.items()},
                        {k: dict(v) for k, v in deferred.items()}, private)


def _strongly_connected(graph):
    """Tarjan's algorithm (iterative); groups of >= 2 nodes or with a self-loop, each sorted, sorted overall."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = [0]
    nodes = sorted(set(graph) | {t for ts in graph.values() for t in ts})
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1 or node in graph.get(node, ()):
                    out.append(sorted(group))
    return sorted(out)


def _shortest_cycle(graph, members):
    """A shortest cycle through the group's first member, staying inside the group (breadth-first)."""
    start, inside = members[0], set(members)
    previous, queue = {start: None}, collections.deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(graph.get(node, ())):
            if child == start:
                path = [node]
                while previous[path[-1]] is not None:
                    path.append(previous[path[-1]])
                return path[::-1] + [start]
            if child in inside and child not in previous:
                previous[child] = node
                queue.append(child)
    return [start, start]


def format_cycles(report, cycles):
    lines = []
    for members, cycle in cycles:
        lines.append(f"cycle among {len(members)} modules: " + " -> ".join(cycle))
        lines.extend("    " + s for s in report.sites(cycle))
    return "\n".join(lines)


def format_private(found):
    return "\n".join(f"{site}   <- private name {what}" for site, what in found)


def check_package(root, package=None, extra_roots=(), allowed_deferred=ALLOWED_DEFERRED_EDGES):
    """The whole check: raises AssertionError listing every module-level cycle, deferred-import cycle and private
    import found (all three kinds at once); returns the report when there is none."""
    report = analyse(root, package, extra_roots)
    problems = []
    eager = report.cycles()
    if eager:
        problems.append("Import cycles at import time (module level):\n" + format_cycles(report, eager))
    eager_groups = {tuple(m) for m, _ in eager}
    deferred = [c for c in report.cycles(include_deferred=True, allowed=set(allowed_deferred))
                if tuple(c[0]) not in eager_groups]
    if deferred:
        problems.append("Import cycles closed by imports inside functions (move the shared code into a module both "
                        "can import):\n" + format_cycles(report, deferred))
    if report.private:
        problems.append("Imports / uses of another module's private name (make it public or move it):\n"
                        + format_private(report.private))
    if problems:
        raise AssertionError("\n\n".join(problems))
    return report


# ------------------------------------------------------------------------------------------------ the live tree
def _live_report():
    return analyse(REPO / "ferkeras", "ferkeras", extra_roots=[REPO / "experiments", REPO / "tools"])


def test_ferkeras_has_no_module_level_import_cycle():
    report = _live_report()
    assert len(report.modules) > 30  # the scan did find the package
    cycles = report.cycles()
    assert not cycles, "Import cycles at import time:\n" + format_cycles(report, cycles)


def test_ferkeras_has_no_import_cycle_through_deferred_imports():
    report = _live_report()
    eager = {tuple(m) for m, _ in report.cycles()}
    cycles = [c for c in report.cycles(include_deferred=True, allowed=set(ALLOWED_DEFERRED_EDGES))
              if tuple(c[0]) not in eager]  # the module-level ones fail the test above
    assert not cycles, "Import cycles closed by imports inside functions:\n" + format_cycles(report, cycles)


def test_no_private_imports_across_modules():
    report = _live_report()
    assert not report.private, "Private names used across modules:\n" + format_private(report.private)


# ------------------------------------------------------------------------------------------------ fake packages
def write_package(root, files):
    """Writes ``{"pkg/a.py": source, ...}`` under ``root`` (``__init__.py`` files created where missing)."""
    for rel, source in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    for rel in files:
        parent = (root / rel).parent
        while parent != root:
            (parent / "__init__.py").touch(exist_ok=True)
            parent = parent.parent
    return root


CLEAN = {
    "pkg/__init__.py": "from pkg.core import public_fn\nfrom pkg import core\n",
    "pkg/core.py": "import os\n\ndef public_fn():\n    return _helper()\n\ndef _helper():\n    return 1\n",
    "pkg/sub/__init__.py": "",
    "pkg/sub/user.py": "from ..core import public_fn\nimport pkg.core as c\nx = c.public_fn\n",
    "pkg/sub/_impl.py": "VALUE = 1\n",
    "pkg/sub/friend.py": "from pkg.sub import _impl\nfrom . import _impl as again\nimport pkg\n",
}


def test_clean_fake_package_passes(tmp_path):
    root = write_package(tmp_path, CLEAN)
    report = check_package(root / "pkg")
    assert set(report.modules) == {"pkg", "pkg.core", "pkg.sub", "pkg.sub.user", "pkg.sub._impl", "pkg.sub.friend"}
    assert set(report.eager["pkg.sub.user"]) == {"pkg.core"}
    assert set(report.eager["pkg"]) == {"pkg.core"}
    assert set(report.eager["pkg.sub.friend"]) == {"pkg.sub._impl", "pkg"}


@pytest.mark.parametrize("a_imports", [
    "from pkg.b import thing",  # absolute, a name
    "from pkg import b",  # `from package import submodule` is an import of the submodule
    "import pkg.b",
    "from . import b",
    "from .b import thing",
    "try:\n    from pkg.b import thing\nexcept ImportError:\n    thing = None",
    "class K:\n    from pkg.b import thing",
])
def test_module_level_cycle_fails(tmp_path, a_imports):
    root = write_package(tmp_path, {"pkg/a.py": a_imports + "\nX = 1\n",
                                    "pkg/b.py": "from pkg.a import X\nthing = X\n"})
    report = analyse(root / "pkg")
    assert report.cycles() == [(["pkg.a", "pkg.b"], ["pkg.a", "pkg.b", "pkg.a"])]
    with pytest.raises(AssertionError, match=r"(?s)at import time.*pkg\.a -> pkg\.b -> pkg\.a.*pkg/b\.py:1"):
        check_package(root / "pkg")


def test_cycle_through_a_package_init_fails(tmp_path):
    # pkg/__init__ imports a; a takes a name from pkg's __init__: the real partially-initialised-module failure.
    root = write_package(tmp_path, {"pkg/__init__.py": "from pkg.a import f\nNAMES = ['x']\n",
                                    "pkg/a.py": "from pkg import NAMES\n\ndef f():\n    return NAMES\n"})
    assert analyse(root / "pkg").cycles() == [(["pkg", "pkg.a"], ["pkg", "pkg.a", "pkg"])]


def test_three_module_cycle_and_self_contained_parent_imports(tmp_path):
    root = write_package(tmp_path, {
        "pkg/__init__.py": "from pkg.x import a\n",
        "pkg/x/__init__.py": "from pkg.x.a import A\n",
        "pkg/x/a.py": "import pkg.x.b\nA = 1\n",  # importing pkg.x.b also runs pkg/x/__init__: not an edge
        "pkg/x/b.py": "from pkg.y import Y\n",
        "pkg/y.py": "from pkg.x.a import A\nY = A\n",
    })
    cycles = analyse(root / "pkg").cycles()
    assert cycles == [(["pkg.x.a", "pkg.x.b", "pkg.y"], ["pkg.x.a", "pkg.x.b", "pkg.y", "pkg.x.a"])]


def test_deferred_and_type_checking_imports(tmp_path):
    root = write_package(tmp_path, {
        "pkg/a.py": "from pkg.b import B\n\ndef use():\n    from pkg.c import C\n    return C\n",
        "pkg/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import use\nB = 1\n",
        "pkg/c.py": "from pkg.a import use\nC = 2\nf = lambda: __import__('os')\n",
    })
    report = analyse(root / "pkg")
    assert report.cycles() == []  # a -> b only; b's TYPE_CHECKING import never runs; a -> c is deferred
    assert set(report.deferred["pkg.a"]) == {"pkg.c"}
    assert report.cycles(include_deferred=True) == [(["pkg.a", "pkg.c"], ["pkg.a", "pkg.c", "pkg.a"])]
    with pytest.raises(AssertionError, match=r"(?s)inside functions.*pkg\.a -> pkg\.c \(inside a function\)"):
        check_package(root / "pkg", allowed_deferred={})
    check_package(root / "pkg", allowed_deferred={("pkg.a", "pkg.c"): "test: accepted on purpose"})


@pytest.mark.parametrize("user_source, private", [
    ("from pkg.core import _helper", "pkg.core._helper"),
    ("from .core import _helper as h", "pkg.core._helper"),
    ("from pkg import core\nx = core._helper()", "pkg.core._helper"),
    ("import pkg.core\n\ndef f():\n    return pkg.core._helper()", "pkg.core._helper"),
    ("import pkg.core as c\ny = c._helper", "pkg.core._helper"),
    ("from pkg.sub import _impl", "pkg.sub._impl"),  # a private module, from outside its package
    ("import pkg.sub._impl", "pkg.sub._impl"),
    ("def f():\n    from pkg.sub._impl import VALUE\n    return VALUE", "pkg.sub._impl"),
])
def test_private_import_fails(tmp_path, user_source, private):
    root = write_package(tmp_path, {**CLEAN, "pkg/user.py": user_source + "\n"})
    report = analyse(root / "pkg")
    assert [(site.module, what) for site, what in report.private] == [("pkg.user", private)]
    with pytest.raises(AssertionError, match=r"(?s)private name.*pkg/user\.py:\d+: .*" + private.replace(".", r"\.")):
        check_package(root / "pkg")


def test_private_use_in_scripts_fails(tmp_path):
    root = write_package(tmp_path, CLEAN)
    scripts = tmp_path / "experiments"
    scripts.mkdir()
    (scripts / "run.py").write_text("from pkg import core\nfrom pkg.core import public_fn\nprint(core._helper())\n")
    report = analyse(root / "pkg", extra_roots=[scripts])
    assert [(s.module, s.line, what) for s, what in report.private] == [("experiments.run", 3, "pkg.core._helper")]
    assert "experiments.run" not in report.eager  # scripts do not enter the cycle graph


def test_dunder_names_and_own_privates_are_fine(tmp_path):
    root = write_package(tmp_path, {**CLEAN, "pkg/user.py": "import pkg\nfrom pkg.core import __doc__ as d\n"
                                    "v = pkg.__name__\n\ndef _mine():\n    return 1\nz = _mine()\n"})
    assert analyse(root / "pkg").private == []
