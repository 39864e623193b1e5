"""The smoke helpers' hang guard: it limits silence, never total time."""

import sys

import pytest

from smoke import run_guarded


def test_a_slow_process_that_keeps_printing_is_never_stopped(tmp_path):
    """Prints every 0.5 s for 4 s, longer than the 2 s silence limit: it runs to the end."""
    code = "import time\nfor i in range(8):\n    print(i, flush=True); time.sleep(0.5)\n"
    proc = run_guarded([sys.executable, "-c", code], tmp_path, silence_limit_s=2.0)
    assert proc.returncode == 0 and proc.stdout.split() == [str(i) for i in range(8)]


def test_a_silent_process_is_killed_and_the_failure_says_it_was_a_hang(tmp_path):
    code = "import sys, time\nprint('started', file=sys.stderr, flush=True)\ntime.sleep(60)\n"
    with pytest.raises(AssertionError) as err:
        run_guarded([sys.executable, "-c", code], tmp_path, silence_limit_s=2.0)
    message = str(err.value)
    assert "hang guard" in message and "printed nothing for" in message and "not a slow machine" in message
    assert "started" in message
