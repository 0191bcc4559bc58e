"""Who gets a connection (stylize_core/admission.py), on real socket pairs: silent connections push
each other out, oldest first, per peer and overall; a newcomer is never refused for them."""

import socket

import pytest

from stylize_core.server.admission import Admission
from stylize_core.server.listeners import Listener, StartError
from stylize_core.contract.client import Address


def connections(count: int) -> list[tuple[socket.socket, socket.socket]]:
    """(the server's end, the client's end) of `count` real connected socket pairs."""
    return [socket.socketpair() for _ in range(count)]


def closed_by_server(client_end: socket.socket) -> bool:
    client_end.settimeout(0.2)
    try:
        return client_end.recv(1) == b""
    except socket.timeout:
        return False


def test_many_peers_push_out_the_oldest_silent_connections_overall():
    admission = Admission(max_unauthenticated=6, per_peer=4, max_authenticated=2)
    pairs = connections(10)
    idents = [admission.admit(f"peer {number % 5}", server_end) for number, (server_end, _) in enumerate(pairs)]
    assert admission.state()["unauthenticated"] == 6 and admission.state()["pushed_out"] == 4
    assert [closed_by_server(client_end) for _, client_end in pairs] == [True] * 4 + [False] * 6
    assert [admission.authenticate(ident) for ident in idents[:4]] == ["pushed-out"] * 4
    assert [admission.authenticate(ident) for ident in idents[4:7]] == ["ok", "ok", "busy"]
    admission.leave(idents[4], authenticated=True)
    assert admission.authenticate(idents[7]) == "ok"


def test_one_peer_pushes_out_only_its_own_oldest():
    admission = Admission(max_unauthenticated=32, per_peer=3, max_authenticated=32)
    others = connections(2)
    for server_end, _ in others:
        admission.admit("quiet peer", server_end)
    flood = connections(10)
    for server_end, _ in flood:
        admission.admit("flooding peer", server_end)
    assert admission.state()["unauthenticated"] == 5
    assert not any(closed_by_server(client_end) for _, client_end in others), "another peer's connection went"
    assert [closed_by_server(client_end) for _, client_end in flood] == [True] * 7 + [False] * 3


@pytest.mark.parametrize("token", ["", "   ", "short", "a" * 31, "ä" * 40])
def test_a_tcp_listener_cannot_be_made_without_a_valid_token(token):
    sock = socket.socket()
    try:
        with pytest.raises(StartError, match="needs a token"):
            Listener(sock, "tcp", Address("tcp", host="127.0.0.1", port=1, token=token), token=token)
    finally:
        sock.close()
