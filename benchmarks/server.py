"""The sharing server as its own process (so its peak RSS is its own), for the runner.

``python -m benchmarks.server <catalog>`` starts arcuate's server with ``serve_in_thread`` on
a free loopback port, prints its endpoint on one line, and stops when stdin closes. A line
``stats`` on stdin is answered with one JSON line of the server's counters (requests, bytes
sent, pre-signed URLs).
"""

from __future__ import annotations

import dataclasses
import json
import sys


def main() -> None:
    from arcuate.backends.sharing.server import serve_in_thread

    handle = serve_in_thread(sys.argv[1])
    sys.stdout.write(handle.endpoint + "\n")
    sys.stdout.flush()
    try:
        for line in sys.stdin:  # the runner closes stdin to stop us
            if line.strip() == "stats":
                sys.stdout.write(json.dumps(dataclasses.asdict(handle.sharing.stats)) + "\n")
                sys.stdout.flush()
    finally:
        handle.stop()


if __name__ == "__main__":
    main()
