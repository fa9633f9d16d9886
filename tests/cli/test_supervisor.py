"""The process supervisor behind `posefleet up`, with tiny python children.

Signal behaviour is tested with the supervisor in a subprocess of its own, the way a terminal
runs `posefleet up`; readiness in-process.
"""

import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rich.console import Console

from services.cli.redis_server import free_port
from services.cli.supervisor import ProcessSpec, Supervisor, compact
from tests.cli.test_redis_server import alive, wait_gone

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(60)

# A child that says hello, reports which stop signals reach it, and exits 0 on SIGTERM.
POLITE = (
    "import os, signal, sys, time\n"
    "def on(sig, _):\n"
    "    print('got', signal.Signals(sig).name, flush=True)\n"
    "    if sig == signal.SIGTERM: sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, on); signal.signal(signal.SIGINT, on)\n"
    "print('hello pid', os.getpid(), flush=True)\n"
    "time.sleep(60)\n"
)


@pytest.fixture
def supervise() -> Iterator[Callable[..., subprocess.Popen]]:
    """Run a Supervisor in a subprocess over a ProcessSpec list expression. One that a failed
    test left running is killed at teardown, and its children die with it."""
    started: list[subprocess.Popen] = []

    def run(
        children: str, grace: float = 5.0, policy: str = "RestartPolicy()", **popen: object
    ) -> subprocess.Popen:
        script = textwrap.dedent(f"""
            import sys
            from rich.console import Console
            from services.cli.supervised import supervised
            from services.cli.supervisor import ProcessSpec, RestartPolicy, Supervisor
            py = sys.executable
            sup = Supervisor(Console(force_terminal=False, width=200), {grace}, {policy})
            for spec in {children}:
                sup.start(spec)
            sys.exit(sup.run_until_stopped())
        """)
        proc = subprocess.Popen(
            [sys.executable, "-c", script],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            **popen,
        )
        started.append(proc)
        return proc

    yield run
    for proc in started:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def read_until(proc: subprocess.Popen, marker: str) -> str:
    """The first line of the supervisor's output holding ``marker``, read as it streams."""
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            return line
    raise AssertionError(f"{marker!r} never appeared:\n{''.join(seen)}")


def child_pid(line: str) -> int:
    return int(line.rsplit(maxsplit=1)[1])


def test_output_is_streamed_prefixed_and_sigterm_stops_children_cleanly(supervise):
    proc = supervise(f"[ProcessSpec('polite', [py, '-c', {POLITE!r}])]")
    line = read_until(proc, "hello pid")  # arrives while the child still runs
    assert line.startswith("polite │ hello pid ")
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=20)[0]
    assert proc.returncode == 0, rest
    assert "polite │ got SIGTERM" in rest and "polite: exited 0" in rest
    assert not alive(child_pid(line))


def test_ctrl_c_reaches_only_the_supervisor_which_then_sends_sigterm(supervise):
    # A terminal's Ctrl-C signals its whole foreground process group: the supervisor's.
    proc = supervise(f"[ProcessSpec('polite', [py, '-c', {POLITE!r}])]", start_new_session=True)
    read_until(proc, "hello pid")
    os.killpg(proc.pid, signal.SIGINT)
    rest = proc.communicate(timeout=20)[0]
    assert proc.returncode == 0, rest
    assert "got SIGINT" not in rest
    assert "polite │ got SIGTERM" in rest


def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period(supervise):
    stubborn = (
        "import os, signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('stubborn pid', os.getpid(), flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = supervise(f"[ProcessSpec('s', [py, '-c', {stubborn!r}])]", grace=0.3)
    pid = child_pid(read_until(proc, "stubborn pid"))
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=20)[0]
    assert proc.returncode == 0, rest
    assert "s: killed after the 0.3 s grace period" in rest
    assert not alive(pid)


@pytest.mark.parametrize(
    ("death", "shown"),
    [
        ("raise SystemExit(3)", "exit=3"),
        ("os.kill(os.getpid(), signal.SIGKILL)", "exit=-9 (SIGKILL)"),
        ("raise SystemExit(0)", "exit=0"),  # a service is not supposed to end either
    ],
)
def test_a_crashing_child_is_restarted_with_backoff_while_the_others_keep_running(
    supervise, death, shown
):
    crash = f"import os, signal; print('last words', os.getpid(), flush=True); {death}"
    proc = supervise(
        f"[ProcessSpec('ok', [py, '-c', {POLITE!r}]), ProcessSpec('bad', [py, '-c', {crash!r}])]",
        policy="RestartPolicy(initial_s=0.2, max_s=0.8, stable_s=60)",
    )
    seen: list[tuple[float, str]] = []  # (when read, line), up to the 4th restart
    while sum("child restarted" in line for _, line in seen) < 4:
        line = proc.stdout.readline()
        assert line, "".join(x for _, x in seen)
        seen.append((time.monotonic(), line))
    text = "".join(line for _, line in seen)
    ok = child_pid(next(line for _, line in seen if "hello pid" in line))
    pids = [child_pid(line) for _, line in seen if "bad │ last words" in line]
    exits = [(t, line) for t, line in seen if "child exited; restarting" in line]
    starts = [t for t, line in seen if "child restarted" in line]
    for n, (_, line) in enumerate(exits, 1):
        assert f"child=bad {shown}" in line and f"restarts={n} " in line, text
    # Each crash's own last lines come before the supervisor's line about it.
    assert text.index("bad │ last words") < text.index("child exited")
    delays = [float(line.rsplit("next_delay_s=", 1)[1]) for _, line in exits]
    waited = [start - t for (t, _), start in zip(exits, starts, strict=True)]
    assert "child restarted child=bad pid=" in text
    assert delays == [0.2, 0.4, 0.8, 0.8]  # doubling, capped at max_s
    # Not sooner than the backoff (a little slack for when the lines were read).
    assert all(w >= d - 0.05 for w, d in zip(waited, delays, strict=True)), (waited, delays)
    assert len(set(pids)) == 4 and not any(alive(p) for p in pids)
    assert alive(ok)  # the system kept running
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=20)[0]
    assert proc.returncode == 0, rest
    assert "ok: exited 0" in rest and "ok  │ got SIGTERM" in rest  # padded to "bad"


def test_a_child_that_ran_stably_restarts_after_the_initial_delay_again(supervise):
    # Each run lasts longer than stable_s: exits in a row are not a crash loop.
    flaky = "import time; print('up', flush=True); time.sleep(0.5); raise SystemExit(1)"
    proc = supervise(
        f"[ProcessSpec('flaky', [py, '-c', {flaky!r}])]",
        policy="RestartPolicy(initial_s=0.1, max_s=10, stable_s=0.3)",
    )
    lines = [read_until(proc, "child exited; restarting") for _ in range(3)]
    assert [line.rsplit("next_delay_s=", 1)[1].strip() for line in lines] == ["0.1"] * 3
    assert [f"restarts={n} " in line for n, line in enumerate(lines, 1)] == [True] * 3
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0


def test_what_a_crashed_child_spawned_dies_before_it_is_restarted(supervise):
    # The grandchild stays in the child's process group; the child then dies alone.
    parent = (
        "import os, signal, subprocess, sys, time\n"
        "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print('grandchild', g.pid, flush=True)\n"
        "time.sleep(0.3); os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = supervise(
        f"[ProcessSpec('parent', [py, '-c', {parent!r}])]",
        policy="RestartPolicy(initial_s=5, max_s=5, stable_s=60)",
    )
    grandchild = child_pid(read_until(proc, "grandchild"))
    read_until(proc, "child exited; restarting")
    wait_gone(grandchild, timeout_s=2)  # killed with the group, well before the 5 s restart


def test_children_do_not_outlive_a_sigkilled_supervisor(supervise):
    proc = supervise(f"[ProcessSpec('polite', [py, '-c', {POLITE!r}])]")
    pid = child_pid(read_until(proc, "hello pid"))
    proc.kill()
    proc.communicate(timeout=10)
    wait_gone(pid)


def test_a_supervised_child_that_will_not_stop_dies_a_grace_period_after_the_supervisor(
    supervise, tmp_path
):
    # It ignores PDEATHSIG's SIGTERM, and so does its grandchild, which gets no signal anyway:
    # only the lifeline can end them.
    (tmp_path / "stubborn.py").write_text(
        "import os, signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print('pids', os.getpid(), g.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    proc = supervise(f"[ProcessSpec('s', supervised('stubborn'), {env!r})]", grace=2.0)
    child, grandchild = map(int, read_until(proc, "pids").split()[-2:])
    proc.kill()
    proc.communicate(timeout=10)
    killed_at = time.monotonic()
    assert alive(child) and alive(grandchild)  # the grace period is theirs to drain in
    wait_gone(child, timeout_s=10)
    wait_gone(grandchild, timeout_s=1)
    assert time.monotonic() - killed_at > 1.5


@pytest.fixture
def supervisor():
    sup = Supervisor(Console(file=io.StringIO(), width=200), grace_s=2.0)
    yield sup
    sup.stop_all()


def test_wait_ready_returns_once_every_ready_url_answers_200(supervisor, tmp_path):
    port = free_port()
    server = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    supervisor.start(
        ProcessSpec(
            "web", [*server, "--directory", str(tmp_path)], ready_url=f"http://127.0.0.1:{port}/"
        )
    )
    supervisor.start(ProcessSpec("plain", [sys.executable, "-c", "import time; time.sleep(60)"]))
    supervisor.wait_ready(timeout_s=20)


def test_wait_ready_fails_with_the_output_of_a_child_that_died(supervisor):
    supervisor.start(
        ProcessSpec(
            "web",
            [sys.executable, "-c", "import time; time.sleep(60)"],
            ready_url=f"http://127.0.0.1:{free_port()}/readyz",
        )
    )
    crash = "import sys; print('cannot load the model'); sys.exit(2)"
    supervisor.start(ProcessSpec("worker", [sys.executable, "-c", crash]))
    with pytest.raises(RuntimeError, match=r"(?s)worker exited with 2.*cannot load the model"):
        supervisor.wait_ready(timeout_s=20)


def test_wait_ready_times_out_with_the_output_of_the_process_not_ready(supervisor):
    never = "print('listening soon', flush=True); import time; time.sleep(60)"
    url = f"http://127.0.0.1:{free_port()}/readyz"
    supervisor.start(ProcessSpec("web", [sys.executable, "-c", never], ready_url=url))
    with pytest.raises(RuntimeError, match=rf"(?s)web not ready at {url} after 0.5 s.*soon"):
        supervisor.wait_ready(timeout_s=0.5)


def test_json_log_lines_are_shown_compactly():
    line = '{"ts": "t", "level": "info", "service": "s", "logger": "l", "msg": "hi", "n": 1}'
    assert compact(line) == "info    hi n=1"
    assert compact(line.replace('"info"', '"error"')) == "[red]error   hi n=1[/]"
    assert compact("plain [text]") == "plain \\[text]"
