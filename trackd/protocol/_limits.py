"""Hard limits of the wire protocol, each with its reasoning.

These bound what one frame can cost the daemon. MLflow's own value rules (a key of at most 250
characters, a param of at most 6000) are store rules and live in ``trackd.store``; the limits here
are wider and exist so that a hostile or broken peer cannot make the daemon allocate or decode
without bound.
"""

from __future__ import annotations

# 2: METRIC_SERIES records, and Rejected.events. 3: SET_TERMINATED's keep_failure. 4: ARTIFACT's source_stamp.
# 5: OwnedRuns (the runs the daemon fails if the client's process exits without ending them), and
# BadBatch (the batch the daemon refuses whole, named so that the client stops sending it).
# 6: ARTIFACT's mode (a file's permission bits, and empty folders, as MLflow's copy keeps them).
# 7: Hello's artifact_root (new experiments' artifact location as a plain path or a file: URI, as
# MLflow's tracking URI gives it). A version-6 Hello (without it) is still accepted.
# 8: CREATE_RUN's owner (the run takes its owner's name, tags and start time, whichever process's
# create reached the store first). A version-6 or 7 CREATE_RUN (without it) is still accepted.
# 9: SpooledWill (the runs a spool file's process owned, and that process: its delivery tells the
# daemon, which fails them once that process is gone).
# 10: SET_TERMINATED's unless_owned (a shared end: written only if no other live process owns the
# run; a job resuming a RUNNING run co-owns it). A version-6 to 9 SET_TERMINATED (without it) is
# still accepted, as an end that is not shared.
PROTOCOL_VERSION = 10
# The oldest version a daemon accepts: 6's frames are 10's, with a Hello of 5 fields, CREATE_RUN
# records without owner and SET_TERMINATED records without unless_owned (and no SpooledWill,
# which only a delivery sends).
OLDEST_PROTOCOL_VERSION = 6

# A frame is a 4-byte big-endian length, then that many bytes of msgpack.
FRAME_HEADER_SIZE = 4

# 16 MiB holds a batch of MAX_RECORDS_PER_BATCH metric records with room to spare, and an inline
# artifact of MAX_INLINE_ARTIFACT_SIZE. Anything larger is refused before a byte of it is buffered.
MAX_FRAME_SIZE = 16 * 1024 * 1024

# Records, and events (a metric series counts its points), in one batch. Decoding and checking a
# point costs well under a microsecond, so one frame costs at most ~50 ms of the daemon's time;
# the sender splits larger batches.
MAX_RECORDS_PER_BATCH = 50_000

# Ids, keys, names and paths. MLflow run ids may be 256 characters; keys are limited to 250 by the
# store. 1024 leaves room for artifact paths while keeping one record small.
MAX_NAME_LENGTH = 1024

# Param values (6000 in MLflow) and tag values (8000) fit well inside this.
MAX_TEXT_LENGTH = 64 * 1024

# A run may carry this many tags in its create-run record (system tags plus the caller's).
MAX_TAGS_PER_RECORD = 1000

# The UTF-8 bytes of those tags' keys and values together (and of a CreateExperiment's tags). The
# record must fit in one frame, which the sender cannot split: 1000 tags of 8000 CJK characters are
# 24 MB, and such a run was refused whole, its points with it. Half a frame leaves room for the rest
# of the record, and holds 1000 run tags of 8000 ASCII characters (MLflow's longest).
MAX_TAGS_SIZE = MAX_FRAME_SIZE // 2

# Run ids in one OwnedRuns: a process owns a run per thread that started one, nested runs included,
# so tens at most; a thousand ids of MAX_RUN_ID_BYTES are ~260 KB. Kept, not lifted: the client
# copies its set at every send. Past it the newest runs are sent; the oldest are not failed
# (docs/guarantees.md, 3a). What all wills hold together is the daemon's bound (MAX_WILL_RUN_IDS).
MAX_OWNED_RUNS = 1000

# A run id in OwnedRuns and SpooledWill is one the store takes (MLflow's _RUN_ID_REGEX, and at most
# this many bytes in UTF-8: it names the run's folder, NAME_MAX; trackd makes 32 hex characters), so
# the run ids a client may leave the daemon to keep cost what run ids cost. Bounded by
# MAX_NAME_LENGTH only, 200 clients' 1,000 ids of 1,024 characters took the daemon from 27 to
# 370 MB and its wills file to 196 MB, which the next daemon read back.
MAX_RUN_ID_BYTES = 255

# Artifacts up to this size travel inside the frame; larger files are sent as a path for the
# daemon to copy, so a frame never needs to exceed MAX_FRAME_SIZE.
MAX_INLINE_ARTIFACT_SIZE = 8 * 1024 * 1024

# Integers the store can write and MLflow can read back (int64, as MLflow's SQL stores use).
MIN_INT64 = -(2**63)
MAX_INT64 = 2**63 - 1
