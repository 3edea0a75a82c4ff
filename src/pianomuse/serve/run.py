"""Running the web copilot: which Host names it answers, and a shutdown that does not wait
for a long generation (a service manager or container stops a server with SIGTERM)."""

from __future__ import annotations

import socket
from collections.abc import Sequence

import uvicorn

from pianomuse.serve.app import LOCAL_HOSTS
from pianomuse.serve.gate import HostCheck

WILDCARDS = ("0.0.0.0", "::", "")


def allowed_hosts(host: str, extra: Sequence[str] = ()) -> list[str]:
    """The Host names to answer: the local names, the address listened on, and `extra`.
    Listening on every interface adds this machine's name and addresses."""
    names = [*LOCAL_HOSTS, *extra]
    if host not in WILDCARDS:
        return [*names, host]
    me = socket.gethostname()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(me, None)}
    except OSError:
        addresses = set()
    return [*names, me, socket.getfqdn(), *sorted(addresses)]


def serve_forever(app: HostCheck, host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM. On either, the running generation stops at its next
    token and waiting requests are refused (503), so the process exits within seconds."""

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: object) -> None:
            for gate in app.gates:
                gate.shutdown()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, host=host, port=port, log_level="warning")
    Server(config).run()
