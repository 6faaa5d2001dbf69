"""The installed `vaetraj` program's first step. Loading the command line takes a
moment (typer, rich, every command's options), and a signal then was lost, or a
traceback and a death by signal (130). From here on a signal is recorded: before the
command starts it ends the program (one line, exit 75, nothing written), during the
command the command's own handling takes it (vaetraj.cli._runtime.run_command), and
after the command has written its outputs it is ignored (the outputs are complete)."""

from __future__ import annotations

import signal
import sys

from vaetraj._interrupt import request_stop, stop_requested

EXIT_INTERRUPTED = 75  # vaetraj.errors' (not imported here: this runs first)


def _record(signum, frame) -> None:
    request_stop()


def main() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not signal.SIG_IGN:  # a shell's background job: left
            signal.signal(sig, _record)
    from vaetraj.cli.app import main as run

    if stop_requested():
        print("error: interrupted; no output was written", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    run()
