"""Registry reads and writes shared by the operators, the sensor and the reviewer tools.

Every function takes a plain ``MlflowClient``; nothing here knows about Airflow.
"""

from __future__ import annotations

import logging
import math
import posixpath
import time
from urllib.parse import urlparse

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, RESOURCE_DOES_NOT_EXIST, ErrorCode

from include.governance import lifecycle as lc

from include.governance.names import check_alias, check_model_name

log = logging.getLogger(__name__)

_READY = "READY"
_FAILED_REGISTRATION = "FAILED_REGISTRATION"
# The holdout metrics a version is judged on, all fractions in [0, 1]: a run with a value that is
# NaN, infinite or out of range is broken evidence and is not registered (validation fails a
# non-finite value too, should one appear later). SQL stores keep +-inf as +-1.8e308, a finite
# number that would pass every minimum: hence the range check.
EVIDENCE_METRICS = lc.EVIDENCE_METRICS


class RegistryError(RuntimeError):
    """The registry is not in the state an operation needs; the message names what was seen."""


class RegistrationRefused(RegistryError):
    """The run's evidence cannot be registered as it is; a retry cannot change that."""


class VersionNotFound(RegistryError, LookupError):
    """The registered model or model version named does not exist."""


class ReadBackError(RegistryError):
    """An alias did not read back as the step that moved it expected (promotion, rollback)."""


_NOT_FOUND = ErrorCode.Name(RESOURCE_DOES_NOT_EXIST)
_ALREADY_EXISTS = ErrorCode.Name(RESOURCE_ALREADY_EXISTS)


def is_not_found(exc: MlflowException) -> bool:
    """Whether MLflow answered that the model, version or run does not exist."""
    return getattr(exc, "error_code", None) == _NOT_FOUND


def _error_code(exc: MlflowException) -> str:
    return str(getattr(exc, "error_code", ""))


def read_back_alias(client: MlflowClient, model_name: str, alias: str, expected: str) -> None:
    """Check that ``@alias`` now points at ``expected``.

    :raises ReadBackError: it points elsewhere (or nowhere).
    """
    seen = get_aliases(client, model_name).get(alias)
    if seen != str(expected):
        raise ReadBackError(f"@{alias} of {model_name} reads back as {seen}, expected {expected}")


def get_aliases(client: MlflowClient, model_name: str) -> dict[str, str]:
    """Return ``{alias: version}`` for a registered model ({} when the model does not exist).

    One call reads every alias: ``search_model_versions`` does not fill aliases on SQL stores.
    """
    check_model_name(model_name)
    try:
        model = client.get_registered_model(model_name)
    except MlflowException as exc:
        if is_not_found(exc):
            return {}
        raise
    return {alias: str(version) for alias, version in (model.aliases or {}).items()}


def alias_version(client: MlflowClient, model_name: str, alias: str) -> str | None:
    """The version an alias points at, or None when the alias (or the model) is not set."""
    check_alias(alias)
    return get_aliases(client, model_name).get(alias)


def find_version_for_run(client: MlflowClient, model_name: str, run_id: str) -> ModelVersion | None:
    """The version registered from ``run_id``, if any (the oldest when several exist)."""
    _check_quoting(model_name=model_name, run_id=run_id)
    found = client.search_model_versions(f"name = '{model_name}' and run_id = '{run_id}'")
    if not found:
        return None
    return min(found, key=lambda mv: int(mv.version))


def register_version(
    client: MlflowClient,
    *,
    model_name: str,
    model_uri: str,
    run_id: str,
    tags: dict[str, str],
    description: str | None = None,
    await_ready_seconds: float = 300,
) -> tuple[ModelVersion, bool]:
    """Create a version from a run's model, or return the one a previous try created.

    Idempotent: a retried task finds the version made from the same run instead of adding one.
    The artifact is checked first, so no version ever points at a missing model.

    :param model_uri: the logged model's URI (``models:/m-...`` or ``runs:/<run>/model``).
    :param run_id: the MLflow run the model was logged in.
    :param tags: lineage tags to set on the version (also re-applied to an existing one).
    :return: the version and whether this call created it.
    :raises InvalidName: the model name is one the registry would refuse.
    :raises RegistrationRefused: an evidence metric of the run is NaN or infinite.
    """
    check_model_name(model_name)
    existing = find_version_for_run(client, model_name, run_id)
    if existing is not None:
        existing = _one_version_per_run(client, model_name, run_id, tags)
        log.info("Run %s is already registered as %s v%s", run_id, model_name, existing.version)
        for key, value in tags.items():
            if existing.tags.get(key) != value:
                client.set_model_version_tag(model_name, existing.version, key, value)
        return client.get_model_version(model_name, existing.version), False

    metric_problem = evidence_metric_problem(client, run_id)
    if metric_problem:
        raise RegistrationRefused(f"{metric_problem}; refusing to register {model_name} from it")
    source, model_id = _resolve_model_source(client, model_uri, run_id)
    try:
        client.create_registered_model(model_name)
    except MlflowException as exc:
        if _error_code(exc) != _ALREADY_EXISTS:
            raise
    version = client.create_model_version(
        name=model_name,
        source=source,
        run_id=run_id,
        tags=tags,
        description=description,
        model_id=model_id,
        await_creation_for=0,
    )
    version = _one_version_per_run(client, model_name, run_id, tags) or version
    version = _await_ready(client, model_name, version.version, await_ready_seconds)
    log.info("Registered %s v%s from run %s", model_name, version.version, run_id)
    return version, True


def _one_version_per_run(client: MlflowClient, model_name: str, run_id: str, tags: dict[str, str]) -> ModelVersion | None:
    """Keep the run's oldest version; delete newer versions of the same run nobody has used yet.

    The registry has no idempotency key, and MLflow's client re-sends a POST whose answer was
    lost (the server restarted mid-request): one create can leave two versions of one run, as
    can two tries of a task racing. Every caller keeps the oldest, so they converge on one. A
    newer duplicate is deleted only while it carries no alias and no tags beyond ``tags`` (the
    registration's own); one that was validated or aliased is left, with a warning.
    """
    found = sorted(
        client.search_model_versions(f"name = '{model_name}' and run_id = '{run_id}'"), key=lambda mv: int(mv.version)
    )
    if len(found) < 2:
        return found[0] if found else None
    aliased = set(get_aliases(client, model_name).values())
    for duplicate in found[1:]:
        if str(duplicate.version) in aliased or not set(duplicate.tags) <= set(tags):
            log.warning("%s v%s duplicates v%s (run %s) but is already in use; left in place",
                        model_name, duplicate.version, found[0].version, run_id)
            continue
        log.warning("Deleting %s v%s: a duplicate of v%s from run %s (a re-sent or concurrent create)",
                    model_name, duplicate.version, found[0].version, run_id)
        try:
            client.delete_model_version(model_name, str(duplicate.version))
        except MlflowException as exc:
            if not is_not_found(exc):  # another caller deleted it first
                raise
    return found[0]


def _resolve_model_source(client: MlflowClient, model_uri: str, run_id: str) -> tuple[str, str | None]:
    """Check that the model's MLmodel file exists and return (source, logged model id)."""
    if model_uri.startswith("models:/m-"):
        model_id = model_uri.removeprefix("models:/")
        logged = client.get_logged_model(model_id)
        if logged.source_run_id and logged.source_run_id != run_id:
            raise RegistryError(
                f"logged model {model_id} comes from run {logged.source_run_id}, not run {run_id}"
            )
        artifact_uri = logged.artifact_location
        # The storage location, not models:/...: MLflow's SQL registry store resolves a models:/
        # source through the process-global tracking URI, which may be another store.
        source = artifact_uri
    elif model_uri.startswith(f"runs:/{run_id}/"):
        model_id = None
        path = model_uri.removeprefix(f"runs:/{run_id}/").strip("/")
        artifact_uri = f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/{path}"
        source = model_uri
    else:
        raise RegistryError(
            f"model URI {model_uri!r} is neither a logged model (models:/m-...) nor a model of "
            f"run {run_id} (runs:/{run_id}/...)"
        )
    problem = artifact_problem(client, artifact_uri, model_uri)
    if problem:
        raise RegistryError(f"{problem}; refusing to register a version that points at it")
    return source, model_id


def evidence_metric_problem(client: MlflowClient, run_id: str) -> str | None:
    """Why the run's evidence metrics cannot be judged (NaN, infinite or outside 0..1), or None.

    A metric the run did not log is no problem here: validation fails it as "not logged".
    """
    metrics = client.get_run(run_id).data.metrics
    bad = {
        name: metrics[name]
        for name in EVIDENCE_METRICS
        if name in metrics and not (math.isfinite(metrics[name]) and 0.0 <= metrics[name] <= 1.0)
    }
    if not bad:
        return None
    listed = ", ".join(f"{name}={value}" for name, value in bad.items())
    return f"run {run_id} logged metric(s) that are not finite fractions in [0, 1]: {listed}"


def source_problem(client: MlflowClient, mv: ModelVersion) -> str | None:
    """Why a version's source lies outside its run's artifacts, or None when it lies inside.

    A version may be created by any MLflow client with any source (MLflow itself accepts
    ``file:///anywhere``); validation must not load, and so execute, a model from outside the
    store. Inside means: ``runs:/<its run>/...``, ``models:/m-...`` of a model its run logged,
    or a URI under its run's artifact URI or under the artifact location of that logged model.
    """
    what = f"{mv.name} v{mv.version}"
    source = mv.source or ""
    if not mv.run_id:
        return f"{what} has no run, so its source {source!r} cannot be traced to the artifact store"
    if source.startswith("runs:/"):
        run_part, _, path = source.removeprefix("runs:/").partition("/")
        if run_part != mv.run_id or ".." in path.split("/"):
            return f"{what} source {source!r} is not an artifact of its own run {mv.run_id}"
        return None
    if source.startswith("models:/") and not source.removeprefix("models:/").startswith("m-"):
        return f"{what} source {source!r} points at another registered model, not at its run's artifacts"
    run = client.get_run(mv.run_id)
    # The models the run logged (run outputs): the SQL registry does not keep a version's model_id.
    outputs = getattr(run, "outputs", None)
    logged_ids = [output.model_id for output in (getattr(outputs, "model_outputs", None) or [])]
    if source.startswith("models:/"):
        if source.removeprefix("models:/").strip("/") in logged_ids:
            return None
        return f"{what} source {source!r} is not a model logged by its run {mv.run_id}"
    roots = [run.info.artifact_uri]
    logged_models = (_logged_model(client, model_id) for model_id in logged_ids)
    roots += [logged.artifact_location for logged in logged_models if logged is not None]
    if any(_within(source, root) for root in roots if root):
        return None
    return (
        f"{what} source {source!r} is outside the artifact store of its run {mv.run_id} "
        f"(expected under {' or '.join(map(repr, filter(None, roots)))}); refusing to load a model from there"
    )


def _logged_model(client: MlflowClient, model_id: str):
    try:
        return client.get_logged_model(model_id)
    except MlflowException as exc:
        if is_not_found(exc):
            return None
        raise


def _within(uri: str, root: str) -> bool:
    """Whether ``uri`` names ``root`` or a path below it (after resolving '.' and '..')."""
    target, base = urlparse(uri), urlparse(root)
    # A bare local path and a file:// URI name the same place.
    schemes = {target.scheme or "file", base.scheme or "file"}
    if len(schemes) != 1 or target.netloc != base.netloc:
        return False
    path, prefix = posixpath.normpath(target.path or "/"), posixpath.normpath(base.path or "/")
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def artifact_problem(client: MlflowClient, artifact_uri: str, what: str) -> str | None:
    """Why the model at ``artifact_uri`` cannot be loaded, or None when its MLmodel is there.

    Connection errors of the artifact store propagate: they are faults to retry, not verdicts.
    """
    import mlflow.artifacts

    files = mlflow.artifacts.list_artifacts(artifact_uri=artifact_uri, tracking_uri=client.tracking_uri)
    names = {f.path.rsplit("/", 1)[-1] for f in files}
    if "MLmodel" not in names:
        return f"{what} has no MLmodel file at {artifact_uri} (artifact missing or deleted)"
    return None


def model_artifact_problem(client: MlflowClient, mv: ModelVersion) -> str | None:
    """Why a registered version's model cannot be loaded, or None when its artifact is there."""
    uri = client.get_model_version_download_uri(mv.name, mv.version)
    return artifact_problem(client, uri, f"{mv.name} v{mv.version}")


def _await_ready(client: MlflowClient, model_name: str, version: str, timeout: float) -> ModelVersion:
    deadline = time.monotonic() + timeout
    while True:
        mv = client.get_model_version(model_name, version)
        if mv.status == _READY:
            return mv
        if mv.status == _FAILED_REGISTRATION:
            raise RegistryError(
                f"{model_name} v{version} failed registration: {mv.status_message or 'no message'}"
            )
        if time.monotonic() > deadline:
            raise RegistryError(
                f"{model_name} v{version} still {mv.status} after {timeout:.0f} s"
            )
        time.sleep(1)


def set_tags(client: MlflowClient, model_name: str, version: str, tags: dict[str, str]) -> None:
    """Set several tags on one version.

    MLflow's SQL store writes a tag as read-then-insert, so two writers of the same new tag race
    and the loser gets a unique-constraint error. When the tag exists after such a failure, the
    write is repeated once, now as an update; any other failure propagates.
    """
    for key, value in tags.items():
        try:
            client.set_model_version_tag(model_name, version, key, str(value))
        except MlflowException:
            if key not in client.get_model_version(model_name, str(version)).tags:
                raise
            log.info("Tag %s of %s v%s was written concurrently; writing it again", key, model_name, version)
            client.set_model_version_tag(model_name, version, key, str(value))


def set_alias(client: MlflowClient, model_name: str, alias: str, version: str | int) -> None:
    """Point an alias at a version, surviving a concurrent first write of the same alias.

    Like tags, a new alias is written as read-then-insert; the loser of a race retries once as an
    update when the alias exists by then.
    """
    check_model_name(model_name)
    check_alias(alias)
    try:
        client.set_registered_model_alias(model_name, alias, str(version))
    except MlflowException:
        if alias not in get_aliases(client, model_name):
            raise
        log.info("Alias @%s of %s was written concurrently; writing it again", alias, model_name)
        client.set_registered_model_alias(model_name, alias, str(version))


def _check_quoting(**values: str) -> None:
    """Refuse values that would break out of a registry filter string."""
    for name, value in values.items():
        if not value or "'" in value or "\\" in value:
            raise ValueError(f"{name} {value!r} is empty or contains a quote or backslash")


def require_version(client: MlflowClient, model_name: str, version: str | int) -> ModelVersion:
    """Fetch a version.

    :raises VersionNotFound: naming the version, when it (or its model) does not exist.
    """
    check_model_name(model_name)
    try:
        return client.get_model_version(model_name, str(version))
    except MlflowException as exc:
        if is_not_found(exc):
            raise VersionNotFound(f"model version {model_name} v{version} does not exist") from None
        raise


def require_model(client: MlflowClient, model_name: str):
    """Fetch a registered model.

    :raises VersionNotFound: naming the model, when it does not exist.
    """
    check_model_name(model_name)
    try:
        return client.get_registered_model(model_name)
    except MlflowException as exc:
        if is_not_found(exc):
            raise VersionNotFound(f"registered model {model_name} does not exist") from None
        raise


