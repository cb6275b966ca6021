"""A Sail Spark Connect server for the tests, in its own process: prints its port, serves until
its standard input closes. Spark tasks (Python UDFs) run in this process, apart from pytest's.
"""

import sys

from pysail.spark import SparkConnectServer


def main() -> None:
    server = SparkConnectServer("127.0.0.1", 0)
    server.start(background=True)
    address = server.listening_address
    assert address is not None
    print(address[1], flush=True)
    try:
        sys.stdin.read()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
