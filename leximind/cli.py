"""The ``leximind`` command: run everything, or one part (web, worker, beat), and the admin chores.

With no DATABASE_URL / BROKER_URL in the environment, every subcommand uses the embedded PostgreSQL and
Redis under LEXIMIND_DATA_DIR (started on first use, shared by every process on the machine) and passes
the URLs on to the processes it starts.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from leximind.cli_accounts import cmd_create_user, cmd_reset_password, ensure_first_admin
from leximind.cli_import import cmd_import_dataset
from leximind.config import ConfigError, Settings, get_settings
from leximind.logging_setup import configure_logging
from leximind.queues import ALL_QUEUES, QUEUE_EXTRACT, QUEUE_INFER, QUEUE_MAINTENANCE, QUEUE_TRAIN

log = logging.getLogger("leximind")

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 5000
SHUTDOWN_GRACE_S = 30.0


# --------------------------------------------------------------------------------------------- services
@dataclass
class Services:
    database_url: str
    broker_url: str
    started: list[str] = field(default_factory=list)  # "postgres" / "redis" when this process started them


def prepare_services(settings: Settings) -> Services:
    """The configured URLs, else the embedded servers; exported so child processes use the same ones."""
    from leximind import services

    started = []
    database_url = settings.database_url
    if not database_url:
        was_running = _embedded_postgres_pid(settings.data_dir) is not None
        database_url = services.start_embedded_postgres(settings.data_dir)
        if not was_running:
            started.append("postgres")
    broker_url = settings.broker_url
    if not broker_url:
        was_running = _embedded_redis_pid(settings.data_dir) is not None
        broker_url = services.start_embedded_redis(settings.data_dir)
        if not was_running:
            started.append("redis")
    os.environ["DATABASE_URL"] = settings.database_url = database_url
    os.environ["BROKER_URL"] = settings.broker_url = broker_url
    os.environ.setdefault("LEXIMIND_DATA_DIR", str(settings.data_dir))
    return Services(database_url, broker_url, started)


def require_installation(settings: Settings) -> bool:
    """The admin chores work on an installation that exists: without DATABASE_URL, the embedded database must
    already be under the data folder. Otherwise a command run from another folder (LEXIMIND_DATA_DIR defaults
    to ./var) or with a mistyped LEXIMIND_DATA_DIR would start an empty PostgreSQL there and, for instance,
    create a user the running app has never heard of. False after saying so."""
    if settings.database_url or (settings.data_dir / "postgres" / "PG_VERSION").exists():
        return True
    print(f"error: no LexiMind database under {settings.data_dir}; run this in the folder where `leximind run` "
          "was started, or set LEXIMIND_DATA_DIR (or DATABASE_URL) to the installation's", file=sys.stderr)
    return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _embedded_postgres_pid(data_dir: Path) -> int | None:
    pid_file = data_dir / "postgres" / "postmaster.pid"
    if pid_file.exists():
        pid = int(pid_file.read_text().split("\n", 1)[0] or 0)
        if pid and _pid_alive(pid):
            return pid
    return None


def _embedded_redis_pid(data_dir: Path) -> int | None:
    pid_file = data_dir / "redis" / "redis.pid"
    if pid_file.exists():
        text = pid_file.read_text().strip()
        if text and _pid_alive(int(text)):
            return int(text)
    return None


def stop_embedded(settings: Settings, which: list[str]) -> None:
    """Stop the embedded servers this process started (PostgreSQL: fast shutdown; Redis: SIGTERM)."""
    for name, pid in (
        ("redis", _embedded_redis_pid(settings.data_dir)),
        ("postgres", _embedded_postgres_pid(settings.data_dir)),
    ):
        if name in which and pid is not None:
            os.kill(pid, signal.SIGINT if name == "postgres" else signal.SIGTERM)
            deadline = time.monotonic() + 20
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            log.info("stopped embedded %s", name)


# --------------------------------------------------------------------------------------------- commands
def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from db.migrate import upgrade

    services = prepare_services(settings)
    upgrade(services.database_url)
    log.info("database is at the latest schema")
    return 0


def cmd_web(args: argparse.Namespace, settings: Settings) -> int:
    prepare_services(settings)
    if args.dev:
        from webapp import create_app

        create_app().run(host=args.host, port=args.port, threaded=True)
        return 0
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"{args.host}:{args.port}",
        "--workers",
        str(args.workers),
        "--threads",
        "4",
        "--timeout",
        "120",
        "--access-logfile",
        "-",
        "--logger-class",
        "leximind.logging_setup.GunicornLogger",
        "webapp:create_app()",
    ]
    os.execv(sys.executable, command)
    return 0  # not reached


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    unknown = set(args.queues) - set(ALL_QUEUES)
    if unknown or not args.queues:  # checked before any server starts
        what = f"unknown queue(s) {sorted(unknown)}" if unknown else "no queue given"
        print(f"error: {what}; use some of {list(ALL_QUEUES)}", file=sys.stderr)
        return 2
    prepare_services(settings)
    from leximind.messaging import worker_argv
    from workers.celery_app import app

    queues = ",".join(args.queues)
    concurrency = args.concurrency or (1 if {QUEUE_INFER, QUEUE_TRAIN} & set(args.queues) else os.cpu_count())
    argv = worker_argv(queues, concurrency, args.name or queues.replace(",", "+"), args.loglevel)
    app.worker_main(argv)
    return 0


def cmd_beat(args: argparse.Namespace, settings: Settings) -> int:
    prepare_services(settings)
    from workers.celery_app import app

    app.start(["beat", "-l", args.loglevel])
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """Everything on one machine: services, migrations, first admin, web, workers for every queue, beat."""
    from db.migrate import upgrade

    services = prepare_services(settings)
    upgrade(services.database_url)
    ensure_first_admin(services.database_url)
    me = [sys.executable, "-m", "leximind.cli"]
    extract_concurrency = str(args.extract_workers or max(1, (os.cpu_count() or 2) // 2))
    children = Supervisor(
        [
            ("web", me + ["web", "--host", args.host, "--port", str(args.port), "--workers", "2"]),
            (
                "extract",
                me + ["worker", "-Q", f"{QUEUE_EXTRACT},{QUEUE_MAINTENANCE}", "-c", extract_concurrency],
            ),
            ("infer", me + ["worker", "-Q", QUEUE_INFER, "-c", "1"]),
            ("train", me + ["worker", "-Q", QUEUE_TRAIN, "-c", "1"]),
            ("beat", me + ["beat"]),
        ]
    )
    print(f"LexiMind is starting on http://{args.host}:{args.port}  (Ctrl-C stops everything)", flush=True)
    try:
        children.run()
    finally:
        if not args.keep_services:
            stop_embedded(settings, services.started)
    return 0


class Supervisor:
    """Starts the child processes, restarts one that dies, and stops them all on Ctrl-C or SIGTERM."""

    def __init__(self, commands: list[tuple[str, list[str]]]):
        self.commands = dict(commands)
        self.procs: dict[str, subprocess.Popen] = {}
        self.stopping = False

    def run(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._stop)
        for name in self.commands:
            self._start(name)
        restarts: dict[str, list[float]] = {name: [] for name in self.commands}
        try:
            while not self.stopping:
                time.sleep(0.5)
                for name, proc in list(self.procs.items()):
                    if proc.poll() is None or self.stopping:
                        continue
                    recent = [t for t in restarts[name] if time.monotonic() - t < 60] + [time.monotonic()]
                    restarts[name] = recent
                    if len(recent) > 5:
                        log.error(
                            "%s exited %d times within a minute (last code %s); stopping",
                            name,
                            len(recent),
                            proc.returncode,
                        )
                        self.stopping = True
                        break
                    log.warning("%s exited with code %s; restarting it", name, proc.returncode)
                    time.sleep(1)
                    self._start(name)
        finally:
            self._shutdown()

    def _start(self, name: str) -> None:
        self.procs[name] = subprocess.Popen(self.commands[name])

    def _stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _shutdown(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # Celery: warm shutdown; gunicorn: graceful
        deadline = time.monotonic() + SHUTDOWN_GRACE_S
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time; killing it", name)
                proc.kill()
                proc.wait()


# --------------------------------------------------------------------------------------------- parser
def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="leximind", description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="start everything: embedded services, migrations, web, workers, beat")
    run.add_argument("--host", default=DEFAULT_HOST)
    run.add_argument("--port", type=int, default=DEFAULT_PORT)
    run.add_argument(
        "--extract-workers", type=int, default=None, help="extraction processes (default: cores/2)"
    )
    run.add_argument("--keep-services", action="store_true", help="leave embedded PostgreSQL/Redis running")
    run.set_defaults(func=cmd_run)

    web = sub.add_parser("web", help="serve the web app and API (gunicorn)")
    web.add_argument("--host", default=DEFAULT_HOST)
    web.add_argument("--port", type=int, default=DEFAULT_PORT)
    web.add_argument("--workers", type=int, default=2)
    web.add_argument("--dev", action="store_true", help="Flask's development server instead of gunicorn")
    web.set_defaults(func=cmd_web)

    worker = sub.add_parser("worker", help="a Celery worker for some queues")
    worker.add_argument(
        "-Q",
        "--queues",
        type=lambda s: [q for q in s.split(",") if q],
        default=list(ALL_QUEUES),
        help=f"comma-separated, from {','.join(ALL_QUEUES)} (default: all)",
    )
    worker.add_argument(
        "-c",
        "--concurrency",
        type=int,
        default=None,
        help="processes (default: 1 for infer/train, else the number of cores)",
    )
    worker.add_argument("-n", "--name", default=None)
    worker.add_argument("-l", "--loglevel", default="info")
    worker.set_defaults(func=cmd_worker)

    beat = sub.add_parser("beat", help="the scheduler that runs the sweeper")
    beat.add_argument("-l", "--loglevel", default="info")
    beat.set_defaults(func=cmd_beat)

    sub.add_parser("migrate", help="bring the database to the latest schema").set_defaults(func=cmd_migrate)

    user = sub.add_parser("create-user", help="create a user (or an admin) and print an API token")
    user.add_argument("--email", required=True)
    user.add_argument("--admin", action="store_true")
    user.add_argument("--password", default=None, help="default: generate one and print it")
    user.set_defaults(func=cmd_create_user)

    reset = sub.add_parser("reset-password", help="give an account a new password and sign out its browsers")
    reset.add_argument("--email", required=True)
    reset.add_argument("--password", default=None, help="default: generate one and print it")
    reset.set_defaults(func=cmd_reset_password)

    dataset = sub.add_parser(
        "import-dataset", help="upload a folder of files, or the rows of a .csv/.jsonl, for processing"
    )
    dataset.add_argument("path")
    dataset.add_argument("--owner", required=True, help="email of the user the documents belong to")
    dataset.add_argument(
        "--text-column",
        default=None,
        help="CSV: column index (default: all but the first, joined); JSONL: key (default: text)",
    )
    dataset.add_argument("--limit", type=positive_int, default=None, help="import at most this many")
    dataset.add_argument("--per-job", type=positive_int, default=500, help="documents per job")
    dataset.set_defaults(func=cmd_import_dataset)

    try:
        from leximind.cli_model import register
    except ImportError:
        pass  # the model commands are not installed in this build
    else:
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    configure_logging("leximind")  # text on a terminal, JSON lines otherwise; secrets redacted
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if getattr(args, "func", None) is None:
        return 2
    return int(args.func(args, settings) or 0)


if __name__ == "__main__":
    sys.exit(main())
