"""How ``trackd daemon status`` words the daemon's status reply and the spool folder's census."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

from ._paths import DaemonPaths
from ._process_names import rank_words
from ._words import counted
from .client._delivery import ORPHAN_DELIVERY_DELAY
from .client._spool_census import SpoolCensus, SpoolFiles
from .daemon._state import RATE_WINDOW

# Clients that have disconnected, listed by `trackd daemon status` before "... and N more gone".
MAX_GONE_CLIENTS_SHOWN = 10


def status_lines(status: Mapping[str, object]) -> list[str]:
    """The daemon's status reply as text, a line per total, error, copy and client."""
    # msgpack arrays arrive as tuples (the protocol decodes with use_list=False).
    clients = status.get("clients")
    # The daemon averages from RATE_WINDOW seconds ago (or its start) up to the request; an older
    # daemon does not say its span.
    span = status.get("rate_span_s")
    window_s = span if isinstance(span, (int, float)) else min(RATE_WINDOW, float(str(status["uptime_s"])))
    rate_window = f"over the last {span_words(window_s)}"
    lines = [
        f"trackd daemon pid {status['pid']} (trackd {status['version']}, loop {status['loop']})",
        f"  socket        {status['socket']}",
        f"  uptime        {span_words(float(str(status['uptime_s'])))}",
        f"  clients       {status['clients_connected']} connected, {status.get('clients_known', len(clients) if isinstance(clients, (list, tuple)) else 0)} known"
        f"{_connection_limit(status)}",
        f"  received      {_count(status['records_received'], 'event')}, {byte_size(status.get('bytes_received', 0))} ({_n(status['receive_rate'])} events/s {rate_window})",
        f"  written       {_count(status['records_written'], 'event')}, {_count(status['metric_points_written'], 'metric point')} ({_n(status['write_rate'])} events/s {rate_window})",
        f"  backlog       {_count(status['backlog_records'], 'event')} waiting to be written ({byte_size(status.get('backlog_bytes', 0))}, estimated)",
        f"  rejected      {_count(status['items_rejected'], 'item')} ({_count(status.get('events_rejected', status['items_rejected']), 'event')}); protocol errors {_n(status['protocol_errors'])}; write errors {_n(status['write_errors'])}; "
        f"connections refused {_n(status.get('connections_refused', 0))}",
        f"  dropped       {_count(status.get('events_dropped_by_clients', 0), 'event')} by clients whose buffer was full (TRACKD_ON_FULL=drop)",
        f"  throttled     {_count(status.get('throttled', 0), 'pause')} of connections over their decode budget while others waited",
        *_run_counts(status),
        f"  runs failed   {_n(status.get('runs_failed_for_exited_clients', 0))} left RUNNING by processes that exited without ending them",
        # wills_pending counts connections that ended with runs not ended, not every process the
        # daemon watches: "0 processes watched" was printed beside a connected job owning its run.
        f"  runs watched  {_count(status.get('wills_pending', 0), 'process')} disconnected with runs not ended (watched until they exit); "
        f"{_n(status.get('wills_waiting', 0))} exited, waiting for their events, spool or store" + _runs_refused(status),
    ]
    unclean = status.get("unclean_exit_pid")
    if unclean is not None:
        # "see the log" named no file. The last daemon's own lines are in the log it wrote to, which
        # only this daemon's names when it is the one trackd starts a daemon with: a daemon started
        # by hand with --log-file elsewhere (or logging to its stderr) was said to hold them.
        log, default = status.get("log_file"), str(DaemonPaths(Path(str(status["socket"]))).log)
        if log == default:
            where = log
        elif "log_file" in status:
            mine = log if isinstance(log, str) else "its stderr"
            where = f"the log it wrote to, {default} for a daemon trackd starts; this daemon logs to {mine}"
        else:
            where = "the daemon's log"
        lines.append(f"  last daemon   pid {unclean} ended without a clean exit before this one started (killed or crashed: see {where})")
    copies = status.get("copies")
    if isinstance(copies, (list, tuple)):
        lines += [
            f"  copying       {copy['source']} for pid {copy['pid']}: {copy['copied']} of {copy['bytes']} bytes"
            for copy in copies if isinstance(copy, dict)
        ]
    lines += error_lines(status)
    if isinstance(clients, (list, tuple)):
        pids = {client.get("pid") for client in clients if isinstance(client, dict)}
        gone_shown = gone_hidden = 0
        for client in clients:
            if isinstance(client, dict):
                if not client["connected"]:
                    # A daemon serving benchmark suites knows hundreds of finished processes.
                    if gone_shown >= MAX_GONE_CLIENTS_SHOWN:
                        gone_hidden += 1
                        continue
                    gone_shown += 1
                throttled = client.get("throttled", 0)
                paused = f", reads paused {_count(throttled, 'time')} ({client.get('throttled_s', 0)} s) for its decode budget" if throttled else ""
                # Which client the totals' rejected and dropped events came from: only --json said.
                lost = "".join(
                    f", {_count(count, 'event')} {what}" for what, count in (("rejected", client.get("rejected", 0)), ("dropped", client.get("dropped", 0))) if count
                )
                rate = _client_rate(client, window_s)
                lines.append(
                    f"  client        pid {client['pid']}@{client['host']}{_who(client, pids)} {'connected' if client['connected'] else 'gone'}{rate}"
                    f"{_written(client)}{_client_runs(client)}{lost}{paused}, store {client['store']}"
                )
        # The daemon lists at most MAX_STATUS_CLIENTS (connected first, then the latest to leave), to
        # keep its reply within one frame; clients_known counts them all. "--json lists every client"
        # was said of a reply listing 256 of 633.
        listed = len(clients)
        known = status.get("clients_known", listed)
        unlisted = known - listed if isinstance(known, int) and known > listed else 0
        if unlisted:
            hidden = f"{_n(gone_hidden)} more gone (--json lists them), and " if gone_hidden else ""
            lines.append(
                f"  client        ... and {hidden}{_n(unlisted)} more that the daemon does not list, here or in --json: "
                f"it lists {_n(listed)} of the {_n(known)} clients it knows, connected ones first, then the latest to leave"
            )
        elif gone_hidden:
            lines.append(f"  client        ... and {_n(gone_hidden)} more gone (--json lists every client)")
    return lines


def _written(client: Mapping[str, object]) -> str:
    """What of a client's events waits to be written, in words: "batch 3/3 written" was the
    protocol's sequence numbers, which --json keeps (``written_seq``, ``received_seq``)."""
    received, written = client["received_seq"], client["written_seq"]
    backlog = client.get("backlog_records")
    if isinstance(backlog, int) and backlog > 0:
        return f", {_count(backlog, 'event')} waiting to be written"
    if isinstance(received, int) and isinstance(written, int) and written < received:
        return f", {_count(received - written, 'batch')} waiting to be written"
    if not received:
        return ", nothing sent yet" if client.get("connected") else ", sent nothing"
    return ", everything it sent written"


def _client_runs(client: Mapping[str, object]) -> str:
    """A client's runs, when it has any to tell: those a connected one runs, or those the daemon
    marked FAILED when its process exited without ending them (a SIGKILLed job read "gone", and
    nothing of its run); "" from an older daemon."""
    if client.get("connected"):
        owned = client.get("owned_runs", 0)
        return f", running {_count(owned, 'run')}" if owned else ""
    failed = client.get("runs_failed", 0)
    if not failed:
        return ""
    return f", {_count(failed, 'run')} marked FAILED: its process exited without ending {'it' if failed == 1 else 'them'}"


def _client_rate(client: Mapping[str, object], window_s: float) -> str:
    """A connected client's events/s and what they are over: the totals' window, or the shorter
    time since it connected. Said of no client that left: "gone, 248 events/s" read as one still
    sending. Without its span (an older daemon), its rate alone, as that daemon's text said it."""
    rate = client.get("receive_rate")
    if not client.get("connected") or rate is None:
        return ""
    span = client.get("rate_span_s")
    if not isinstance(span, (int, float)):
        return f", {_n(rate)} events/s"
    # Rounded as the window is, so that a client connected for all of it is said to be over it.
    over = f"over the last {span_words(window_s)}" if span_words(span) == span_words(window_s) else f"over the {span_words(span)} since it connected"
    return f", {_n(rate)} events/s {over}"


def _who(client: Mapping[str, object], pids: set[object]) -> str:
    """What tells a client's process from the job's others: its rank, its parent when that is a
    client too (a pool worker and its rank), and its command: " (rank 3, forked by pid 1200; python
    train.py --lr 0.1)"; "" where the daemon could not read them (not Linux, an older daemon)."""
    ranks = {"RANK": client.get("rank"), "LOCAL_RANK": client.get("local_rank")}
    named = [rank_words({name: value for name, value in ranks.items() if isinstance(value, str)})]
    ppid = client.get("ppid")
    if ppid and ppid in pids and ppid != client.get("pid"):
        named.append(f"child of pid {ppid}")
    said = ", ".join(words for words in named if words)
    command = client.get("command")
    if isinstance(command, str) and command:
        said = f"{said}; {command}" if said else command
    return f" ({said})" if said else ""


def _n(count: object) -> str:
    """A count or rate read at a glance: 1,234,567; a rate under 100 keeps a decimal (0.4, not 0)."""
    if isinstance(count, float):
        return f"{count:,.1f}" if count < 100 else f"{count:,.0f}"
    return f"{count:,}" if isinstance(count, int) else str(count)


def _count(count: object, noun: str) -> str:
    """A count as ``_n`` writes it, and its noun agreeing: "1 event", "1,234 events"."""
    return counted(count, noun, grouped=True)


def byte_size(size: object) -> str:
    """Bytes as a person reads them: "512 bytes", "4.7 MiB", "1.2 GiB"."""
    if not isinstance(size, (int, float)):
        return f"{size} bytes"
    if size < 1024:
        return f"{size:g} bytes"
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            break
    return f"{size:.1f} {unit}"


def span_words(seconds: float) -> str:
    """The daemon's uptime and the spans its rates are over, rounded alike: "5.8 s" under 10 s (the
    rate window's length), ``duration`` from there on.

    A daemon 5.8 s old said "uptime 5 s" beside rates "over the last 5.8 s".
    """
    return f"{seconds:.2g} s" if 0 <= seconds < 10 else duration(seconds)


def duration(seconds: float) -> str:
    """Seconds as a person reads them at a glance: "42 s", "3 min 20 s", "1 d 2 h 3 min" (a daemon up for days)."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"  # 59.6 is not "60 s", which reads as a minute
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days} d"] if days else []
    parts += [f"{hours} h"] if hours or days else []
    parts.append(f"{minutes} min")
    if not days:
        parts.append(f"{secs} s")
    return " ".join(parts)


def _run_counts(status: Mapping[str, object]) -> list[str]:
    """The runs the daemon made, ended (by status) and resumed, in a line; none from a daemon that does not count them.

    A suite of 300 short jobs showed clients and events, not "300 created, 297 ended: 295 FINISHED, 2 FAILED".
    """
    ended = status.get("runs_ended")
    if "runs_created" not in status or not isinstance(ended, Mapping):
        return []
    total = sum(count for count in ended.values() if isinstance(count, int))
    statuses = ", ".join(f"{_n(ended.get(name, 0))} {name}" for name in ("FINISHED", "FAILED", "KILLED"))
    return [
        f"  runs          {_n(status['runs_created'])} created, {_n(status.get('runs_resumed', 0))} resumed; "
        f"{_n(total)} ended: {statuses}{_runs_open(status)}"
    ]


def _runs_open(status: Mapping[str, object]) -> str:
    """The runs connected processes run now, each once however many ranks log to it; "" from an older daemon.

    Not a count of RUNNING runs in the store: a run a daemon before this one saw started is
    counted once its process connects to this one."""
    open_runs = status.get("runs_open")
    return f"; {_n(open_runs)} running in connected processes" if open_runs is not None else ""


def _runs_refused(status: Mapping[str, object]) -> str:
    """The runs clients owned that the daemon's wills had no room for, if any (absent from an older daemon's reply)."""
    refused = status.get("will_runs_refused", 0)
    return f"; {_count(refused, 'run')} not watched: the wills were full (MAX_WILL_RUN_IDS)" if refused else ""


def _connection_limit(status: Mapping[str, object]) -> str:
    """How many clients the daemon serves at once, and the flag it lowered to fit its file limit; "" from an older daemon."""
    limit, given = status.get("max_connections"), status.get("max_connections_given")
    if limit is None:
        return ""
    lowered = f", lowered from --max-connections {given} to fit its file limit" if given != limit else ""
    return f"; at most {limit} served at once{lowered}"


def error_lines(status: Mapping[str, object]) -> list[str]:
    """A line per kind of error: how often, when last, and, for a store that refused writes, whether it takes them again.

    The count alone stayed after the store recovered, with nothing to tell an error of a minute ago,
    still going on, from one of last week, long over. A daemon older than ``error_times`` gives counts only.
    """
    errors, times = status.get("errors"), status.get("error_times")
    if not isinstance(errors, Mapping):
        return []
    lines = []
    for kind, count in errors.items():
        when = times.get(kind) if isinstance(times, Mapping) else None
        said = f"x{_n(count)}"
        if isinstance(when, Mapping) and isinstance(last := when.get("last_s_ago"), (int, float)):
            said += f", last {duration(last)} ago"
            resumed = when.get("resumed_s_ago")
            if isinstance(resumed, (int, float)):
                said += f"; writes resumed {duration(resumed)} ago"
            elif when.get("refusing"):
                said += "; still refusing writes"
        lines.append(f"  error         {kind} ({said})")
    return lines


def spool_lines(census: SpoolCensus, now: float | None = None) -> list[str]:
    """What waits in the spool folder, and what delivers it, a line per kind (one line when nothing waits)."""
    now = time.time() if now is None else now
    if census.problem is not None:
        return [f"  spool         {census.directory} not looked at: {census.problem}"]

    def files(group: SpoolFiles) -> str:
        age = group.oldest_age(now)
        oldest = "" if age is None else f", {'the oldest ' if group.files > 1 else ''}last written {duration(age)} ago"
        return f"{_count(group.files, 'file')} ({byte_size(group.bytes)}{oldest})"

    lines = []
    if census.waiting.files:
        lines.append(
            f"  spool         {files(census.waiting)} of exited processes waiting in {census.directory}: run `trackd sync`, "
            f"or the next trackd process to connect delivers them once it has run {ORPHAN_DELIVERY_DELAY:g} s"
        )
    if census.running.files:
        lines.append(
            f"  spool         {files(census.running)} being written by running processes, which send them themselves once "
            "they reach a daemon (or being delivered right now)"
        )
    if census.set_aside.files:
        lines.append(
            f"  spool         {files(census.set_aside)} set aside as undeliverable (*.undeliverable.spool: damaged or "
            "unreadable): only `trackd sync` tries them, and says why they fail"
        )
    if census.other_hosts.files:
        hosts = ", ".join(sorted(census.other_hosts.hosts))
        lines.append(
            f"  spool         {files(census.other_hosts)} written on other hosts ({hosts}): run `trackd sync` there, or "
            "`trackd sync --all-hosts` here if their stores' paths are shared"
        )
    if census.written.files:
        # After a stalled daemon resumed: it wrote what their processes had sent it before they
        # gave it up and spooled. They were said to wait, and `trackd sync` found nothing to send.
        lines.append(
            f"  spool         {files(census.written)} of exited processes in {census.directory} whose every batch the "
            "daemon has written already: nothing waits; `trackd sync` or the next trackd process removes them"
        )
    lines = lines or [f"  spool         no files waiting in {census.directory}"]
    if census.empty.files:
        lines.append(
            f"  spool         {_count(census.empty.files, 'empty file')} in {census.directory}, nothing to deliver (delivered, "
            "and left empty where the folder refused their removal)"
        )
    return lines
