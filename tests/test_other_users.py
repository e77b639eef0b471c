"""Another local user against a client: a socket or spool folder they made first, in /tmp.

Without ``$XDG_RUNTIME_DIR`` the socket lives in ``/tmp/trackd-<uid>/``, and without a writable home
the spool in ``/tmp/trackd-spool-<uid>/``: whoever creates such a folder first owns it. Each test
plays the other user with a child process that drops to uid 65534 (so it needs root), and checks
that the client sends that user nothing and takes nothing from them. The daemon's side (another
uid connecting to it) is in tests/daemon/test_security.py.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import DaemonProcess, inherited_env, wait_for

from trackd import Client
from trackd.client import ClientConfig
from trackd.errors import DaemonUnavailable
from trackd.protocol import PROTOCOL_VERSION, Batch, Hello, Record, encode_frame
from trackd.store import StoreReader

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a child as another uid (os.setuid(65534))"),
]

NOBODY = 65534

# The other user's "daemon": listens on the socket it was given, answers every Hello with a
# Welcome and every Batch with an Ack (so a client that trusted it would drop its copies), and
# prints each event it received. Everything is imported before it drops to uid 65534.
FAKE_DAEMON = r"""
import os, socket, sys
from trackd.protocol import NEED_DATA, PROTOCOL_VERSION, Ack, Batch, Connection, ConnectionClosed, Flush, FlushDone, Hello, Role, Welcome
path = sys.argv[1]
os.setgid(65534); os.setuid(65534)
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path)
os.chmod(path, 0o777)
server.listen(8)
print("listening", flush=True)
while True:
    conn, _ = server.accept()
    protocol = Connection(Role.DAEMON)
    while data := conn.recv(65536):
        protocol.receive_data(data)
        while (event := protocol.next_event()) is not NEED_DATA and not isinstance(event, ConnectionClosed):
            print("received", type(event).__name__, event, flush=True)
            if isinstance(event, Hello):
                conn.sendall(protocol.send(Welcome(protocol_version=PROTOCOL_VERSION, daemon_pid=os.getpid(), resume_seq=0)))
            elif isinstance(event, Batch):
                conn.sendall(protocol.send(Ack(seq=event.seq)))
            elif isinstance(event, Flush):
                conn.sendall(protocol.send(FlushDone(request_id=event.request_id, acked_seq=0)))
    conn.close()
"""


@pytest.fixture
def foreign_folder() -> Iterator[Path]:
    """A folder in /tmp that uid 65534 made first (as /tmp/trackd-<uid> would be), mode 755."""
    folder = Path(tempfile.mkdtemp(prefix="td-other-", dir="/tmp"))
    folder.chmod(0o755)
    os.chown(folder, NOBODY, NOBODY)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_socket_another_user_listens_on_gets_nothing(foreign_folder: Path, tmp_path: Path) -> None:
    socket_path = foreign_folder / "trackd.sock"
    fake = subprocess.Popen([sys.executable, "-c", FAKE_DAEMON, str(socket_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert fake.stdout is not None and fake.stdout.readline().strip() == "listening"
        spool_dir = tmp_path / "spool"
        config = ClientConfig(socket_path=socket_path, autostart=False, connect_timeout=2.0, spool_dir=spool_dir)
        client = Client(tmp_path / "mlruns", config=config)
        try:
            run_id = client.create_run("0").info.run_id
            client.log_param(run_id, "db_password", "hunter2")
            # It used to return a report of one acknowledged batch: the other user had it all.
            with pytest.raises(DaemonUnavailable, match=rf"runs as uid {NOBODY}, not as this user.*sends it nothing"):
                client.flush(timeout=10)
        finally:
            client.close()
        # What the client could not deliver waits in its own spool for its own daemon.
        assert [p.suffix for p in spool_dir.iterdir()] == [".spool"]
        assert b"hunter2" in next(spool_dir.iterdir()).read_bytes()
    finally:
        fake.kill()
        output = fake.communicate()[0]
    assert "received" not in output, output  # not even the Hello


def test_trackd_daemon_stop_signals_no_process_of_another_user(foreign_folder: Path) -> None:
    socket_path = foreign_folder / "trackd.sock"
    fake = subprocess.Popen([sys.executable, "-c", FAKE_DAEMON, str(socket_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert fake.stdout is not None and fake.stdout.readline().strip() == "listening"
        env = {**inherited_env(), "TRACKD_SOCKET": str(socket_path)}
        result = subprocess.run([sys.executable, "-m", "trackd", "daemon", "stop"], env=env, capture_output=True, text=True, timeout=60)
        # As root it used to SIGTERM the other user's process (as anyone else: a PermissionError traceback).
        assert result.returncode == 1 and f"runs as uid {NOBODY}, not as this user" in result.stderr, result
        assert fake.poll() is None
    finally:
        fake.kill()
        fake.communicate()


def test_a_socket_folder_that_is_another_users_link_is_refused(tmp_path: Path) -> None:
    # Where /tmp does not protect links (fs.protected_symlinks=0), the other user's
    # /tmp/trackd-<uid> -> a private folder of this user passed every check (owner, mode), and they
    # could point it at a folder of theirs once the daemon was listening.
    mine = tmp_path / "private"
    mine.mkdir(mode=0o700)
    link = Path(tempfile.mkdtemp(prefix="td-link-", dir="/tmp")) / "trackd-sock-dir"
    try:
        link.symlink_to(mine)
        os.chown(link, NOBODY, NOBODY, follow_symlinks=False)
        result = subprocess.run(
            [sys.executable, "-m", "trackd.daemon", "--socket", str(link / "d.sock")], capture_output=True, text=True, timeout=30,
        )
        assert result.returncode != 0
        assert f"it is a symbolic link owned by uid {NOBODY}" in result.stderr, result.stderr
        assert list(mine.iterdir()) == []
    finally:
        shutil.rmtree(link.parent, ignore_errors=True)


def _plant_spool(folder: Path, store: Path, secret: Path) -> Path:
    """A spool file as the other user would write it: a Hello naming a store of their choosing,
    then a Batch asking the daemon to copy one of this user's files into it."""
    run_id = "a" * 32
    hello = Hello(protocol_version=PROTOCOL_VERSION, client_id="planted", pid=1, host=socket.gethostname(), store_root=str(store))
    records: list[Record] = [(5, run_id, "0", "x", "x", 1, {}), (7, run_id, "loot", None, str(secret)), (2, run_id, "planted", "by another user")]
    path = folder / "planted.spool"
    path.write_bytes(encode_frame(hello) + encode_frame(Batch(seq=1, records=records)))
    os.chown(path, NOBODY, NOBODY)
    return path


@pytest.fixture
def planted(foreign_folder: Path, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """The other user's spool folder (777) holding a planted spool, and the store it names (theirs,
    readable by them), into which it asks for a copy of one of this user's files they cannot read."""
    secret = tmp_path / "id_key"
    secret.write_text("-----BEGIN PRIVATE KEY-----\n")
    secret.chmod(0o600)
    foreign_folder.chmod(0o777)
    loot = foreign_folder / "loot"
    path = _plant_spool(foreign_folder, loot, secret)
    yield path, loot
    assert path.exists()
    assert not loot.exists(), sorted(str(p) for p in loot.rglob("*"))


def test_trackd_sync_refuses_a_spool_folder_another_user_owns(planted: tuple[Path, Path], daemon: DaemonProcess) -> None:
    env = {**inherited_env(), "TRACKD_SOCKET": str(daemon.paths.socket), "TRACKD_SPOOL_DIR": str(planted[0].parent)}
    result = subprocess.run([sys.executable, "-m", "trackd", "sync", "--timeout", "10"], env=env, capture_output=True, text=True, timeout=60)
    # It used to deliver it: the daemon copied id_key into the other user's store.
    assert result.returncode == 1 and f"belongs to uid {NOBODY}" in result.stderr, result


def test_a_client_delivers_no_spool_from_a_folder_another_user_owns(
    planted: tuple[Path, Path], daemon: DaemonProcess, tmp_path: Path
) -> None:
    # A client delivers the spools of exited processes it finds after connecting.
    config = ClientConfig(socket_path=daemon.paths.socket, autostart=False, connect_timeout=5.0, spool_dir=planted[0].parent)
    with Client(tmp_path / "mlruns", config=config) as client:
        run_id = client.create_run("0").info.run_id
        client.log_metric(run_id, "loss", 0.5)
        client.flush(timeout=10)
        # That delivery thread starts at the first connect; wait for it to finish, if it runs.
        wait_for(lambda: not any(t.name == "trackd-spool-sync" for t in threading.enumerate()), timeout=30)
    assert StoreReader(tmp_path / "mlruns").get_run(run_id).data.metrics == {"loss": 0.5}
