"""The CLI writing into a pipe whose reader has gone (``rcsweep validate FILE | head -1``) ends
quietly: no BrokenPipeError traceback (a new user's report)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_closed_pipe_gives_no_traceback():
    # the reader exits before rcsweep writes anything: every write hits a closed pipe
    cmd = f"{sys.executable} -m rcsweep.cli validate {ROOT / 'sweeps' / 'quickstart.yaml'} | true"
    done = subprocess.run(cmd, shell=True, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
