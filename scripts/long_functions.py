#!/usr/bin/env python3
"""List the functions in C/C++ sources that are longer than a limit.

Usage: scripts/long_functions.py [--max N] [PATH ...]   (default: --max 120 src)

A function is the outermost brace block whose head (the text between the
previous ';', '{' or '}' and the '{') has a parameter list and is not a
control statement, a class, a namespace or an initialiser. Lambdas and
local classes count towards the function that holds them. Test bodies
(TEST(...) { ... }) count as functions. Comments, string and character
literals and preprocessor lines are blanked first, so braces in them do not
count. Brace matching is enough for this code base; it is not a C++ parser.

Prints "LINES path:line name" for each function over the limit, longest
first, and exits 1 if there is any (0 otherwise).
"""
import argparse
import os
import re
import sys

CONTROL = re.compile(r"^(if|for|while|switch|catch|do|else|try)\b")
NOT_FUNCTION = re.compile(r"\b(class|struct|union|enum|namespace)\b|=\s*$|^extern\s+\"C\"")


def blank(text):
    """Comments, literals and preprocessor lines become spaces; newlines stay."""
    out = []
    i, n = 0, len(text)
    at_line_start = True
    while i < n:
        c = text[i]
        if at_line_start and c == "#":
            # a preprocessor line, with its continuations
            while i < n and text[i] != "\n":
                if text[i] == "\\" and i + 1 < n and text[i + 1] == "\n":
                    out.append(" \n")
                    i += 2
                    continue
                out.append(" ")
                i += 1
            continue
        if c == "\n":
            at_line_start = True
            out.append(c)
            i += 1
            continue
        if not c.isspace():
            at_line_start = False
        if text.startswith("//", i):
            while i < n and text[i] != "\n":
                out.append(" ")
                i += 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append("".join(ch if ch == "\n" else " " for ch in text[i:end]))
            i = end
        elif c == 'R' and text.startswith('R"', i):
            m = re.match(r'R"([^(\s]*)\(', text[i:])
            if not m:
                out.append(c)
                i += 1
                continue
            close = ")" + m.group(1) + '"'
            end = text.find(close, i + len(m.group(0)))
            end = n if end < 0 else end + len(close)
            out.append("".join(ch if ch == "\n" else " " for ch in text[i:end]))
            i = end
        elif c in "\"'":
            # a digit separator (1'000) is not a character literal
            if c == "'" and i > 0 and text[i - 1].isalnum() and i + 1 < n and text[i + 1].isalnum():
                out.append(" ")
                i += 1
                continue
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(" " * (j - i))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def functions(text):
    """Yield (first line, last line, name) of each outermost function body."""
    code = blank(text)
    depth_kinds = []  # for each open brace: True if it is (inside) a function
    head_start = 0
    current = None  # (start line, name, depth) of the function being read
    line = 1
    for i, c in enumerate(code):
        if c == "\n":
            line += 1
        elif c == ";":
            head_start = i + 1
        elif c == "{":
            inside = bool(depth_kinds) and depth_kinds[-1]
            head = " ".join(code[head_start:i].split())
            is_function = False
            if not inside and "(" in head and not CONTROL.match(head) and not NOT_FUNCTION.search(head):
                is_function = True
                name = head.split("(")[0].split()[-1] if head.split("(")[0].split() else head[:40]
                current = (line, name, len(depth_kinds))
            depth_kinds.append(inside or is_function)
            head_start = i + 1
        elif c == "}":
            if depth_kinds:
                depth_kinds.pop()
            if current and len(depth_kinds) == current[2]:
                yield current[0], line, current[1]
                current = None
            head_start = i + 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max", type=int, default=120)
    parser.add_argument("paths", nargs="*", default=["src"])
    args = parser.parse_args()
    found = []
    for root in args.paths:
        files = [root] if os.path.isfile(root) else [
            os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs
            if f.endswith((".c", ".cc", ".cpp", ".h", ".hpp", ".inc"))]
        for path in sorted(files):
            with open(path, encoding="utf-8", errors="replace") as fh:
                for first, last, name in functions(fh.read()):
                    if last - first + 1 > args.max:
                        found.append((last - first + 1, f"{path}:{first}", name))
    for lines, where, name in sorted(found, reverse=True):
        print(f"{lines} {where} {name}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
