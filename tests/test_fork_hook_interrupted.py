"""A KeyboardInterrupt raised in the first step of the child's spool at-fork hook (a Ctrl-C the child
got as it was forked, where trackd does not block SIGINT across fork: no Client made in the main
thread) skips none of the later steps: it skipped every sender's closes, and the child kept its
copy of its parent's spool file, with the file's lock, for its whole life (after the parent exited,
`trackd sync` left the spool as "still running" until the child did).

The KeyboardInterrupt is raised where a signal handler would raise it, in the child as it enters the
first step, by a trace function (sys.settrace) of the thread that forks: no code of trackd changed.
"""

from __future__ import annotations

from pathlib import Path

from helpers import child_env, run_python

# A Client made in a thread (so trackd installs no SIGTERM handler and holds no signal across
# fork) spools with no daemon; the process forks with a trace function that raises
# KeyboardInterrupt in the child as the hook's first step is called. The child says what it still
# has open on the spool file, and whether the hook's exception was raised to CPython.
FORKS_INTERRUPTED = """
import os, sys, threading, time
import trackd
made = []
thread = threading.Thread(target=lambda: made.append(trackd.Client(STORE)))
thread.start()
thread.join()
client = made[0]
client.log_metric(client.create_run("0").info.run_id, "x", 1.0, step=0)
while not client.stats()["spooled"]:
    time.sleep(0.01)
spool = os.path.realpath(os.path.join(os.environ["TRACKD_SPOOL_DIR"], str(client.stats()["client_id"]) + ".spool"))
parent = os.getpid()

def interrupt(frame, event, arg):
    if event == "call" and frame.f_code.co_name == "close_held_in_child" and os.getpid() != parent:
        raise KeyboardInterrupt
    return None

sys.settrace(interrupt)
pid = os.fork()
sys.settrace(None)
if pid == 0:
    copies = [name for name in os.listdir("/proc/self/fd") if os.path.realpath(f"/proc/self/fd/{name}") == spool]
    print("copies", len(copies), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
print("parent has", sum(os.path.realpath(f"/proc/self/fd/{name}") == spool for name in os.listdir("/proc/self/fd")), flush=True)
"""


def test_an_interrupt_in_the_first_step_of_the_fork_hook_still_closes_the_senders_copies(
    socket_path: Path, store: Path, tmp_path: Path,
) -> None:
    env = child_env(socket_path, TRACKD_SPOOL_DIR=str(tmp_path / "spool"), TRACKD_AUTOSTART="0", TRACKD_CONNECT_TIMEOUT="0.2")
    result = run_python(FORKS_INTERRUPTED.replace("STORE", repr(str(store))), env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "parent has 1" in result.stdout, (result.stdout, result.stderr)
    assert "copies 0" in result.stdout, (result.stdout, result.stderr)
    # The interrupt is not swallowed: CPython prints what the hook raised, as for any at-fork hook.
    assert "KeyboardInterrupt" in result.stderr, result.stderr
