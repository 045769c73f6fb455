#!/usr/bin/env python3
"""Each crate's modules form layers: no import cycle between the modules of one crate.

A module (a file `src/X.rs`, or the folder `src/X/` with what is in it) uses another when its
code names `crate::Y` (in a path or a `use crate::{...}` group, test code included); a name
that `lib.rs` or `main.rs` re-exports (`crate::CounterFile`) counts as a use of the module it
comes from. Comments are not code: a doc link to a module above is no import.

Prints every crate's graph (module: the modules it uses), then each cycle found; exit status 1
when there is one. `--self-test` runs it on two tiny crates, one with a cycle, and checks that
it tells which.

Usage: checks/module-layers.py [--self-test] [CRATE_DIR...]   (default: every */src here)
"""

import pathlib
import re
import sys
import tempfile

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def code_of(text):
    """The text without `//` comments (doc comments included) and `/* */` comments."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def group_heads(code, start):
    """The first segment of each item of the `{...}` group opening at `code[start]`."""
    heads, depth, expect = [], 0, True
    for token in re.finditer(rf"{IDENT}|[{{}},]|::", code[start:]):
        t = token.group()
        if t == "{":
            depth += 1
            expect = depth == 1
        elif t == "}":
            depth -= 1
            if depth == 0:
                break
        elif t == ",":
            expect = depth == 1
        elif t != "::" and expect and depth == 1:
            heads.append(t)
            expect = False
        elif t != "::":
            expect = False
    return heads


def named_after(code, prefix):
    """Every name that follows `prefix::` in code, directly or as a group's item."""
    names = []
    for m in re.finditer(rf"\b{prefix}::(?:({IDENT})|(\{{))", code):
        if m.group(1):
            names.append(m.group(1))
        else:
            names.extend(group_heads(code, m.start(2)))
    return names


def graph(src):
    """{module: set of modules it uses} for the crate whose sources are in `src`."""
    files = {}
    for path in sorted(src.rglob("*.rs")):
        rel = path.relative_to(src)
        module = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        files.setdefault(module, []).append(code_of(path.read_text()))
    roots = [files.pop(root) for root in ("lib", "main") if root in files]
    modules = set(files)
    # What the crate root re-exports, by the module it comes from: `pub use counter::{A, B}`.
    exported = {}
    for code in (c for texts in roots for c in texts):
        for m in re.finditer(rf"\bpub\s+use\s+(?:crate::)?({IDENT})::", code):
            if m.group(1) not in modules:
                continue
            rest = code[m.end():]
            if rest.startswith("{"):
                items = group_heads(rest, 0)
            else:
                items = re.findall(rf"(?:{IDENT}::)*({IDENT})", rest.split(";", 1)[0])[-1:]
            for item in items:
                exported[item] = m.group(1)
    edges = {}
    for module, texts in files.items():
        used = set()
        for code in texts:
            for name in named_after(code, "crate"):
                target = name if name in modules else exported.get(name)
                if target and target != module:
                    used.add(target)
        edges[module] = used
    return edges


def cycles(edges):
    """Each set of modules that reach one another, with one cycle through it."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append((path_round(v, component, edges), sorted(component)))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def path_round(start, component, edges):
    """A shortest way from `start` back to itself inside `component`."""
    frontier, seen = [[start]], {start}
    while frontier:
        way = frontier.pop(0)
        for w in sorted(edges[way[-1]] & component):
            if w == start:
                return way + [start]
            if w not in seen:
                seen.add(w)
                frontier.append(way + [w])
    return [start]


def check(crate_dirs, out=sys.stdout):
    """Prints each crate's graph and cycles; returns how many cycles."""
    total = 0
    for crate in crate_dirs:
        edges = graph(crate / "src")
        print(f"{crate.name}:", file=out)
        for module in sorted(edges):
            print(f"  {module}: {' '.join(sorted(edges[module])) or '-'}", file=out)
        for cycle, knot in cycles(edges):
            total += 1
            print(f"  CYCLE in {crate.name}: {' -> '.join(cycle)}", file=out)
            print(f"    modules in that knot: {' '.join(knot)}", file=out)
            mutual = [f"{a}<->{b}" for a in knot for b in knot if a < b
                      and b in edges[a] and a in edges[b]]
            if mutual:
                print(f"    using each other: {' '.join(mutual)}", file=out)
    print(f"module-layers: {len(crate_dirs)} crates, {total} import cycles", file=out)
    return total


def self_test():
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        crate = pathlib.Path(tmp) / "knot"
        (crate / "src" / "c").mkdir(parents=True)
        files = {
            "lib.rs": "pub mod a;\npub mod b;\npub mod c;\npub use b::{Thing, other};\n",
            # Only a re-exported name leads from a to b; a comment naming c is no use.
            "a.rs": "use crate::{\n    Thing,\n};\n/// [`crate::c`]\n",
            "b.rs": "fn f() { crate::c::go() }\n",
            "c/mod.rs": "mod inner;\n",
            "c/inner.rs": "use crate::a::{self, x::{y, z}};\n",
        }
        for name, text in files.items():
            (crate / "src" / name).write_text(text)
        import io

        report = io.StringIO()
        cases = [
            ("a cycle through a re-export and a folder module is found", 1,
             "CYCLE in knot: a -> b -> c -> a"),
        ]
        found = check([crate], report)
        (crate / "src" / "c" / "inner.rs").write_text("// use crate::a;\nuse super::*;\n")
        report_after = io.StringIO()
        cases.append(("without c's use of a, none", 0, "module-layers: 1 crates, 0 import cycles"))
        found_after = check([crate], report_after)
        for (name, want, line), (got, text) in zip(
            cases, [(found, report.getvalue()), (found_after, report_after.getvalue())]
        ):
            if got == want and line in text:
                print(f"ok: {name}")
            else:
                failed += 1
                print(f"FAILED: {name}: {got} cycles, report:\n{text}")
    print(f"{len(cases) - failed} passed, {failed} failed")
    return failed


def main(args):
    if args[:1] == ["--self-test"]:
        return 1 if self_test() else 0
    root = pathlib.Path(__file__).resolve().parent.parent
    crates = [pathlib.Path(a) for a in args] or sorted(
        p.parent for p in root.glob("*/src") if (p.parent / "Cargo.toml").exists()
    )
    return 1 if check(crates) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
