"""Analysts' load on the sink's SQL endpoint: heavy queries looping on several threads.

Run it beside ``python -m sinks.bench`` to see what concurrent analyst queries cost the
sink (its drain rate with and without them)::

    XBORDER_SQL_HTTP__PORT=18777 python -m xborder.bench.analyst_load --seconds 100 &
    XBORDER_SQL_HTTP__PORT=18777 python -m sinks.bench --events 150000

Each thread loops one query (CPU-bound scans of ``numbers()``, a GROUP BY and a self-join
of ``incidents``) while the endpoint answers, waits while it does not (the bench's sink
starts and stops), and the run ends with the count of answers and their median latency.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import urllib.error
import urllib.request

from xborder.settings import load_settings

QUERIES = (
    "SELECT count() FROM numbers(20000000) WHERE sipHash64(number) % 7 = 1",
    "SELECT agency, category, uniqExact(incident_id), quantiles(0.5, 0.9)(lat)"
    " FROM incidents GROUP BY agency, category",
    "SELECT a.agency, count() FROM incidents AS a"
    " INNER JOIN incidents AS b ON a.incident_id = b.incident_id GROUP BY a.agency",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=100.0)
    args = parser.parse_args(argv)
    http = load_settings().sql_http
    url = f"http://{http.host}:{http.port}/"
    latencies: list[float] = []
    errors: list[str] = []
    end = time.monotonic() + args.seconds

    def loop(sql: str) -> None:
        while time.monotonic() < end:
            started = time.monotonic()
            try:
                with urllib.request.urlopen(url, data=sql.encode(), timeout=120) as answer:
                    answer.read()
                latencies.append(time.monotonic() - started)
            except urllib.error.HTTPError as exc:
                errors.append(exc.read().decode("utf-8", "replace").strip())
                time.sleep(0.5)
            except OSError:  # nothing listens (yet): the sink is starting or stopped
                time.sleep(0.2)

    threads = [
        threading.Thread(target=loop, args=(QUERIES[i % len(QUERIES)],))
        for i in range(args.threads)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    median = statistics.median(latencies) if latencies else float("nan")
    print(f"{len(latencies)} answers, {len(errors)} errors, median {median:.3f} s")
    for error in sorted(set(errors))[:5]:
        print(f"  {error}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
