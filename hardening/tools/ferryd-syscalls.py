#!/usr/bin/env python3
"""Lists the system calls ferryd made in an `strace -f` log.

Regenerating the seccomp allow-list (see hardening/src/seccomp.rs):

    strace -f -qq -o /tmp/ferry.strace cargo test -p ferry-daemon \
        --test link_loopback --test ingest --test policy_daemon \
        --test audit_daemon --test crash --test hardening
    python3 hardening/tools/ferryd-syscalls.py /tmp/ferry.strace

Only the threads of processes that exec'd a binary named `ferryd` are
counted (the test harness, cargo and ferryctl are not), from their first
line on: the pre-hardening start-up is included, which only adds margin.
Prints `name count` lines, most frequent first, then the calls that are
not yet in the profile, if `--profile hardening/src/seccomp.rs` is given.
"""
import re
import sys
from collections import Counter

LINE = re.compile(r"^(\d+)\s+(?:<\.\.\. )?([a-z0-9_]+)[( ]")
EXEC = re.compile(r'^(\d+)\s+execve\("([^"]*)"')
CLONE = re.compile(r"^(\d+)\s+(?:<\.\.\. )?(clone3?|fork|vfork)\b.*= (\d+)")


def main():
    path = sys.argv[1]
    profile = None
    if "--profile" in sys.argv:
        profile = sys.argv[sys.argv.index("--profile") + 1]
    ferryd = set()
    counts = Counter()
    with open(path, errors="replace") as f:
        for line in f:
            m = EXEC.match(line)
            if m:
                pid = m.group(1)
                if m.group(2).endswith("/ferryd"):
                    ferryd.add(pid)
                else:
                    ferryd.discard(pid)
                continue
            m = CLONE.match(line)
            if m and m.group(1) in ferryd:
                ferryd.add(m.group(3))
            m = LINE.match(line)
            if m and m.group(1) in ferryd:
                name = m.group(2)
                if name in ("exited", "killed", "resumed"):
                    continue
                counts[name] += 1
    for name, n in counts.most_common():
        print(f"{name} {n}")
    if profile:
        text = open(profile).read()
        listed = set(re.findall(r'name: "([a-z0-9_]+)"', text))
        for block in re.findall(r"any!\[(.*?)\]", text, re.S):
            block = re.sub(r"//[^\n]*", "", block)
            listed.update(re.findall(r"[a-z0-9_]+", block))
        missing = sorted(set(counts) - listed)
        print("# not in the profile:", " ".join(missing) or "(none)")


if __name__ == "__main__":
    main()
