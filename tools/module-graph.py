#!/usr/bin/env python3
"""The module graph of every crate in the workspace, and its two rules.

1. No import circle between the modules of a crate. Module A naming an
   item of module B is an edge A -> B: a `use` (anywhere, grouped, renamed,
   behind an attribute), a path written inline (`crate::`, `super::`,
   `self::`, inside inline modules too), a path through a module name
   imported or declared as a child, a glob import (`use m::*`: an edge to
   `m` and to every module `m` re-exports from), a macro called where it is
   not defined. Re-exports (`pub use`) are followed to the module that
   defines the item, so a parent that only re-exports its children is not a
   node in anyone's circle; a module that also uses what it re-exports
   depends on it. In lethe-store and lethe-ledger the root defines the
   crate's base (`Store`, extended by one module per aggregate; the
   ledger's core types) and naming those items is not an edge; in every
   other crate the root is a module like the others. Every strongly
   connected set of two or more modules is reported with the lines that
   make its edges.
2. In `lethe-server`, `lib.rs` defines nothing (declarations and
   re-exports only) and no module names an item defined there.

Not seen: paths assembled inside a macro (`crate::$m::f`).

Test modules (`#[cfg(test)] mod ... { }`) are left out: they sit below
their file by definition. Comments and string literals are removed before
reading. Exit status 1 when a rule is broken, with what to fix.

Usage: tools/module-graph.py [--dot CRATE]   (--dot prints the crate's graph)
"""

import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
ITEM_DEF = re.compile(
    r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:(?:async|unsafe|const|extern\s+\"C\")\s+)*"
    r"(?:fn|struct|enum|trait|type|const|static|union|mod|macro_rules!)\s+(" + IDENT + ")",
    re.M,
)


def strip(src):
    """Source without comments, string and char literals (kept as "")."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if src.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif src.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    if src[i] == "\n":
                        out.append("\n")
                    i += 1
        elif re.match(r'[bc]?r#*"', src[i:i + 12]) and not (i and re.match(r"\w", src[i - 1])):
            m = re.match(r'[bc]?r(#*)"', src[i:])
            end = src.find('"' + m.group(1), i + len(m.group(0)))
            end = n if end < 0 else end + 1 + len(m.group(1))
            out.append('""' + "\n" * src.count("\n", i, end))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            out.append('""' + "\n" * src.count("\n", i, j))
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'|'\\x[0-9a-fA-F]{2}'", src[i:i + 12]):
            m = re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'|'\\x[0-9a-fA-F]{2}'", src[i:i + 12])
            out.append("' '")
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def drop_test_modules(src):
    """`src` with every `#[cfg(test)] mod name { ... }` body blanked (lines kept)."""
    pat = re.compile(r"#\[cfg\(test\)\]\s*(?:#\[[^\]]*\]\s*)*(?:pub(?:\([^)]*\))?\s+)?mod\s+" + IDENT + r"\s*\{")
    while True:
        m = pat.search(src)
        if not m:
            return src
        depth, j = 1, m.end()
        while j < len(src) and depth:
            depth += {"{": 1, "}": -1}.get(src[j], 0)
            j += 1
        src = src[: m.start()] + "\n" * src.count("\n", m.start(), j) + src[j:]


class Module:
    def __init__(self, name, path, text, raw):
        self.name, self.path, self.text, self.raw = name, path, text, raw
        self.defs = set(ITEM_DEF.findall(text))
        self.uses = []  # (segments, line, is_reexport, alias)
        self.inline = []  # (segments, line)


def inline_spans(text):
    spans = []
    for mm in re.finditer(r"(?<![\w:])mod\s+" + IDENT + r"\s*\{", text):
        depth, j = 1, mm.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        spans.append((mm.end(), j))
    return spans


def in_file(segs, spans, pos):
    """Rewrite a self/super path written inside inline modules to the file module."""
    d = sum(1 for a, b in spans if a <= pos < b)
    if not d or segs[0] not in ("self", "super"):
        return segs
    k = 0
    while k < len(segs) and segs[k] == "super":
        k += 1
    if k == 0:
        return segs  # self:: inside an inline module: still this file
    return (["super"] * (k - d) if k > d else ["self"]) + segs[k:]


def line_of(text, pos):
    return text.count("\n", 0, pos) + 1


def load_crate(src_dir):
    mods = {}
    for dirpath, _, files in os.walk(src_dir):
        for f in files:
            if not f.endswith(".rs"):
                continue
            full = os.path.join(dirpath, f)
            rel = os.path.relpath(full, src_dir)[:-3].split(os.sep)
            if rel[-1] in ("lib", "main", "mod"):
                rel = rel[:-1]
            if rel and rel[0] == "bin":
                continue
            raw = open(full, encoding="utf-8").read()
            text = drop_test_modules(strip(raw))
            m = Module("::".join(rel), os.path.relpath(full, ROOT), text, raw)
            spans, ispans = [], inline_spans(text)
            for u in re.finditer(r"(?m)(?<![\w.:$])(?:#\[[^\]]*\][ \t]*)*(pub(?:\([^)]*\))?\s+)?use\s+([^;]+);", text):
                spans.append(u.span())
                for p in expand_use(u.group(2)):
                    path, alias = p
                    m.uses.append((in_file(path.split("::"), ispans, u.start()), line_of(text, u.start()), bool(u.group(1)), alias))
            blanked = list(text)
            for a, b in spans:
                for k in range(a, b):
                    if blanked[k] != "\n":
                        blanked[k] = " "
            blanked = "".join(blanked)
            for r in re.finditer(r"(?<![\w:])((?:crate|super|self)(?:\s*::\s*" + IDENT + r")+)", blanked):
                m.inline.append((in_file(re.sub(r"\s+", "", r.group(1)).split("::"), ispans, r.start()), line_of(blanked, r.start())))
            m.blanked = blanked
            mods[m.name] = m
    homes = {}
    for m in mods.values():
        for mac in re.findall(r"macro_rules!\s*(" + IDENT + ")", m.text):
            homes.setdefault(mac, []).append(m.name)
        if m.name and re.search(r"#\[macro_export\]\s*(?:#\[[^\]]*\]\s*)*macro_rules!", m.text):
            for mac in re.findall(r"#\[macro_export\]\s*(?:#\[[^\]]*\]\s*)*macro_rules!\s*(" + IDENT + ")", m.text):
                if "" in mods:
                    mods[""].uses.append((["crate"] + m.name.split("::") + [mac], 0, True, None))
    self_alias = set()
    for m in mods.values():
        self_alias |= set(re.findall(r"extern\s+crate\s+self\s+as\s+(" + IDENT + ")", m.text))
    for m in mods.values():
        for mac, hs in homes.items():
            if len(hs) == 1 and hs[0] != m.name:
                for r in re.finditer(r"(?<![\w:])" + mac + r"\s*!", m.blanked):
                    m.inline.append((["crate"] + (hs[0].split("::") if hs[0] else []) + [mac], line_of(m.blanked, r.start())))
    for m in mods.values():
        prefix = m.name + "::" if m.name else ""
        names = {c[len(prefix):]: c.split("::") for c in mods if c.startswith(prefix) and "::" not in c[len(prefix):] and c != m.name}
        for segs, _, _, alias in m.uses:
            if segs[0] not in ("crate", "self", "super"):
                continue
            target = absolute_simple(m.name, segs[:-1] if segs[-1] == "*" else segs)
            if target is None or "::".join(target) not in mods:
                continue
            if segs[-1] == "*":
                # A glob brings the module's own child modules into scope.
                base = "::".join(target)
                base_prefix = base + "::" if base else ""
                for c in mods:
                    rest = c[len(base_prefix):]
                    if c.startswith(base_prefix) and rest and "::" not in rest and c != m.name:
                        names.setdefault(rest, c.split("::"))
            else:
                names[alias or segs[-1]] = target
        for a in self_alias:
            names[a] = []
        m.names = names
        if not names:
            continue
        pat = r"(?<![\w:])(" + "|".join(map(re.escape, names)) + r")((?:\s*::\s*" + IDENT + r")+)"
        for r in re.finditer(pat, m.blanked):
            segs = names[r.group(1)] + re.sub(r"\s+", "", r.group(2)).split("::")[1:]
            m.inline.append((["crate"] + segs, line_of(m.blanked, r.start())))
    return mods


def expand_use(tree):
    out = []
    for p in brace_expand(re.sub(r"\s+", " ", tree).strip()):
        p = p.strip()
        alias = None
        am = re.match(r"^(.*?)\s+as\s+(" + IDENT + r")$", p)
        if am:
            p, alias = am.group(1), am.group(2)
        out.append((p.replace(" ", ""), alias))
    return out


def brace_expand(tree):
    i = tree.find("{")
    if i < 0:
        return [tree]
    prefix, inner = tree[:i], tree[i + 1 : tree.rindex("}")]
    parts, d, start = [], 0, 0
    for k, ch in enumerate(inner):
        d += {"{": 1, "}": -1}.get(ch, 0)
        if ch == "," and d == 0:
            parts.append(inner[start:k])
            start = k + 1
    parts.append(inner[start:])
    res = []
    for p in parts:
        p = p.strip()
        if not p:
            continue
        for q in brace_expand(p):
            q = q.strip()
            res.append(prefix.rstrip(": ") if q == "self" else prefix.replace(" ", "") + q)
    return res


def resolve(mods, segs, seen=None):
    """(module, item) that a crate-relative path lands on, following re-exports."""
    seen = seen or set()
    k = len(segs)
    while k > 0 and "::".join(segs[:k]) not in mods:
        k -= 1
    target = "::".join(segs[:k])
    rest = segs[k:]
    if not rest or rest[0] == "*":
        return target, None
    item = rest[0]
    m = mods[target]
    if item in m.defs or (target, item) in seen:
        return target, item
    seen.add((target, item))
    for segs2, _, reexp, alias in m.uses:
        if not reexp:
            continue
        abs2 = absolute_simple(target, segs2) if segs2[0] in ("crate", "self", "super") else None
        if abs2 is None:
            cand = (target + "::" if target else "") + segs2[0]
            if cand in mods:
                abs2 = cand.split("::") + segs2[1:]
        if abs2 is None:
            continue
        name = alias or abs2[-1]
        if name == item:
            return resolve(mods, abs2, seen)
        if abs2[-1] == "*":
            src = "::".join(abs2[:-1])
            if src in mods and item in mods[src].defs:
                return resolve(mods, abs2[:-1] + [item], seen)
    return target, item


# Crates whose root defines their base type, which every module extends or
# uses: lethe-store's `Store` (one `impl Store` block per aggregate's
# module) and the ledger's core types. Naming those root items is not an
# edge; in every other crate the root is a module like the others.
BASE_ROOT = {"lethe-store", "lethe-ledger"}


def graph(crate_dir):
    crate = os.path.basename(os.path.normpath(crate_dir))
    mods = load_crate(os.path.join(crate_dir, "src"))
    edges, root_items = {}, []
    for name, m in sorted(mods.items()):
        names = getattr(m, "names", {})
        refs = [(s, ln, r, a) for s, ln, r, a in m.uses] + [(s, ln, False, None) for s, ln in m.inline]
        for segs, ln, reexp, alias in refs:
            abs_ = None
            if segs[0] in ("crate", "self", "super"):
                abs_ = absolute_simple(name, segs)
            elif segs[0] in names:
                abs_ = names[segs[0]] + segs[1:]
            if abs_ is None:
                continue
            glob = abs_[-1] == "*"
            target, item = resolve(mods, abs_)
            inside = target == name or (name == "" or target.startswith(name + "::"))
            used_here = re.search(r"(?<![\w:])" + re.escape(alias or segs[-1]) + r"\b", m.blanked) if segs[-1] != "*" else None
            if reexp and inside and not used_here:
                continue  # a facade re-exporting its own children
            if target == name:
                continue
            if item is None and not glob and (target == "" or name.startswith(target + "::")):
                continue  # a path through an ancestor module, not a use of it
            if target == "":
                root_items.append((m.path, ln, "*" if glob else item))
                if crate in BASE_ROOT:
                    continue
            edges.setdefault(name, {}).setdefault(target, []).append((m.path, ln))
            if glob:
                for segs2, _, reexp2, _ in mods[target].uses:
                    a2 = absolute_simple(target, segs2) if reexp2 and segs2[0] in ("crate", "self", "super") else None
                    if a2 is None and reexp2 and (target + "::" if target else "") + segs2[0] in mods:
                        a2 = ((target + "::" if target else "") + segs2[0]).split("::") + segs2[1:]
                    if a2:
                        t2 = resolve(mods, a2[:-1] if a2[-1] == "*" else a2)[0]
                        if t2 != name:
                            edges[name].setdefault(t2, []).append((m.path, ln))
    return mods, edges, root_items


def absolute_simple(mod, segs):
    base = mod.split("::") if mod else []
    if segs[0] == "crate":
        return segs[1:]
    cur, k = list(base), 0
    while k < len(segs) and segs[k] in ("self", "super"):
        if segs[k] == "super":
            if not cur:
                return None
            cur.pop()
        k += 1
    return cur + segs[k:]


def sccs(nodes, edges):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(comp)

    for v in nodes:
        if v not in index:
            visit(v)
    return [c for c in out if len(c) > 1]


def main():
    crates_dir = os.path.join(ROOT, "crates")
    dot = sys.argv[2] if len(sys.argv) > 2 and sys.argv[1] == "--dot" else None
    broken = False
    for crate in sorted(os.listdir(crates_dir)):
        cdir = os.path.join(crates_dir, crate)
        if not os.path.isdir(os.path.join(cdir, "src")):
            continue
        mods, edges, root_items = graph(cdir)
        if dot == crate:
            print("digraph %s {" % crate.replace("-", "_"))
            for a in sorted(edges):
                for b in sorted(edges[a]):
                    print('  "%s" -> "%s";' % (a or "lib", b or "lib"))
            print("}")
        for comp in sccs(sorted(mods), edges):
            broken = True
            members = set(comp)
            print("%s: import circle between modules %s:" % (crate, ", ".join(sorted(m or "lib" for m in comp))))
            for a in sorted(members):
                for b, where in sorted(edges.get(a, {}).items()):
                    if b in members:
                        path, ln = where[0]
                        more = " (+%d more)" % (len(where) - 1) if len(where) > 1 else ""
                        print("  %s -> %s  at %s:%d%s" % (a or "lib", b or "lib", path, ln, more))
        if crate == "lethe-server":
            root = mods[""]
            own = sorted(d for d in root.defs if d not in {n.split("::")[0] for n in mods if n})
            if own or re.search(r"(?m)^\s*impl\b", root.text):
                broken = True
                print("%s: %s defines %s; lib.rs declares modules and re-exports only" % (crate, root.path, ", ".join(own) or "an impl block"))
            for path, ln, item in root_items:
                broken = True
                what = "imports lib.rs with a glob" if item == "*" else "names `%s`, defined in lib.rs" % item
                print("%s: %s:%d %s; import it from the module that defines it" % (crate, path, ln, what))
    if dot:
        return 1 if broken else 0
    if broken:
        print("module-graph: fix the imports above (a shared item moves down to a module both sides can import)")
        return 1
    print("module-graph: no import circle in any crate; lethe-server's lib.rs is declarations and re-exports only")
    return 0


if __name__ == "__main__":
    sys.exit(main())
