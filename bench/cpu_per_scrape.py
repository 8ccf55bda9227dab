"""CPU per scrape of one pgvigil process, read from /proc, for comparing two versions.

    .venv/bin/python bench/cpu_per_scrape.py DBNAME GAP_SECONDS [PYTHONPATH of another pgvigil]

Starts `pgvigil serve` on DBNAME of the machine's server (127.0.0.1:5432, user postgres), 3
warm-up scrapes, then 30 scrapes GAP_SECONDS apart; prints CPU ms per scrape, and the idle CPU
of as long again without scrapes. With a third argument (e.g. `git archive main exporter`
unpacked somewhere, its exporter/ directory) that code runs instead of the working tree:
alternate both to compare them under the same load.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from pgvigil.demo.ports import free_port

SCRAPES = 30


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    dbname, gap = sys.argv[1], float(sys.argv[2])
    port = free_port()
    env = {**os.environ, "DATA_SOURCE_NAME": f"host=127.0.0.1 user=postgres dbname={dbname}"}
    if len(sys.argv) > 3:
        env["PYTHONPATH"] = sys.argv[3]
    cmd = [sys.executable, "-m", "pgvigil", "--log.level=error", "serve"]
    proc = subprocess.Popen([*cmd, f"--web.listen-address=127.0.0.1:{port}"], env=env)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read()
                break
            except OSError:
                time.sleep(0.1)
        url = f"http://127.0.0.1:{port}/metrics"
        for _ in range(3):
            urllib.request.urlopen(url).read()
        start = cpu_seconds(proc.pid)
        for _ in range(SCRAPES):
            urllib.request.urlopen(url).read()
            time.sleep(gap)
        scraped = cpu_seconds(proc.pid)
        time.sleep(gap * SCRAPES)
        idle = cpu_seconds(proc.pid)
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        print(
            f"gap {gap}: cpu/scrape {(scraped - start) / SCRAPES * 1000:.1f} ms; idle alone "
            f"{(idle - scraped) / SCRAPES * 1000:.1f} ms per scrape-equivalent; load {load}"
        )
    finally:
        proc.terminate()
        proc.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
