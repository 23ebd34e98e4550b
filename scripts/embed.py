#!/usr/bin/env python3
"""Writes a C file that embeds web assets: embed.py OUT.c SRCDIR FILE..."""
import hashlib
import os
import sys

TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".yaml": "application/yaml",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}


def url_path(src, path):
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(src))
    top, _, rest = rel.partition(os.sep)
    if top == "web":
        return "/" + rest.replace(os.sep, "/")
    return "/" + os.path.basename(rel)


def main():
    out, src, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
    lines = ['#include "api/assets.h"', ""]
    entries = []
    for i, path in enumerate(paths):
        with open(path, "rb") as f:
            data = f.read()
        ext = os.path.splitext(path)[1]
        ctype = TYPES.get(ext, "application/octet-stream")
        etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
        body = ",".join(str(b) for b in data) or "0"
        lines.append(f"static const unsigned char asset_{i}[] = {{{body}}};")
        entries.append((url_path(src, path), ctype, i, len(data), etag))
    lines.append("")
    lines.append("const struct api_asset api_assets[] = {")
    for url, ctype, i, n, etag in entries:
        etag_c = etag.replace('"', '\\"')
        lines.append(f'    {{"{url}", "{ctype}", asset_{i}, {n}, "{etag_c}"}},')
    lines.append("};")
    lines.append(f"const size_t api_assets_count = {len(entries)};")
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
