"""Run the plaudit command line and record its peak RSS: `python -m bench.peak OUT ARGS...`.

The peak is the process's own VmHWM, read at exit. A child's ru_maxrss (getrusage, wait4)
would not do: Linux carries the RSS of the forked copy of the parent over the exec, so it
would report the benchmark harness's own size.
"""

from __future__ import annotations

import atexit
import sys
from pathlib import Path


def _record(out: Path) -> None:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            out.write_text(str(int(line.split()[1]) * 1024))


if __name__ == "__main__":
    out = Path(sys.argv[1])
    atexit.register(_record, out)
    sys.argv = ["plaudit", *sys.argv[2:]]
    from plaudit.cli.main import main

    main()
