#!/usr/bin/env python3
"""Counts what a test run ran, skipped (and why) and failed, and holds its skips to
tests/skips.txt.

  test_report.py meson BUILD_DIR   cmocka's lines in BUILD_DIR/meson-logs/testlog.json
  test_report.py tap LABEL FILE    node --test's TAP output in FILE, for the build LABEL

Prints one summary for the build. Exits 1 when a test failed, or, with CI=true, when a test
skipped that tests/skips.txt does not list for this build, or lists under a condition that
does not hold here (its check fails). Exits 0 otherwise; skips outside CI are printed only.
"""
import fnmatch
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIPS = os.path.join(ROOT, "tests", "skips.txt")


def load_skips():
    rules = []
    with open(SKIPS, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = [p.strip() for p in line.split(" | ", 3)]
            if len(parts) != 4 or not all(parts):
                sys.exit(f"{SKIPS}:{n}: want 'test | builds | condition | check'")
            rules.append({"test": parts[0], "builds": parts[1], "why": parts[2],
                          "check": parts[3]})
    return rules


def meson_results(build_dir):
    """Yields (binary, test, outcome, hint) from meson's log; outcome is ok, skip or fail."""
    log = os.path.join(build_dir, "meson-logs", "testlog.json")
    with open(log, encoding="utf-8") as f:
        for line in f:
            t = json.loads(line)
            binary = t["name"].split(":", 1)[-1]
            run, ok, skipped, hints = [], set(), set(), {}
            current = None
            for l in (t.get("stdout") or "").splitlines():
                m = re.match(r"\[ *(RUN|OK|SKIPPED|FAILED|ERROR) *\] (\S+)$", l)
                if m:
                    kind, name = m.group(1), m.group(2)
                    if kind == "RUN":
                        run.append(name)
                        current = name
                    elif kind == "OK":
                        ok.add(name)
                    elif kind == "SKIPPED":
                        skipped.add(name)
                elif current and "skip" in l.lower() and not l.startswith("["):
                    hints[current] = l.strip().lstrip("# ")
            errs = [l.strip().lstrip("# ") for l in (t.get("stderr") or "").splitlines()
                    if "skip" in l.lower()]
            for name in run:
                if name in skipped:
                    yield binary, name, "skip", hints.get(name) or "; ".join(errs[-2:])
                elif name in ok:
                    yield binary, name, "ok", ""
                else:
                    yield binary, name, "fail", ""
            if not run and t["result"] == "OK":
                # Not a cmocka binary (the fuzz replays): the binary is the test.
                yield binary, binary, "ok", ""
            elif t["result"] == "SKIP":
                yield binary, binary, "skip", "meson: the test binary exited 77"
            elif t["result"] not in ("OK", "EXPECTEDFAIL") and len(ok) + len(skipped) == len(run):
                # Died after its last test, or before its first: the binary failed as a whole.
                yield binary, binary, "fail", t["result"]


def tap_results(path):
    """Yields (file, test, outcome, reason) for the leaf tests of node --test's TAP output."""
    points = []  # (indent, ok, name, directive, reason)
    with open(path, encoding="utf-8", errors="replace") as f:
        for l in f:
            m = re.match(r"^( *)(not ok|ok) \d+ - (.*?)(?: # (SKIP|TODO)\b ?(.*))?$", l.rstrip("\n"))
            if m:
                points.append((len(m.group(1)), m.group(2) == "ok", m.group(3),
                               m.group(4), m.group(5) or ""))
    for i, (indent, ok, name, directive, reason) in enumerate(points):
        # A parent's point follows its children's, one level less indented.
        if i > 0 and points[i - 1][0] > indent:
            if not ok and not any(not p[1] for p in points[:i] if p[0] > indent):
                yield "e2e", name, "fail", ""  # failed in a hook, not in a subtest
            continue
        if directive == "SKIP":
            yield "e2e", name, "skip", reason
        elif directive == "TODO":
            yield "e2e", name, "skip", "TODO " + reason
        else:
            yield "e2e", name, "ok" if ok else "fail", ""


def condition_holds(rule, cache):
    if rule["check"] not in cache:
        r = subprocess.run(["bash", "-c", rule["check"]], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cache[rule["check"]] = r.returncode == 0
    return cache[rule["check"]]


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "meson":
        build = os.path.basename(os.path.normpath(sys.argv[2]))
        results = list(meson_results(sys.argv[2]))
    elif len(sys.argv) == 4 and sys.argv[1] == "tap":
        build = sys.argv[2]
        results = list(tap_results(sys.argv[3]))
    else:
        sys.exit(__doc__)
    ci = os.environ.get("CI", "") == "true"
    rules = load_skips()
    cache = {}
    ran = [r for r in results if r[2] == "ok"]
    failed = [r for r in results if r[2] == "fail"]
    skipped = [r for r in results if r[2] == "skip"]
    bad = []
    lines = []
    for binary, name, _, hint in skipped:
        rule = next((r for r in rules if fnmatch.fnmatchcase(name, r["test"])
                     and fnmatch.fnmatchcase(build, r["builds"])), None)
        if rule is None:
            why = f"not in tests/skips.txt for {build}" + (f" (the test said: {hint})" if hint else "")
            bad.append(name)
        elif not condition_holds(rule, cache):
            why = f"listed for '{rule['why']}', which does not hold here (check: {rule['check']})"
            bad.append(name)
        else:
            why = rule["why"]
        lines.append(f"    skipped {binary}: {name}: {why}")
    print(f"== {build}: {len(ran)} ran and passed, {len(skipped)} skipped, {len(failed)} failed")
    for l in lines:
        print(l)
    for binary, name, _, hint in failed:
        print(f"    FAILED {binary}: {name}" + (f" ({hint})" if hint else ""))
    if failed:
        return 1
    if bad and ci:
        print(f"== {build}: a skip is not a pass in CI: {len(bad)} skip(s) above are not "
              "allowed by tests/skips.txt")
        return 1
    if bad:
        print(f"== {build}: {len(bad)} skip(s) would fail in CI (CI=true)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
