"""Whether a profile's endpoint reaches a server: the check behind ``arcuate serve``'s warnings."""

from __future__ import annotations

import socket

import pytest

from arcuate.backends.sharing.server.endpoints import Listening

LOOPBACK = Listening("127.0.0.1", 8090, "/delta-sharing")
EVERYWHERE = Listening("0.0.0.0", 8090, "/delta-sharing")
ONE_ADDRESS = Listening("10.1.2.3", 8090, "/delta-sharing")
PROXIED = Listening("0.0.0.0", 8090, "/delta-sharing", "https://sharing.example.com/ds/")


@pytest.mark.parametrize(
    ("server", "endpoint"),
    [
        (LOOPBACK, "http://127.0.0.1:8090/delta-sharing"),
        (LOOPBACK, "http://LOCALHOST:8090/delta-sharing/"),
        (EVERYWHERE, "http://models.corp:8090/delta-sharing"),
        (ONE_ADDRESS, "http://models.corp:8090/delta-sharing"),  # a name may resolve to it
        (ONE_ADDRESS, "http://10.1.2.3:8090/delta-sharing"),
        (PROXIED, "https://sharing.example.com:443/ds"),
    ],
)
def test_profiles_that_reach_the_server(server: Listening, endpoint: str) -> None:
    assert server.mismatch(endpoint) is None


@pytest.mark.parametrize(
    ("server", "endpoint", "why", "fix"),
    [
        (LOOPBACK, "http://127.0.0.1:8080/delta-sharing", "port 8090, not 8080",
         "http://127.0.0.1:8090/delta-sharing"),
        (LOOPBACK, "http://127.0.0.1:8090/sharing", "path /delta-sharing, not /sharing",
         "http://127.0.0.1:8090/delta-sharing"),
        (LOOPBACK, "http://models.corp:8090/delta-sharing",
         "it listens on 127.0.0.1 only, not on models.corp", "http://127.0.0.1:8090/delta-sharing"),
        (ONE_ADDRESS, "http://10.9.9.9:8090/delta-sharing", "host 10.1.2.3, not 10.9.9.9",
         "http://10.1.2.3:8090/delta-sharing"),
        (EVERYWHERE, "https://models.corp/delta-sharing",
         "https: this server speaks plain HTTP; behind a TLS proxy pass --public-url",
         "http://models.corp:8090/delta-sharing"),
        (PROXIED, "http://127.0.0.1:8080/delta-sharing", "", "https://sharing.example.com/ds"),
        (LOOPBACK, "not a url", "it is not an http(s) URL", "http://127.0.0.1:8090/delta-sharing"),
    ],
)  # fmt: skip
def test_profiles_that_do_not(server: Listening, endpoint: str, why: str, fix: str) -> None:
    assert server.mismatch(endpoint) == (why, fix)


def test_the_urls_recipients_use() -> None:
    assert LOOPBACK.recipient_urls() == ["http://127.0.0.1:8090/delta-sharing"]
    assert PROXIED.recipient_urls() == ["https://sharing.example.com/ds"]
    assert EVERYWHERE.recipient_urls()[0] == f"http://{socket.gethostname()}:8090/delta-sharing"
    assert Listening("::1", 80, "").recipient_urls() == ["http://[::1]:80"]
    assert (LOOPBACK.scope(), EVERYWHERE.scope(), ONE_ADDRESS.scope()) == (
        "this machine only",
        "every interface",
        "this address only",
    )
