#!/usr/bin/env python3
"""The agent's shape, checked: file sizes, run-loop function lengths, import cycles.

Usage: python3 tools/structure.py [-v] [SRC_DIR]   (-v: list every import; SRC_DIR: agent/src)

Scans agent/src (Python 3 standard library only) and prints:
  - each source file's line count, tests aside;
  - the longest functions in agent/src/run.rs and agent/src/run/**;
  - the cycles in the file-level import graph.
Exits 1 when a goal of issue 33 is broken: a file over MAX_FILE_LINES, a function in run*
over MAX_RUN_FN_LINES, or any cycle between files.

How lines are counted: physical lines (code, comments and blank lines alike), minus every item
under `#[cfg(test)]` (the `mod tests { ... }` blocks). A file that its parent declares with
`#[cfg(test)] mod name;` (decide/tests.rs) is all tests and is left out.

How imports are found: every path in the non-test code that starts with `crate::`, `super::`,
`self::` or the name of a child module (in `use` trees and in expressions alike) is resolved to
the file that defines the longest module prefix it names. `mod name;` declarations are not
imports. main.rs is its own crate; it only imports the library, so it cannot close a cycle.
Every arrow counts, a module file's arrows to its own submodules too (activity/mod.rs building a
`packet::KernelCounter`, `pub use docker::DockerContainers`): so a submodule cannot use what its
module file declares while that file uses the submodule. That is why each module's traits live
in a leaf file of their own (aws/traits.rs, container/traits.rs, activity/counter.rs and
activity/probe.rs) that the adapters and the module file both use.
"""

import os
import re
import signal
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "agent", "src")
ARGS = [a for a in sys.argv[1:] if not a.startswith("-")]
if ARGS:
    ROOT = ARGS[0]
MAX_FILE_LINES = 900
MAX_RUN_FN_LINES = 120


def mask(text):
    """The text with comments and string/char literal contents blanked (newlines kept)."""
    out = []
    i, n = 0, len(text)

    def blank(s):
        return "".join("\n" if c == "\n" else " " for c in s)

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(blank(text[i:j]))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(blank(text[i:j]))
            i = j
        elif re.match(r'b?r#*"', text[i:i + 12]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'(b?r)(#*)"', text[i:])
            end = '"' + m.group(2)
            j = text.find(end, i + len(m.group(0)))
            j = n if j < 0 else j + len(end)
            out.append('""' + blank(text[i + 2:j]))
            i = j
        elif c == '"' or (c == "b" and text.startswith('b"', i) and (i == 0 or not text[i - 1].isalnum())):
            j = i + (2 if c == "b" else 1)
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + blank(text[i + 2:j + 1]))
            i = j + 1
        elif c == "'":
            if text.startswith("'\\", i):
                j = text.find("'", i + 2)
                j = i + 1 if j < 0 else j + 1
                out.append(blank(text[i:j]))
                i = j
            elif i + 2 < n and text[i + 2] == "'":
                out.append("   ")
                i += 3
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def match_brace(code, open_at):
    depth = 0
    for j in range(open_at, len(code)):
        if code[j] == "{":
            depth += 1
        elif code[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return len(code) - 1


CFG_TEST = re.compile(r"#\[cfg\(test\)\]\s*")


def strip_tests(code):
    """The masked code with every `#[cfg(test)]` item blanked; and the test modules declared
    without a body (`#[cfg(test)] mod name;`)."""
    test_files = []
    out = code
    for m in CFG_TEST.finditer(code):
        rest = m.end()
        decl = re.match(r"(pub(\([^)]*\))?\s+)?mod\s+(\w+)\s*;", code[rest:])
        if decl:
            test_files.append(decl.group(3))
            end = rest + decl.end()
        else:
            brace = code.find("{", rest)
            semi = code.find(";", rest)
            if brace < 0 or (0 <= semi < brace):
                end = semi + 1
            else:
                end = match_brace(code, brace) + 1
        start = m.start()
        out = out[:start] + "".join("\n" if ch == "\n" else " " for ch in out[start:end]) + out[end:]
    return out, test_files


def module_of(rel):
    parts = rel[:-3].split(os.sep)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def load():
    files = {}
    for dirpath, _, names in os.walk(ROOT):
        for name in names:
            if name.endswith(".rs"):
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, ROOT)
                with open(path, encoding="utf-8") as f:
                    text = f.read()
                files[rel] = text
    return files


def use_paths(tree, prefix=()):
    """Expands a `use` tree (`super::{a, b::{self, C}}`) into full paths."""
    tree = tree.strip()
    brace = tree.find("{")
    if brace < 0:
        path = [p.strip() for p in re.sub(r"\s+as\s+\w+$", "", tree).split("::") if p.strip()]
        path = [p for p in path if p != "*"]
        if path and path[-1] == "self":
            path = path[:-1]
        return [prefix + tuple(path)]
    head = [p.strip() for p in tree[:brace].split("::") if p.strip()]
    inner = tree[brace + 1:tree.rfind("}")]
    items, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    items.append(cur)
    result = []
    for item in items:
        if item.strip():
            result += use_paths(item, prefix + tuple(head))
    return result


def main():
    files = load()
    code = {}
    test_only = set()
    for rel, text in sorted(files.items()):
        stripped, test_mods = strip_tests(mask(text))
        code[rel] = stripped
        mod = module_of(rel)
        base = os.path.dirname(rel) if os.path.basename(rel) in ("mod.rs", "lib.rs", "main.rs") else rel[:-3]
        for t in test_mods:
            for cand in (os.path.join(base, t + ".rs"), os.path.join(base, t, "mod.rs")):
                if os.path.normpath(cand) in files:
                    test_only.add(os.path.normpath(cand))
    modules = {module_of(rel): rel for rel in files if rel != "main.rs"}

    failed = False

    # File sizes.
    counts = {}
    for rel, text in files.items():
        if rel in test_only:
            continue
        lines = text.count("\n") + (0 if text.endswith("\n") else 1)
        counts[rel] = lines - blanked_test_lines(text, rel)
    print(f"Lines per file in agent/src (tests aside; limit {MAX_FILE_LINES}):")
    for rel, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        flag = "  <-- over the limit" if n > MAX_FILE_LINES else ""
        print(f"  {n:5d}  {rel}{flag}")
        failed |= n > MAX_FILE_LINES
    if test_only:
        print("  (all tests, not counted: " + ", ".join(sorted(test_only)) + ")")

    # Function lengths in run*.
    fns = []
    for rel in files:
        if rel in test_only or not (rel == "run.rs" or rel.startswith("run" + os.sep)):
            continue
        c = code[rel]
        for m in re.finditer(r"\bfn\s+(\w+)", c):
            brace = c.find("{", m.end())
            semi = c.find(";", m.end())
            if brace < 0 or (0 <= semi < brace):
                continue
            end = match_brace(c, brace)
            first = c.count("\n", 0, m.start()) + 1
            last = c.count("\n", 0, end) + 1
            fns.append((last - first + 1, rel, m.group(1), first))
    fns.sort(reverse=True)
    print(f"\nLongest functions in agent/src/run* (signature to closing brace; limit {MAX_RUN_FN_LINES}):")
    for n, rel, name, line in fns[:8]:
        flag = "  <-- over the limit" if n > MAX_RUN_FN_LINES else ""
        print(f"  {n:5d}  {rel}:{line} {name}{flag}")
    failed |= any(n > MAX_RUN_FN_LINES for n, *_ in fns)

    # The import graph.
    edges = {rel: set() for rel in files}
    for rel in files:
        if rel in test_only or rel == "main.rs":
            continue
        here = module_of(rel)
        c = code[rel]
        paths = []
        for m in re.finditer(r"\buse\s+([^;]+);", c):
            paths += use_paths(m.group(1))
        c_no_use = re.sub(r"\buse\s+[^;]+;", " ", c)
        for m in re.finditer(r"\b([A-Za-z_]\w*)((?:\s*::\s*[A-Za-z_]\w*)+)", c_no_use):
            paths.append((m.group(1),) + tuple(p.strip() for p in m.group(2).split("::")[1:]))
        for path in paths:
            target = resolve(path, here, modules)
            if not target or target == rel or target in test_only:
                continue
            edges[rel].add(target)

    cycles = [scc for scc in tarjan(edges) if len(scc) > 1]
    n_edges = sum(len(v) for v in edges.values())
    print(f"\nImport graph: {len(edges)} files, {n_edges} file-to-file imports, {len(cycles)} cycles.")
    for scc in cycles:
        print("  cycle: " + " <-> ".join(sorted(scc)))
        for a in sorted(scc):
            for b in sorted(edges[a] & set(scc)):
                print(f"    {a} -> {b}")
    failed |= bool(cycles)

    if "-v" in sys.argv:
        print("\nImports:")
        for a in sorted(edges):
            for b in sorted(edges[a]):
                print(f"  {a} -> {b}")

    print("\nstructure: " + ("FAILED" if failed else "ok"))
    return 1 if failed else 0


def blanked_test_lines(text, rel):
    """How many lines of `text` lie inside `#[cfg(test)]` items."""
    masked = mask(text)
    count = 0
    for m in CFG_TEST.finditer(masked):
        rest = m.end()
        brace = masked.find("{", rest)
        semi = masked.find(";", rest)
        if brace < 0 or (0 <= semi < brace):
            end = semi
        else:
            end = match_brace(masked, brace)
        count += masked.count("\n", m.start(), end) + 1
    return count


def resolve(path, here, modules):
    """The file that defines the longest module prefix of `path`, seen from module `here`."""
    if not path:
        return None
    head, rest = path[0], list(path[1:])
    if head == "crate":
        base = ()
    elif head == "self":
        base = here
    elif head == "super":
        base = here[:-1]
        while rest and rest[0] == "super":
            base, rest = base[:-1], rest[1:]
    elif here + (head,) in modules:
        base, rest = here + (head,), rest
    else:
        return None
    target = modules.get(base)
    for part in rest:
        base = base + (part,)
        if base in modules:
            target = modules[base]
        else:
            break
    return target


def tarjan(edges):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on.discard(w)
                scc.append(w)
                if w == v:
                    break
            out.append(scc)

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `| head` ends it quietly, like any filter
    sys.exit(main())
