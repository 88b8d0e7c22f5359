"""``python -m include.serving``: the champion-following model server (uvicorn).

Settings come from the environment (``settings.py``); the flags set where it listens, and may
override the tracking URI. Exit code 2: a setting is invalid (the message names it).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from include.serving.settings import SettingsError, ServingSettings

log = logging.getLogger("include.serving")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m include.serving", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = ServingSettings.from_environment(tracking_uri=args.tracking_uri)
    except SettingsError as exc:
        print(f"model server: {exc}", file=sys.stderr)
        return 2
    missing = _missing_sqlite_store(settings.tracking_uri)
    if missing:
        print(f"model server: no MLflow database at {missing} (from tracking URI {settings.tracking_uri}); "
              "`make demo` writes the embedded default's", file=sys.stderr)
        return 2
    return serve(settings, args.host, args.port, args.log_level)


def _missing_sqlite_store(uri: str) -> str | None:
    """The path of a SQLite store that does not exist (MLflow would create an empty one and serve nothing)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = Path(uri.removeprefix("sqlite:///"))
    return None if path.exists() else str(path)


def serve(settings: ServingSettings, host: str, port: int, log_level: str) -> int:
    """Follow the registry and serve until stopped (SIGINT/SIGTERM)."""
    # One native thread per model call: requests run side by side on few cores, and OpenMP's
    # spin-waiting threads would only compete with them (the validation's latency probe does the same).
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
    import mlflow
    import uvicorn
    from mlflow import MlflowClient

    from include.serving.app import create_app
    from include.serving.failures import FailureReporter, audit_trail
    from include.serving.following import RegistryFollower
    from include.serving.metrics import ServingMetrics

    mlflow.set_tracking_uri(settings.tracking_uri)  # models:/ URIs resolve through it
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    metrics = ServingMetrics()
    reporter = FailureReporter(client, audit_trail(client), metrics, settings.model_name)
    follower = RegistryFollower(client, settings, metrics, reporter)
    app = create_app(settings, follower, metrics)
    log.info(
        "serving %s@champion from %s on http://%s:%d (poll %g s, canary share %g, mode %s)",
        settings.model_name, settings.tracking_uri, host, port, settings.poll_seconds, settings.canary_share, settings.mode,
    )
    follower.start()
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
    finally:
        follower.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
