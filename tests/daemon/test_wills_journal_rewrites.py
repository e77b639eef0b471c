"""The wills file and its journal, read back as the next daemon would after a kill -9 at any moment,
hold exactly the wills the daemon holds, also while changes are appended during the file's rewrites.

A rewrite that had changes appended meanwhile replaced the journal with those lines and then cut
its recorded size a second time: the next such rewrite kept the wrong bytes, and a daemon killed
then left the next one wills lost, or ended ones back.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from trackd.daemon._wills_file import WillsFile

Will = dict[str, object]


def _after_a_kill(wills: WillsFile) -> dict[str, Will]:
    """What a daemon SIGKILLed now leaves the next one: the file, then the journal on top of it."""
    view: dict[str, Will] = {}
    if wills.path.exists():
        for line in wills.path.read_text().splitlines():
            row = json.loads(line)
            view[row["client_id"]] = row
    changes, _, _ = wills.read_journal()
    for client_id, will in changes:
        view.pop(client_id, None)
        if will is not None:
            view[client_id] = will  # type: ignore[assignment]
    return view


def test_changes_appended_during_rewrites_are_never_lost_or_brought_back(tmp_path: Path) -> None:
    # Thousands of idle wills make each rewrite (in its thread) take long enough for the loop to
    # append changes meanwhile, as on a busy machine or a slow disk.
    held: dict[str, Will] = {f"idle{i}": {"client_id": f"idle{i}", "run_ids": [f"{i:032x}"] * 8} for i in range(4_000)}
    wills = WillsFile(tmp_path / "d.sock.wills", tmp_path / "d.sock.wills.log", lambda: [dict(row) for row in held.values()])
    wrong: list[int] = []

    async def churn() -> None:
        wills.rewrite()  # as a daemon starts: the wills it holds in the file
        for step in range(300):
            client_id = f"c{step % 7}"
            if step % 3 == 2:
                held.pop(client_id, None)
                wills.changed([(client_id, None)])
            else:
                held[client_id] = {"client_id": client_id, "run_ids": [f"r{step}"]}
                wills.changed([(client_id, dict(held[client_id]))])
            await asyncio.sleep(0.002)
            if _after_a_kill(wills) != held:
                wrong.append(step)
        await wills.close(list(held.values()))

    asyncio.run(churn())
    assert wrong == [], f"a kill -9 at {len(wrong)} of 300 moments would lose or bring back wills (first at {wrong[:5]})"
    assert _after_a_kill(wills) == held
