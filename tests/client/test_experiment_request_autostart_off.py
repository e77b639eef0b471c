"""An experiment request with no daemon and autostart off fails at once, naming why.

Nothing will start a daemon under TRACKD_AUTOSTART=0, yet `set_experiment` of a new name waited
its whole TRACKD_CONNECT_TIMEOUT (10 s by default) before raising: each job of a benchmark suite
run without a daemon paid that, then failed anyway.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import child_env, run_python

CODE = """
import trackd
try:
    trackd.{call}
except trackd.DaemonUnavailable as exc:
    print(exc)
"""


@pytest.mark.parametrize(("call", "what"), [
    ("set_experiment('brand-new')", "get or create experiment 'brand-new'"),
    ("create_experiment('brand-new')", "create experiment 'brand-new'"),
])
def test_an_experiment_request_without_a_daemon_under_autostart_off_fails_at_once(
    store: Path, tmp_path: Path, call: str, what: str
) -> None:
    # A connect timeout far longer than the child's own (60 s): the old code waited it out.
    env = child_env(tmp_path / "none.sock", TRACKD_AUTOSTART="0", TRACKD_CONNECT_TIMEOUT="600",
                    TRACKD_TRACKING_URI=str(store))
    result = run_python(CODE.format(call=call), env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"Cannot {what}: the trackd daemon at {tmp_path}/none.sock is unreachable, and autostart is off "
        "(TRACKD_AUTOSTART=0). Start one with `trackd daemon start`."
    ), result.stdout
    assert not list(store.glob("*/meta.yaml"))
