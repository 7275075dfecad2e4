"""Tokens per second of both tokenisation modes: ``python -m xborder.pseudonym.oprf_bench``.

- HMAC: :class:`~xborder.pseudonym.SharedKeyTokenizer` in this process, one thread.
- OPRF per agency client: :class:`~xborder.pseudonym.oprf.OprfTokenizer` against a real
  service (a subprocess on a free loopback port), distinct identifiers, batched requests:
  blinding, the round trip and finalising, end to end.
- OPRF per service core: clients in threads send pre-blinded batches as fast as the
  service answers; evaluations divided by the service process's CPU seconds (user +
  system, from /proc), so the figure holds on a machine shared with other work. The
  HMAC and client phases also report tokens per CPU second of this process.

Runs about 20 s with the defaults; ``--seconds`` sets each phase's length.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

from xborder.pseudonym.oprf import OprfTokenizer, blind, new_api_token
from xborder.pseudonym.oprf_service import add_agency
from xborder.pseudonym.tokens import KeyRing, SharedKeyTokenizer, token_input

BATCH = 1000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def running_service(home: Path) -> Iterator[tuple[str, str, int]]:
    """(url, API token, pid) of a tokenisation service with a fresh key and no real limit."""
    key_file = home / "keys.json"
    key_file.write_text(KeyRing.generate(1, prefix="bench-").to_json())
    key_file.chmod(0o600)
    api_token = new_api_token()
    add_agency(home / "agencies.json", "bench", api_token)
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.upper().startswith("XBORDER_")},
        "XBORDER_DATA_DIR": str(home / "data"),
        "XBORDER_TOKENIZER__PORT": str(port),
        "XBORDER_TOKENIZER__SERVICE_KEY_FILE": str(key_file),
        "XBORDER_TOKENIZER__AGENCIES_FILE": str(home / "agencies.json"),
        "XBORDER_TOKENIZER__RATE_PER_S": "1e9",
        "XBORDER_TOKENIZER__BURST": str(10**12),
        "XBORDER_TOKENIZER__BATCH_SIZE": str(BATCH),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "xborder", "tokenizer", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        if "listening" not in process.stdout.readline():
            raise SystemExit("the tokenisation service did not start")
        yield f"http://127.0.0.1:{port}", api_token, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)


def bench_hmac(seconds: float) -> tuple[float, float]:
    """(tokens per wall second, tokens per CPU second)."""
    tokenizer = SharedKeyTokenizer(KeyRing.generate())
    count, started, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - started < seconds:
        for n in range(count, count + 10_000):
            tokenizer.token("PHONE", f"+8490{n:07d}")
        count += 10_000
    return count / (time.perf_counter() - started), count / (time.process_time() - cpu)


def bench_client(url: str, api_token: str, seconds: float) -> tuple[float, float]:
    """(tokens per wall second, tokens per client CPU second)."""
    client = OprfTokenizer(url, api_token, batch_size=BATCH)
    count, started, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - started < seconds:
        client.tokens([("PHONE", f"+8491{n:07d}") for n in range(count, count + BATCH)])
        count += BATCH
    client.close()
    return count / (time.perf_counter() - started), count / (time.process_time() - cpu)


def bench_service(
    url: str, api_token: str, pid: int, seconds: float, clients: int
) -> tuple[float, float]:
    """(evaluations per service CPU second, evaluations per wall second)."""
    elements = [blind(token_input("PHONE", f"+8492{n:07d}"))[1].hex() for n in range(BATCH)]
    body = orjson.dumps({"elements": elements})
    done = [0] * clients
    stop = threading.Event()

    def send(index: int) -> None:
        client = OprfTokenizer(url, api_token)
        while not stop.is_set():
            client._request("POST", "/v1/evaluate", body)
            done[index] += BATCH
        client.close()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(clients)]
    cpu0, wall0 = _cpu_s(pid), time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    cpu, wall = _cpu_s(pid) - cpu0, time.perf_counter() - wall0
    return sum(done) / max(cpu, 1e-9), sum(done) / wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each phase")
    parser.add_argument("--clients", type=int, default=2, help="client threads (service phase)")
    args = parser.parse_args(argv)
    hmac_wall, hmac_cpu = bench_hmac(args.seconds)
    print(f"hmac (one thread):            {hmac_wall:>10,.0f} tokens/s")
    print(f"hmac per core:                {hmac_cpu:>10,.0f} tokens per CPU second")
    with tempfile.TemporaryDirectory() as home, running_service(Path(home)) as (url, token, pid):
        client, client_cpu = bench_client(url, token, args.seconds)
        print(f"oprf per agency client:       {client:>10,.0f} tokens/s (batches of {BATCH})")
        print(f"oprf per agency client core:  {client_cpu:>10,.0f} tokens per CPU second")
        per_core, wall = bench_service(url, token, pid, args.seconds, args.clients)
        print(f"oprf per service core:        {per_core:>10,.0f} evaluations per CPU second")
        print(
            f"oprf service, wall clock:     {wall:>10,.0f} evaluations/s ({args.clients} clients)"
        )
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
