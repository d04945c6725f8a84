"""The ``benchctl`` command line: each command parses, calls a library function, prints.

Errors from the library are typed (bench_protocol.errors) and become one line and an exit code
here, never a traceback.
"""

from __future__ import annotations

import signal
import sys

import typer

from bench_protocol.errors import BenchError

from .commands import config, distributed, history, local  # noqa: F401  (they add their commands to app)
from .options import app, echo_err


class Interrupted(BaseException):
    """Ctrl-C, raised past Click (which would swallow KeyboardInterrupt) and past library code
    that turns ordinary exceptions into error records."""


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"benchctl {version('benchctl')}")
        except PackageNotFoundError:
            typer.echo("benchctl (not installed)")
        raise typer.Exit(0)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    """Benchmark model inference across devices and hosts; report the speedups.

    Exit codes: 0 done, 1 a regression beyond noise (compare), 2 bad input, 3 broker or store
    unreachable, 4 no live worker for a pool, 5 a run incomplete at the timeout, 6 a run of which
    no cell was measured, 130 interrupted.
    """


def _on_sigint(signum, frame):
    raise Interrupted()


def main() -> None:
    # Ctrl-C and a polite kill both unwind: a report being written removes its staging folder.
    signal.signal(signal.SIGINT, _on_sigint)
    signal.signal(signal.SIGTERM, _on_sigint)
    try:
        code = app(standalone_mode=False)  # click returns Exit codes instead of raising here
        sys.exit(code if isinstance(code, int) else 0)
    except BenchError as exc:
        from bench_protocol.broker import redact

        echo_err(redact(str(exc)))
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, Interrupted) as exc:
        # What was kept is the command's to say (run names its file); a distributed run's records
        # stay in the store.
        echo_err(str(exc) if str(exc) else "interrupted; every finished record stays in the store "
                 "(collect the run again to pick it up)")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        echo_err("aborted")
        sys.exit(1)
    except Exception as exc:  # usage errors arrive here in non-standalone mode
        if isinstance(exc, _usage_errors()):
            if exc.format_message():  # bare `benchctl` has shown its help and has nothing to add
                echo_err(exc.format_message())
            sys.exit(exc.exit_code)
        import redis

        if isinstance(exc, redis.RedisError):  # a store error that no library call turned into a BrokerError
            from bench_protocol.broker import store_error

            echo_err(store_error(exc, "the store"))
            sys.exit(3)
        raise


def _usage_errors() -> tuple[type, ...]:
    """Click's usage errors; newer Typer releases carry their own copy of Click."""
    found = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(__import__(name, fromlist=["ClickException"]).ClickException)
        except ImportError:
            pass
    return tuple(found)


if __name__ == "__main__":
    main()
