"""Marker files and lock checks shared by the inline python of the scenarios.

The two sides of a scenario (guest and host, or two guests) take turns through marker files:
one side creates a file, the other waits until it exists. The scripts import this module with

    sys.path.insert(0, os.path.join(os.environ["E2E_DIR"], "scenarios"))
    from markers import ...

and run python3 with -B, so that no __pycache__ lands in the checkout. E2E_DIR is exported by
guest-run.sh in the guests and given to the host parts by run.sh. run.sh only lists *.sh files
as scenarios, so this file is not mistaken for one.
"""
import errno
import fcntl
import glob
import os
import sys
import time


def mark(d, name, text="1"):
    """Creates the marker D/NAME holding TEXT, atomically: written as D/.NAME, then renamed,
    so that the other side never sees it half written."""
    tmp = os.path.join(d, "." + name)
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, os.path.join(d, name))


def wait(d, name, limit=60, whose=None, failed=None):
    """Waits up to LIMIT seconds for the marker D/NAME and returns its text, stripped.

    On timeout, exits with "timed out waiting for WHOSE marker NAME" ("... for NAME" without
    WHOSE). With FAILED, a glob pattern (the other guest's failure flag, see lib.sh), exits with
    "the other guest failed" as soon as a file matches it.
    """
    path = os.path.join(d, name)
    end = time.time() + limit
    while not os.path.exists(path):
        if time.time() > end:
            sys.exit(f"timed out waiting for {whose + ' marker ' if whose else ''}{name}")
        if failed and glob.glob(failed):
            sys.exit("the other guest failed")
        time.sleep(0.1)
    with open(path) as f:
        return f.read().strip()


def lock_refused(f):
    """Tries a non-blocking exclusive POSIX lock on F: true when it is refused (EAGAIN or
    EACCES), false when it is granted (the caller still holds it then). Any other error is an
    assertion failure."""
    try:
        fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        assert e.errno in (errno.EAGAIN, errno.EACCES), e
        return True
    return False
