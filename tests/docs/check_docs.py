#!/usr/bin/env python3
"""The manual pages and the installation, checked as a user and a packager meet them.

  check_docs.py render PAGE...        each page renders with man -l without a warning (groff -ww), has the
                                      sections its kind of page needs, and every sockserv page
                                      it refers to exists
  check_docs.py options MANDIR        sockserv --help and sockserv(1), each COMMAND's --help (and
                                      its verbs') and sockserv-COMMAND(1) name the same options,
                                      the same commands and the same verbs
  check_docs.py install PREFIX BINDIR FILE...
                                      meson install --destdir TMP installs FILE... (relative to
                                      PREFIX unless absolute) and nothing else; the unit starts
                                      BINDIR/sockserv
  check_docs.py layout                a build configured with --prefix=/usr installs where Debian
                                      puts things
  check_docs.py links ROOT            every relative link of ROOT/README.md and ROOT/docs/*.md
                                      resolves: the file exists, and a #anchor names a heading of
                                      it (GitHub's anchors); the README's first code block is the
                                      two commands scripts/run.sh and scripts/test.sh, and .ci/run
                                      runs scripts/test.sh
  check_docs.py links-selftest        links finds what it should in a scratch tree of broken
                                      links, and nothing in a sound one

Environment: SOCKSERV_BIN (the binary), SOCKSERV_SOURCE_ROOT, SOCKSERV_BUILD_ROOT.
Exits 0 when everything holds, 1 with every difference printed otherwise.
"""
import filecmp
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z0-9][A-Za-z0-9-]*)")
SECTIONS = {
    "1": ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "EXAMPLES", "SEE ALSO"],
    "5": ["NAME", "DESCRIPTION", "FILES", "SEE ALSO"],
    "7": ["NAME", "DESCRIPTION", "SEE ALSO"],
}


def man(page, width=80, warnings=False):
    """Renders PAGE as man -l shows it; returns (text, stderr, exit status)."""
    env = dict(os.environ, MANWIDTH=str(width), LC_ALL="C.UTF-8", MANPAGER="cat", PAGER="cat")
    args = ["man"] + (["--warnings=w"] if warnings else []) + ["-l", page]
    r = subprocess.run(args, env=env, capture_output=True, text=True)
    return r.stdout, r.stderr, r.returncode


def sections(text):
    """The rendered page's sections: {HEADING: [lines]}."""
    out, current = {}, None
    for line in text.splitlines():
        if re.match(r"^[A-Z][A-Z ]+$", line):
            current = line.strip()
            out[current] = []
        elif current:
            out[current].append(line)
    return out


def run_bin(*args):
    r = subprocess.run([os.environ["SOCKSERV_BIN"], *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"sockserv {' '.join(args)} exited {r.returncode}: {r.stderr}")
    return r.stdout


def help_block(text, title):
    """The lines of the block 'TITLE:' of a --help text, up to the first empty line."""
    lines = text.splitlines()
    try:
        start = lines.index(title + ":") + 1
    except ValueError:
        return []
    block = []
    for line in lines[start:]:
        if not line.strip():
            break
        block.append(line)
    return block


def help_options(text):
    found = set()
    for line in help_block(text, "Options"):
        if line.lstrip().startswith("-"):
            found.update(OPTION.findall(line.strip().split("  ")[0]))
    return found


def help_words(text, title):
    """The first words of the entries of a block (Commands:, Verbs:)."""
    return {l.split()[0] for l in help_block(text, title) if re.match(r"^  \S", l)}


def page_options(text):
    """The options a rendered page defines in OPTIONS: its terms that start with a dash."""
    found = set()
    for line in sections(text).get("OPTIONS", []):
        if re.match(r"^ {7}-", line):
            found.update(OPTION.findall(line))
    return found


def page_terms(text, section):
    """The words of the terms defined in SECTION (lines indented 7, '*ctl*' or 'start ID,
    stop ID'): each comma-separated item's first word."""
    found = set()
    for line in sections(text).get(section, []):
        if re.match(r"^ {7}\S", line):
            for item in line.strip().split(", "):
                found.add(item.split()[0])
    return found


def compare(what, in_help, in_page, problems):
    for o in sorted(in_help - in_page):
        problems.append(f"{what}: {o} is in --help but not in the manual")
    for o in sorted(in_page - in_help):
        problems.append(f"{what}: {o} is in the manual but not in --help")


def cmd_render(pages):
    problems = []
    names = {os.path.basename(p) for p in pages}
    for page in pages:
        base = os.path.basename(page)
        section = base.rsplit(".", 1)[1]
        text, err, rc = man(page, warnings=True)
        if rc != 0 or err.strip():
            problems.append(f"{base}: man --warnings -l exited {rc}: {err.strip()}")
        title = base.rsplit(".", 1)[0].upper()
        if not text.startswith(f"{title}({section})") and not text.lstrip().lower().startswith(
                f"{title.lower()}({section})"):
            problems.append(f"{base}: the header is not {title}({section}): {text[:60]!r}")
        have = sections(text)
        for s in SECTIONS[section]:
            if not have.get(s) or not "".join(have[s]).strip():
                problems.append(f"{base}: no section {s}")
        for leftover in re.findall(r"\*\S+\*|(?<!\w)_[A-Za-z]+_(?!\w)", text):
            problems.append(f"{base}: scdoc markup left in the page: {leftover}")
        for ref, sec in re.findall(r"(sockserv(?:-[a-z]+)?)\((\d)\)", text):
            if f"{ref}.{sec}" not in names:
                problems.append(f"{base}: refers to {ref}({sec}), which is not a page")
    return problems


def cmd_options(mandir):
    problems = []

    def page(name):
        path = os.path.join(mandir, name)
        if not os.path.exists(path):
            problems.append(f"{name}: no such page")
            return ""
        return man(path, width=200)[0]

    top = run_bin("--help")
    main_page = page("sockserv.1")
    compare("sockserv", help_options(top), page_options(main_page), problems)
    commands = help_words(top, "Commands")
    if not commands:
        problems.append("sockserv --help lists no commands")
    compare("sockserv COMMANDS", commands, page_terms(main_page, "COMMANDS"), problems)
    for cmd in sorted(commands):
        text = run_bin(cmd, "--help")
        in_help = help_options(text)
        verbs = help_words(text, "Verbs")
        for verb in sorted(verbs):
            in_help |= help_options(run_bin(cmd, verb, "--help"))
        cmd_page = page(f"sockserv-{cmd}.1")
        compare(f"sockserv {cmd}", in_help, page_options(cmd_page), problems)
        if verbs:
            compare(f"sockserv {cmd} VERBS", verbs, page_terms(cmd_page, "VERBS"), problems)
    return problems


def cmd_install(prefix, bindir, expected):
    build = os.environ["SOCKSERV_BUILD_ROOT"]
    problems = []
    with tempfile.TemporaryDirectory(prefix="sockserv-install-") as root:
        r = subprocess.run(["meson", "install", "-C", build, "--no-rebuild", "--quiet",
                            "--destdir", root], capture_output=True, text=True)
        if r.returncode != 0:
            return [f"meson install --destdir exited {r.returncode}: {r.stdout}{r.stderr}"]
        want = {os.path.normpath(os.path.join(prefix, p)) for p in expected}
        have = set()
        for d, _, files in os.walk(root):
            for f in files:
                have.add("/" + os.path.relpath(os.path.join(d, f), root))
        for p in sorted(want - have):
            problems.append(f"not installed: {p}")
        for p in sorted(have - want):
            problems.append(f"installed but not expected: {p}")
        if problems:
            return problems

        def at(p):
            return root + p

        binary = os.path.join(bindir, "sockserv")
        if not os.access(at(binary), os.X_OK):
            problems.append(f"{binary} is not executable")
        unit = next(p for p in want if p.endswith("/sockserv.service"))
        with open(at(unit), encoding="utf-8") as f:
            unit_text = f.read()
        starts = re.findall(r"^ExecStart=(\S*)", unit_text, re.M)
        if starts != [binary]:
            problems.append(f"{unit}: ExecStart= runs {starts}, not [{binary!r}]")
        for path in re.findall(r"/\S*/bin/sockserv\b", unit_text):
            if path != binary:
                problems.append(f"{unit}: names {path}, not the installed {binary}")
        completion = next(p for p in want if p.endswith("/completions/sockserv")
                          or p.endswith("/sockserv") and "completion" in p)
        source = os.path.join(os.environ["SOCKSERV_SOURCE_ROOT"], "scripts/completion/sockserv.bash")
        if not filecmp.cmp(at(completion), source, shallow=False):
            problems.append(f"{completion} is not scripts/completion/sockserv.bash")
        for p in sorted(want):
            m = re.search(r"/man([1-8])/[^/]+\.([1-8])$", p)
            if m:
                if m.group(1) != m.group(2):
                    problems.append(f"{p}: a section {m.group(2)} page in man{m.group(1)}")
                text, err, rc = man(at(p))
                if rc != 0 or "NAME" not in text:
                    problems.append(f"{p}: does not render: {err.strip()}")
    return problems


def cmd_layout():
    """Configures the source tree with --prefix=/usr in a scratch directory (nothing built) and
    reads where meson would install each file."""
    source = os.environ["SOCKSERV_SOURCE_ROOT"]
    problems = []
    with tempfile.TemporaryDirectory(prefix="sockserv-layout-") as build:
        r = subprocess.run(["meson", "setup", build, source, "--prefix=/usr", "-Dtests=false",
                            "-Dman=enabled"], capture_output=True, text=True)
        if r.returncode != 0:
            return [f"meson setup --prefix=/usr failed: {r.stdout}{r.stderr}"]
        r = subprocess.run(["meson", "introspect", build, "--installed"], capture_output=True,
                           text=True, check=True)
        installed = set(json.loads(r.stdout).values())
        with open(os.path.join(build, "sockserv.service"), encoding="utf-8") as f:
            unit_text = f.read()
    want = {"/usr/bin/sockserv", "/usr/share/bash-completion/completions/sockserv",
            "/usr/share/man/man1/sockserv.1", "/usr/share/man/man1/sockserv-daemon.1",
            "/usr/share/man/man5/sockserv-state.5", "/usr/share/man/man7/sockserv-protocols.7"}
    for p in sorted(want - installed):
        problems.append(f"--prefix=/usr: {p} is not installed (installed: {sorted(installed)})")
    units = [p for p in installed if p.endswith("/sockserv.service")]
    if units not in (["/usr/lib/systemd/system/sockserv.service"],
                     ["/lib/systemd/system/sockserv.service"]):
        problems.append(f"--prefix=/usr: the unit goes to {units}")
    if re.findall(r"^ExecStart=(\S*)", unit_text, re.M) != ["/usr/bin/sockserv"]:
        problems.append("--prefix=/usr: the unit's ExecStart= is not /usr/bin/sockserv")
    return problems


FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"", re.I)


def markdown_text(path):
    """The file's lines outside fenced code blocks (those inside become empty lines, so line
    numbers hold), and its first fenced block's lines."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    out, first, fence, block = [], None, None, []
    for line in lines:
        m = FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)
            block = []
            out.append("")
        elif fence is not None:
            if line.strip().startswith(fence[0] * len(fence)) and not line.strip().strip(fence[0]):
                fence = None
                if first is None:
                    first = block
            else:
                block.append(line)
            out.append("")
        else:
            out.append(line)
    return out, first


def slug(heading):
    """GitHub's anchor of a heading: its text (links, code and emphasis marks dropped)
    lower-cased, punctuation dropped, spaces made hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[`*]", "", text).strip().lower()
    text = "".join(c for c in text if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


def anchors(path, cache):
    if path not in cache:
        lines, _ = markdown_text(path)
        seen, found = {}, set()
        for line in lines:
            m = HEADING.match(line)
            if m:
                base = slug(m.group(2))
                n = seen.get(base, 0)
                seen[base] = n + 1
                found.add(base if n == 0 else f"{base}-{n}")
            found.update(HTML_ANCHOR.findall(line))
        cache[path] = found
    return cache[path]


def check_links(root):
    problems, cache = [], {}
    docs = os.path.join(root, "docs")
    files = [os.path.join(root, "README.md")]
    if os.path.isdir(docs):
        files += sorted(os.path.join(docs, f) for f in os.listdir(docs) if f.endswith(".md"))
    for path in files:
        name = os.path.relpath(path, root)
        lines, _ = markdown_text(path)
        # Code spans may wrap across lines: drop them from the whole text, keeping newlines.
        text = re.sub(r"(`+)(?:(?!\1).)*?\1",
                      lambda m: "\n" * m.group(0).count("\n"), "\n".join(lines), flags=re.S)
        for number, line in enumerate(text.split("\n"), 1):
            for target in LINK.findall(line):
                if not target or re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
                    continue
                file_part, _, anchor = target.partition("#")
                dest = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) \
                    if file_part else path
                where = f"{name}:{number}: {target}"
                if os.path.relpath(dest, root).startswith(".."):
                    problems.append(f"{where}: points outside the source tree")
                elif not os.path.exists(dest):
                    problems.append(f"{where}: no such file")
                elif anchor:
                    if not dest.endswith(".md"):
                        problems.append(f"{where}: an anchor into a file that is not markdown")
                    elif anchor not in anchors(dest, cache):
                        problems.append(f"{where}: no heading of "
                                        f"{os.path.relpath(dest, root)} has the anchor #{anchor}")
    return problems


def check_front_door(root):
    """The README opens with the two commands, and CI runs the second."""
    problems = []
    lines, first = markdown_text(os.path.join(root, "README.md"))
    prose = [l for l in lines if l.strip()]
    if not prose or not prose[0].startswith("# "):
        problems.append("README.md: does not start with its title")
    words = [l.split()[0] for l in (first or []) if l.strip()]
    if words != ["scripts/run.sh", "scripts/test.sh"]:
        problems.append(f"README.md: the first code block runs {words}, "
                        "not ['scripts/run.sh', 'scripts/test.sh']")
    with open(os.path.join(root, "README.md"), encoding="utf-8") as f:
        head = f.read().split("\n")
    body = [l for l in head[1:] if l.strip()]
    if not body or not FENCE.match(body[0]):
        problems.append("README.md: the first thing after the title is not the code block")
    try:
        with open(os.path.join(root, ".ci/run"), encoding="utf-8") as f:
            ci = [l.strip() for l in f if l.strip() and not l.lstrip().startswith("#")]
    except OSError as e:
        return problems + [f".ci/run: {e.strerror}"]
    if not any(re.match(r"^exec\s+(\./)?scripts/test\.sh(\s|$)", l) for l in ci):
        problems.append(".ci/run: does not exec scripts/test.sh")
    return problems


def cmd_links(root):
    return check_front_door(root) + check_links(root)


def cmd_links_selftest():
    """Runs the link check on scratch trees: a sound one must pass, a broken one must be
    refused for each fault, and nothing else."""
    problems = []
    with tempfile.TemporaryDirectory(prefix="sockserv-links-") as root:
        os.makedirs(os.path.join(root, "docs"))
        os.makedirs(os.path.join(root, "doc"))
        os.makedirs(os.path.join(root, ".ci"))

        def write(rel, text):
            with open(os.path.join(root, rel), "w", encoding="utf-8") as f:
                f.write(text)

        write(".ci/run", "#!/bin/sh\n# CI\nexec scripts/test.sh\n")
        write("doc/x.1.scd", "x(1)\n")
        write("docs/api.md", "# REST API (v1)\n\n## Limits and guards\n\n## Errors\n\n"
              "## Errors\n\n### `sockserv ctl` — the client\n\n[up](../README.md#a-tour)\n")
        sound = ("# t\n\n```sh\nscripts/run.sh    # run\nscripts/test.sh   # test\n```\n\n"
                 "## A tour\n\n[api](docs/api.md) [l](docs/api.md#limits-and-guards)\n"
                 "[e](docs/api.md#errors-1) [c](docs/api.md#sockserv-ctl--the-client)\n"
                 "[v](docs/api.md#rest-api-v1) [m](doc/x.1.scd) [w](https://example.org/#x)\n"
                 "[self](#a-tour) `[code](nowhere.md)` and `wrapped\n[code](nowhere.md)`\n\n"
                 "```\n[in a block](nowhere.md)\n```\n")
        write("README.md", sound)
        found = cmd_links(root)
        if found:
            problems.append(f"links-selftest: a sound tree was refused: {found}")
        broken = (sound.replace("scripts/test.sh   # test", "make check")
                  + "[gone](docs/gone.md) [anchor](docs/api.md#limits)\n"
                  + "[dup](docs/api.md#errors-2) [scd](doc/x.1.scd#x) [out](../x.md)\n")
        write("README.md", broken)
        write(".ci/run", "#!/bin/sh\n# exec scripts/test.sh\nmake\n")
        found = cmd_links(root)
        want = ["README.md: the first code block runs ['scripts/run.sh', 'make']",
                ".ci/run: does not exec scripts/test.sh",
                "README.md:19: docs/gone.md: no such file",
                "README.md:19: docs/api.md#limits: no heading",
                "README.md:20: docs/api.md#errors-2: no heading",
                "README.md:20: doc/x.1.scd#x: an anchor into a file that is not markdown",
                "README.md:20: ../x.md: points outside the source tree"]
        for w in want:
            if not any(f.startswith(w) for f in found):
                problems.append(f"links-selftest: a broken tree was not refused for: {w}")
        if len(found) != len(want):
            problems.append(f"links-selftest: found {len(found)} problems, not {len(want)}: "
                            f"{found}")
    return problems


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "render":
        problems = cmd_render(sys.argv[2:])
    elif len(sys.argv) == 3 and sys.argv[1] == "options":
        problems = cmd_options(sys.argv[2])
    elif len(sys.argv) >= 5 and sys.argv[1] == "install":
        problems = cmd_install(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif len(sys.argv) == 2 and sys.argv[1] == "layout":
        problems = cmd_layout()
    elif len(sys.argv) == 3 and sys.argv[1] == "links":
        problems = cmd_links(sys.argv[2])
    elif len(sys.argv) == 2 and sys.argv[1] == "links-selftest":
        problems = cmd_links_selftest()
    else:
        sys.exit(__doc__)
    for p in problems:
        print(p)
    print(f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    if sys.argv[1:2] not in (["links"], ["links-selftest"]) and shutil.which("man") is None:
        sys.exit("man is missing (Debian package man-db)")
    sys.exit(main())
