"""``edgesim._signals``: SIGTERM and SIGHUP stop a run as Ctrl-C does, so its cleanup
runs (``stoppable`` for Trio, ``interrupted_by_stop_signals`` for plain code); results
and errors pass through as themselves."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import trio
import trio.lowlevel

from edgesim._signals import interrupted_by_stop_signals, stoppable


def test_the_result_and_errors_come_out_as_themselves() -> None:
    async def answer(x: int) -> int:
        await trio.lowlevel.checkpoint()
        return x * 2

    async def broken() -> None:
        await trio.lowlevel.checkpoint()
        raise ValueError("its own")

    assert trio.run(stoppable, answer, 21) == 42
    with pytest.raises(ValueError, match="its own"):
        trio.run(stoppable, broken)


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_a_stop_signal_interrupts_the_run_and_its_cleanup_runs(signame: str) -> None:
    signum = getattr(signal, signame)
    before = signal.getsignal(signum)
    cleaned: list[bool] = []

    async def long_run() -> None:
        try:
            os.kill(os.getpid(), signum)  # at once: the signal is received from the start
            await trio.sleep(30)  # cancelled at once by the signal's KeyboardInterrupt
        finally:
            cleaned.append(True)

    with pytest.raises(KeyboardInterrupt):
        trio.run(stoppable, long_run)
    assert cleaned == [True]
    assert signal.getsignal(signum) == before  # the run's handler is gone with it


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_held_signals_wait_for_the_block_and_handlers_come_back(signame: str) -> None:
    from edgesim._signals import held

    sig = getattr(signal, signame)
    before = signal.getsignal(sig)
    done = []
    with held() as came:
        assert not came()
        signal.raise_signal(sig)  # would be KeyboardInterrupt, or the end of the process
        done.append("finished")
        assert came()
    assert done == ["finished"]
    assert signal.getsignal(sig) == before


def test_ctrl_c_while_the_report_is_written_still_writes_it(
    tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ctrl-C after the run had finished used to abort the writing: no file at all.
    import json
    from pathlib import Path

    from click.testing import CliRunner

    import edgesim.report as rep
    from edgesim.cli import cli

    real = rep.write_csv

    def interrupted_write(report: dict[str, object], directory: str) -> list[Path]:
        signal.raise_signal(signal.SIGINT)  # as the user presses Ctrl-C
        return real(report, directory)

    monkeypatch.setattr(rep, "write_csv", interrupted_write)
    out = Path(tmp_path)
    topo = out / "t.toml"
    topo.write_text(
        '[[regions]]\nname = "eu"\n[[sites]]\nname = "a.test"\n[sites.catalog]\nobjects = 20\n'
        '[traffic]\nduration = "20s"\nwarmup = "0s"\npeak_rps = 20\n'
    )
    args = ["run", str(topo), "--quiet", "--json", str(out / "r.json"), "--csv", str(out / "csv")]
    args += ["--html", str(out / "r.html")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 130, result.output
    assert "stopped after the run had finished: the report is whole" in result.stderr
    report = json.loads((out / "r.json").read_text())
    assert report["meta"]["partial"] is False and report["totals"]["requests"] > 100
    assert (out / "csv" / "summary.csv").is_file() and (out / "r.html").is_file()


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_a_stop_signal_interrupts_plain_code_and_the_old_handler_comes_back(signame: str) -> None:
    signum = getattr(signal, signame)
    before = signal.getsignal(signum)
    cleaned: list[bool] = []

    def long_run() -> None:
        with interrupted_by_stop_signals():
            try:
                os.kill(os.getpid(), signum)
                time.sleep(30)  # interrupted at once
            finally:
                cleaned.append(True)

    with pytest.raises(KeyboardInterrupt):
        long_run()
    assert cleaned == [True]
    assert signal.getsignal(signum) == before
    # nothing changes when nothing is interrupted either
    with interrupted_by_stop_signals():
        assert signal.getsignal(signum) != before
    assert signal.getsignal(signum) == before


def test_outside_the_main_thread_plain_code_just_runs() -> None:
    before = signal.getsignal(signal.SIGTERM)
    seen: list[object] = []

    def body() -> None:
        with interrupted_by_stop_signals():
            seen.append(signal.getsignal(signal.SIGTERM))

    t = threading.Thread(target=body)
    t.start()
    t.join(timeout=10)
    assert seen == [before]


def test_ctrl_c_while_the_cli_is_imported_is_one_line_and_status_130() -> None:
    # The script imports edgesim.cli inside edgesim._entry.main; a Ctrl-C that lands
    # during that import (made certain here by an import hook) was a traceback.
    import subprocess
    import sys

    code = (
        "import sys\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'edgesim.cli':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Interrupt())\n"
        "from edgesim._entry import main\n"
        "main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, "-h"], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stderr, proc.stdout) == (130, "interrupted\n", "")
    # it is the installed script's entry point
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="edgesim")
    assert script.value == "edgesim._entry:main"
    # without the interrupt, the same entry point runs the command line
    proc = subprocess.run(
        [sys.executable, "-c", "from edgesim._entry import main; main()", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and proc.stdout.startswith("edgesim, version "), proc.stderr
