"""A whole-request deadline on the metrics/health listener (issue #23, case 9).

The socket timeout bounds each read alone: 16 clients sending a byte every half second, each
within the timeout, held all 8 workers and the 8 queue slots, and 0 of 20 health probes were
answered. Now each request has one deadline (``request_timeout_s``) for all its reads: the slow
clients are cut off, and health answers.
"""
from __future__ import annotations

import socket
import threading
import time
import urllib.request

from stream.metrics import Metrics, MetricsServer


def _trickle(port: int, stop: threading.Event) -> None:
    """A slowloris: a request line a byte at a time, each byte inside the per-read timeout."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            for byte in b"GET /metrics HTTP/1.1\r\nHost: x\r\n" * 100:
                if stop.is_set():
                    return
                sock.sendall(bytes([byte]))
                time.sleep(0.3)
    except OSError:
        return  # cut off by the server


def test_slow_clients_cannot_starve_health_probes():
    server = MetricsServer(Metrics(), "127.0.0.1", 0, workers=8, backlog=8, request_timeout_s=1.0).start()
    stop = threading.Event()
    slow = [threading.Thread(target=_trickle, args=(server.port, stop), daemon=True) for _ in range(16)]
    try:
        for t in slow:
            t.start()
        time.sleep(0.5)  # every worker and queue slot held by a slow client
        answered, late, t0 = 0, [], time.monotonic()
        for _ in range(20):
            ok = False
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=3) as r:
                    ok = r.status == 200
            except OSError:
                pass
            answered += ok
            if time.monotonic() - t0 > 1.5:  # sent after the slow clients' deadline
                late.append(ok)
            time.sleep(0.1)
        took = time.monotonic() - t0
        print(f"\nhealth probes answered beside 16 slow clients: {answered} of 20 in {took:.1f} s "
              f"({sum(late)} of {len(late)} once their deadline passed)")
        assert late and all(late) and answered >= 10
        t0 = time.monotonic()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as one:
            one.sendall(b"G")
            while True:  # keep it trickling: the deadline, not a read timeout, ends it
                time.sleep(0.3)
                try:
                    one.sendall(b"E")
                except OSError:
                    break
                if time.monotonic() - t0 > 8:
                    break
        assert time.monotonic() - t0 < 4, "a trickling request is cut at the deadline"
    finally:
        stop.set()
        server.close()
