"""The Ray Serve config file: which model every replica holds, and how many replicas.

A YAML (or JSON) file, validated by pydantic; an unknown key is refused with the file and
the key's path named, never ignored. Example (``examples/ray_serve.yaml``):

.. code-block:: yaml

    model:
      uri: "gguf:/models/SmolLM2-135M-Instruct.Q4_1.gguf"   # "default": the embedded model
      sha256: "…"          # optional: every replica checks the file before loading it
      size: 98061728       # optional: the same, cheaper
      load: {n_ctx: 2048, n_threads: 1}
    deployment:
      num_replicas: 2      # or autoscaling: {min_replicas: 1, max_replicas: 4, …}
      num_cpus: 1
    http:
      host: 127.0.0.1
      port: 8000
      api_key_env: SETRAF_INGRESS_KEY   # required when host is not a loopback address
      max_body_bytes: 1048576           # 413 beyond
      request_timeout_s: 300            # 504 beyond
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from langchain_setraf.serve.ingress_policy import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_REQUEST_TIMEOUT_S,
    IngressPolicy,
)

__all__ = [
    "AutoscalingConfig",
    "DeploymentConfig",
    "HTTPConfig",
    "ModelConfig",
    "ModelIdentityError",
    "RayServeConfig",
    "RayServeConfigError",
    "is_loopback",
    "load_config",
]

#: Shortest API key accepted (a key is a secret, not a password to remember).
MIN_API_KEY_LENGTH = 16

#: Backends whose model is a local file or directory (its identity can be checked).
_FILE_BACKENDS = ("auto", "gguf", "transformers", "llama-server")


class RayServeConfigError(ValueError):
    """The config file is missing, unreadable, not YAML/JSON, or does not fit the schema."""


class ModelIdentityError(RuntimeError):
    """The model file on this node is not the one the config names (size or sha256)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(_Strict):
    """The one model every replica holds."""

    uri: str = "default"
    """``<backend>:<path>`` as ``init_chat_model`` takes it (``gguf:``, ``transformers:``,
    ``llama-server:``, ``auto:`` or a bare path), or ``"default"`` for the embedded
    SmolLM2-135M-Instruct GGUF. The path must exist on every node that runs a replica
    (the same path everywhere, or shared storage)."""
    name: str | None = None
    """The model name served at ``/v1/models`` and accepted in requests (default: the
    file's name)."""
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    """Expected SHA-256 of the model file; each replica checks it before loading."""
    size: int | None = Field(default=None, ge=0)
    """Expected size in bytes of the model file; each replica checks it before loading."""
    load: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments of the chat/LLM classes (load options and sampling defaults:
    ``n_ctx``, ``n_threads``, ``server``, ``quantization``, ``temperature``…). The classes
    refuse an unknown one when the replica starts."""

    @model_validator(mode="after")
    def _check_identity_needs_file(self) -> ModelConfig:
        if (self.sha256 or self.size is not None) and self.backend_name not in _FILE_BACKENDS:
            raise ValueError(
                f"sha256/size check a local file; backend {self.backend_name!r} has none"
            )
        return self

    @property
    def backend_name(self) -> str:
        """The backend part of :attr:`uri` (``auto`` for a bare path or ``default``)."""
        if self.uri == "default":
            return "gguf"
        name, sep, _ = self.uri.partition(":")
        if not sep or "/" in name or "\\" in name:
            return "auto"
        return name

    def resolved_uri(self) -> str:
        """:attr:`uri` with ``default`` replaced by the embedded model's path."""
        if self.uri == "default":
            from langchain_setraf.models import default_gguf_path

            return f"gguf:{default_gguf_path()}"
        return self.uri

    def local_path(self) -> Path | None:
        """The model file or directory this config names, when the backend reads one."""
        if self.backend_name not in _FILE_BACKENDS:
            return None
        uri = self.resolved_uri()
        name, sep, rest = uri.partition(":")
        return Path(rest if sep and "/" not in name else uri)

    def served_name(self) -> str:
        """The name clients use in ``model`` (``name``, else the file's name, else the URI)."""
        if self.name:
            return self.name
        path = self.local_path()
        return path.name if path is not None else self.uri

    def verify_identity(self) -> None:
        """Check the model file against ``size``/``sha256`` (no-op when neither is set).

        Raises:
            ModelIdentityError: missing file, or size/hash differs (both values named).
        """
        if self.sha256 is None and self.size is None:
            return
        path = self.local_path()
        assert path is not None  # the validator refused identity checks on non-file backends
        node = os.uname().nodename
        if not path.is_file():
            raise ModelIdentityError(
                f"model file {path} does not exist on node {node} (every node that runs a "
                "replica needs it at the same path, or on shared storage)"
            )
        actual_size = path.stat().st_size
        if self.size is not None and actual_size != self.size:
            raise ModelIdentityError(
                f"model file {path} on node {node} has {actual_size} bytes; the config "
                f"expects {self.size}"
            )
        if self.sha256 is not None:
            digest = file_sha256(path)
            if digest != self.sha256.lower():
                raise ModelIdentityError(
                    f"model file {path} on node {node} has sha256 {digest}; the config "
                    f"expects {self.sha256.lower()}"
                )


class AutoscalingConfig(_Strict):
    """Ray Serve autoscaling bounds (replicas follow the ongoing requests)."""

    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=2, ge=1)
    target_ongoing_requests: float = Field(default=2.0, gt=0)
    """Ongoing requests per replica that the autoscaler aims for."""
    upscale_delay_s: float = Field(default=2.0, ge=0)
    downscale_delay_s: float = Field(default=30.0, ge=0)
    metrics_interval_s: float | None = Field(default=None, gt=0)
    """How often replicas report their load (Ray's default when unset)."""
    look_back_period_s: float | None = Field(default=None, gt=0)
    """Window the load is averaged over (Ray's default when unset)."""

    @model_validator(mode="after")
    def _check_bounds(self) -> AutoscalingConfig:
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"max_replicas ({self.max_replicas}) < min_replicas ({self.min_replicas})"
            )
        return self

    def to_ray(self) -> dict[str, Any]:
        """The ``autoscaling_config`` dict Ray Serve takes."""
        return self.model_dump(exclude_none=True)


class DeploymentConfig(_Strict):
    """Replicas: a fixed count, or autoscaling bounds (not both)."""

    num_replicas: int | None = Field(default=None, ge=1)
    autoscaling: AutoscalingConfig | None = None
    max_ongoing_requests: int = Field(default=4, ge=1)
    """Requests one replica accepts at once (more wait in the proxy's queue). Ray's proxy
    prefers replicas on its own node until they hold this many: keep it near what one
    replica really runs at once (an in-process GGUF model runs one; a managed
    llama-server ``n_parallel``), or requests pile up on the proxy's node."""
    num_cpus: float = Field(default=1.0, ge=0)
    """CPUs Ray reserves per replica (the cluster's ``--num-cpus`` bounds the count)."""
    num_gpus: float = Field(default=0.0, ge=0)
    health_check_period_s: float = Field(default=5.0, gt=0)
    health_check_timeout_s: float = Field(default=30.0, gt=0)
    graceful_shutdown_timeout_s: float = Field(default=30.0, ge=0)
    """How long a stopping replica (``setraf serve ray`` got SIGTERM/SIGINT, a redeploy,
    a downscale) lets its in-flight requests and streams finish before Ray kills it."""
    dead_replica_retries: int = Field(default=2, ge=0, le=10)
    """How many more replicas the router tries when the one running a request dies before
    its answer begins (a stream: before its first event)."""
    router_replicas: int = Field(default=1, ge=1)
    """Replicas of the router (the HTTP ingress in front of the model replicas; it
    reserves no CPU and holds no model)."""

    @model_validator(mode="after")
    def _one_of(self) -> DeploymentConfig:
        if self.num_replicas is not None and self.autoscaling is not None:
            raise ValueError("give num_replicas or autoscaling, not both")
        return self

    def to_ray_options(self) -> dict[str, Any]:
        """Keyword arguments of ``Deployment.options``."""
        opts: dict[str, Any] = {
            "max_ongoing_requests": self.max_ongoing_requests,
            "ray_actor_options": {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus},
            "health_check_period_s": self.health_check_period_s,
            "health_check_timeout_s": self.health_check_timeout_s,
            "graceful_shutdown_timeout_s": self.graceful_shutdown_timeout_s,
        }
        if self.autoscaling is not None:
            opts["autoscaling_config"] = self.autoscaling.to_ray()
        else:
            opts["num_replicas"] = self.num_replicas or 1
        return opts

    def router_options(self) -> dict[str, Any]:
        """Keyword arguments of ``Deployment.options`` for the router: no CPU reserved,
        room for every request the model replicas can hold and as many waiting, and the
        same drain time as the model replicas."""
        most = self.autoscaling.max_replicas if self.autoscaling else (self.num_replicas or 1)
        return {
            "num_replicas": self.router_replicas,
            "max_ongoing_requests": max(100, 2 * most * self.max_ongoing_requests),
            "ray_actor_options": {"num_cpus": 0},
            "graceful_shutdown_timeout_s": self.graceful_shutdown_timeout_s,
        }


class HTTPConfig(_Strict):
    """Where Ray Serve's HTTP proxy listens (on every node that runs one)."""

    host: str = "127.0.0.1"
    """Address the proxies bind (``0.0.0.0`` to accept other machines)."""
    port: int = Field(default=8000, ge=1, le=65535)
    proxy_location: Literal["EveryNode", "HeadOnly", "Disabled"] = "EveryNode"
    """One proxy per node (each node is an entry point), or only on the head. Several
    nodes on one host (tests) need ``HeadOnly``: their proxies would share the port."""
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Name of the environment variable holding the API key clients must send as
    ``Authorization: Bearer KEY`` (read by ``setraf serve ray`` when it deploys; at
    least 16 characters). Required when :attr:`host` is not a loopback address."""
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024)
    """Largest request body accepted (413 beyond)."""
    request_timeout_s: float = Field(default=DEFAULT_REQUEST_TIMEOUT_S, gt=0)
    """Longest a request may run, generation included (504 beyond)."""

    @model_validator(mode="after")
    def _key_off_loopback(self) -> HTTPConfig:
        if self.api_key_env is None and not is_loopback(self.host):
            raise ValueError(
                f"host {self.host!r} is not a loopback address: anyone who can reach it could "
                "use the model. Set http.api_key_env to the name of an environment variable "
                "holding an API key (or bind 127.0.0.1)"
            )
        return self

    def policy(self) -> IngressPolicy:
        """The ingress policy, with the key read from :attr:`api_key_env` now.

        Raises:
            RayServeConfigError: the variable is unset, or holds a key shorter than 16
                characters or with whitespace.
        """
        key = None
        if self.api_key_env is not None:
            key = os.environ.get(self.api_key_env)
            if key is None:
                raise RayServeConfigError(
                    f"http.api_key_env: the environment variable {self.api_key_env} is not set"
                )
            if len(key) < MIN_API_KEY_LENGTH or re.search(r"\s", key):
                raise RayServeConfigError(
                    f"http.api_key_env: the key in {self.api_key_env} must be at least "
                    f"{MIN_API_KEY_LENGTH} characters without whitespace"
                )
        return IngressPolicy.with_key(
            key, max_body_bytes=self.max_body_bytes, request_timeout_s=self.request_timeout_s
        )


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address, or ``localhost``) is reachable only from this machine."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


class RayServeConfig(_Strict):
    """The whole file."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    deployment: DeploymentConfig = Field(default_factory=DeploymentConfig)
    http: HTTPConfig = Field(default_factory=HTTPConfig)
    app_name: str = "setraf"
    route_prefix: str = "/"
    ray_address: str | None = "auto"
    """Cluster to join (``"auto"``: the one ``ray start`` runs on this node; ``None``:
    start a private one in this process)."""


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _where(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "<top level>"


def load_config(path: str | os.PathLike[str]) -> RayServeConfig:
    """Read and validate a config file (YAML, or JSON for a ``.json`` name).

    Raises:
        RayServeConfigError: the file is missing or unreadable, is not valid YAML/JSON
            (line named), is not a mapping, or breaks the schema (each bad key named with
            its path in the file, unknown keys included).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise RayServeConfigError(f"{p}: cannot read the config file ({exc})") from None
    except UnicodeDecodeError as exc:
        raise RayServeConfigError(f"{p}: not UTF-8 text ({exc})") from None
    data: Any
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RayServeConfigError(
                f"{p}:{exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno})"
            ) from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise RayServeConfigError(f"{p}{line}: not valid YAML ({problem})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RayServeConfigError(
            f"{p}: expected a mapping at the top level, got {type(data).__name__}"
        )
    try:
        return RayServeConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = _where(err["loc"])
            if err["type"] == "extra_forbidden":
                problems.append(f"unknown key {where!r}")
            else:
                problems.append(f"{where}: {err['msg']}")
        raise RayServeConfigError(f"{p}: " + "; ".join(problems)) from None
