"""Entry point: moto 5.2.5's server with the project's extension, on loopback only.

    python tests/emulator/server.py --host 127.0.0.1 --port 5000

Patches moto in-process (lifecycle hooks, Auto Scaling events, SSM execution, faults,
call log; see the sibling modules), then serves it with moto's own request handler. Prints
exactly one line ``emulator ready on http://HOST:PORT`` on stdout once the socket accepts
connections (``--port 0`` picks a free port and prints it). SIGTERM/SIGINT stop it cleanly,
killing any Run Command processes it started.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import logging
import os
import signal
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
if os.path.dirname(HERE) not in sys.path:
    sys.path.insert(0, os.path.dirname(HERE))  # makes the package importable as emulator


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", "-H", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", "-p", type=int, default=5000, help="port (0: any free port)")
    parser.add_argument("--verbose", "-v", action="store_true", help="log every request to stderr")
    parser.add_argument(
        "--quotas",
        metavar="PROFILE|FILE",
        help="request quotas from the start (token buckets; kept across POST /moto-ext/reset): "
        "a profile (aws-default) or a JSON file of rules as POST /moto-ext/quotas takes",
    )
    parser.add_argument(
        "--moto-sqs",
        action="store_true",
        help="answer every SQS request through moto's own request layer (sqs_fast.py answers "
        "plain SendMessage, ReceiveMessage and DeleteMessageBatch requests itself; the "
        "self-test compares both)",
    )
    parser.add_argument(
        "--close",
        action="store_true",
        help="close every connection after its answer, as werkzeug's server does "
        "(keepalive.py keeps them open as AWS does; for comparing the two)",
    )
    args = parser.parse_args(argv)
    if not _loopback(args.host):
        parser.error(f"refusing to bind {args.host}: the emulator binds loopback addresses only")

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    if not args.verbose:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)

    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import ThreadedWSGIServer

    from emulator import control, keepalive, lifecycle, quotas, sqs_fast, ssm_exec, timers, workers

    sqs_fast.ENABLED = not args.moto_sqs

    class PooledWSGIServer(ThreadedWSGIServer):
        """Each accepted connection is served on a reused thread (workers.py), as a
        threaded server serves it on a new one."""

        def process_request(self, request, client_address):  # type: ignore[no-untyped-def]
            workers.REQUESTS.submit(self.process_request_thread, request, client_address)

    app = control.build_app()
    if args.quotas:
        try:
            quotas.set_startup(args.quotas)
        except ValueError as exc:
            parser.error(str(exc))
    # Python's full (generation 2) garbage collections stop every thread for 60-200 ms
    # once moto holds a few hundred instances: a stall no AWS endpoint has, which would
    # land on whatever call is being timed. Startup objects (moto, botocore models) are
    # frozen out of collection, and full collections are left out; the young
    # generations still collect the cyclic garbage requests make (measured: ~1,000
    # objects left over 800 requests).
    gc.freeze()
    gen0, gen1, _ = gc.get_threshold()
    gc.set_threshold(gen0, gen1, 1_000_000_000)
    # A request arriving while another thread serializes a response waits for the
    # interpreter at every step (accept, the handler thread's start, parsing): by
    # default up to 5 ms per handoff, which is most of an AWS call's cost here on a busy
    # machine. Handing over every 0.5 ms costs the busy thread little.
    sys.setswitchinterval(0.0005)
    handler = MotoRequestHandler if args.close else keepalive.KeepAliveHandler
    server = PooledWSGIServer(args.host, args.port, app, handler)
    port = server.server_port
    os.environ["MOTO_PORT"] = str(port)  # moto builds some self-URLs from it

    stopping = threading.Event()

    def stop(signum: int, frame: object) -> None:
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"emulator ready on http://{host}:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        lifecycle.stop()
        timers.reset()
        ssm_exec.reset()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
