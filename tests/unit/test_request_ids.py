"""Generated request ids: 32 hex digits, different every time, and different in every forked worker."""

from __future__ import annotations

import os
import re

from recoverlink.web import new_request_id

HEX32 = re.compile(r"[0-9a-f]{32}")


def test_a_generated_id_is_32_lowercase_hex_digits_and_never_repeats() -> None:
    ids = [new_request_id() for _ in range(1000)]
    assert all(HEX32.fullmatch(rid) for rid in ids)
    assert len(set(ids)) == len(ids)


def test_a_forked_worker_does_not_repeat_the_ids_of_the_process_it_forked_from() -> None:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child, as a gunicorn worker is: its next ids, then gone
        os.close(read_end)
        os.write(write_end, "".join(new_request_id() for _ in range(3)).encode())
        os._exit(0)
    os.close(write_end)
    ours = "".join(new_request_id() for _ in range(3))
    with os.fdopen(read_end) as pipe:
        theirs = pipe.read()
    os.waitpid(pid, 0)
    assert len(theirs) == 96 and theirs != ours
