"""The process supervisor behind `posefleet up`, with tiny python children."""

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def supervise(children: str, grace: float = 2.0) -> subprocess.Popen:
    """Run a Supervisor in a subprocess over the given ProcessSpec list expression."""
    script = textwrap.dedent(f"""
        import sys
        from rich.console import Console
        from services.cli.supervisor import ProcessSpec, Supervisor
        py = sys.executable
        sup = Supervisor(Console(force_terminal=False, width=200), grace_s={grace})
        for spec in {children}:
            sup.start(spec)
        print("READY", flush=True)
        sys.exit(sup.run_until_stopped())
    """)
    return subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def read_until(proc: subprocess.Popen, marker: str) -> str:
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError(f"{marker!r} never appeared:\n{''.join(seen)}")


SLEEPER = (
    "[ProcessSpec('a', [py, '-c', 'import time; print(\"hello from a\", flush=True); "
    "time.sleep(60)'])]"
)


def test_output_is_prefixed_and_sigterm_stops_children_cleanly():
    proc = supervise(SLEEPER)
    assert "a │ hello from a" in read_until(proc, "hello from a")
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=20)[0]
    assert proc.returncode == 0
    assert "a: exited -15" in rest


def test_child_ignoring_sigterm_is_killed_after_the_grace_period():
    stubborn = (
        "[ProcessSpec('s', [py, '-c', 'import signal, time; "
        'signal.signal(signal.SIGTERM, signal.SIG_IGN); print("up", flush=True); '
        "time.sleep(60)'])]"
    )
    proc = supervise(stubborn, grace=0.5)
    read_until(proc, "s │ up")
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=20)[0]
    assert "s: killed after" in rest
    assert time.monotonic() - started < 10


def test_a_crashing_child_stops_the_others_with_its_exit_code():
    crash = (
        "[ProcessSpec('ok', [py, '-c', 'import time; time.sleep(60)']), "
        "ProcessSpec('bad', [py, '-c', 'import time; time.sleep(0.5); raise SystemExit(3)'])]"
    )
    proc = supervise(crash)
    out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 3, out
    assert "bad exited with 3; stopping" in out and "ok: exited -15" in out


def test_json_log_lines_are_shown_compactly():
    from services.cli.supervisor import compact

    line = '{"ts": "t", "level": "info", "service": "s", "logger": "l", "msg": "hi", "n": 1}'
    assert compact(line) == "info    hi n=1"
    assert compact("plain [text]") == "plain \\[text]"
