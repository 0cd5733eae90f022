"""The Ray Serve application: replicas of one model behind an OpenAI-compatible ingress.

Each replica is a Ray actor process holding one model through the package's cache (a
``ChatGGUF``/``GGUFLLM`` pair in-process, ``ChatTransformers``/``TransformersLLM``, or a
managed llama-server with ``load: {server: true}``). Ray Serve routes requests between
replicas, restarts a dead one, and scales their count on ongoing requests; its HTTP proxy
serves the routes of :mod:`langchain_setraf.serve.openai_routes`.

Run it on a cluster started with ``ray start --head`` (and ``ray start --address`` on the
other nodes)::

    setraf serve --ray examples/ray_serve.yaml      # or: python -m langchain_setraf.serve.ray_app

Clients change one line: ``init_chat_model("openai:http://head:8000/v1", model="…")``.

The ingress takes an API key (``http.api_key_env``: required when the proxies bind
anything but loopback), a body size limit and a request timeout; see
:mod:`langchain_setraf.serve.ingress_policy`. Only the key's SHA-256 reaches the cluster.
"""

# No ``from __future__ import annotations`` here: FastAPI must see the real ``Request``
# class in the route signatures that Ray Serve's ingress rewrites (else: HTTP 422).
import contextlib
import dataclasses
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from ray import serve
from ray.serve.handle import DeploymentHandle

from langchain_setraf.serve import openai_routes as routes
from langchain_setraf.serve.ingress_policy import IngressPolicy
from langchain_setraf.serve.ray_config import (
    ModelConfig,
    RayServeConfig,
    RayServeConfigError,
    load_config,
)

__all__ = ["DEPLOYMENT_NAME", "SetrafReplica", "build_app", "deploy", "serve_ray"]

DEPLOYMENT_NAME = "SetrafModel"

app = FastAPI(title="langchain-setraf on Ray Serve")


def build_service(
    model: ModelConfig,
    replica_id: str,
    node: str | None = None,
    policy: IngressPolicy | None = None,
) -> Any:
    """Check the model file's identity, then build the chat/LLM pair and load the weights.

    ``policy`` is the ingress's API key, body limit and timeout (default: none, 1 MiB,
    300 s). What ``/v1/models`` shows of the model is its backend and memory estimate:
    never its path.

    Raises:
        ModelIdentityError: the file differs from the config's ``size``/``sha256``.
        ValueError: a load option the classes refuse (named by them).
    """
    from langchain_setraf.factory import init_chat_model, init_llm

    model.verify_identity()
    uri = model.resolved_uri()
    chat = init_chat_model(uri, **model.load)
    llm = init_llm(uri, **model.load)
    details: dict[str, Any] = {"backend": model.backend_name}
    try:
        details["estimated_bytes"] = int(chat.estimate_memory())
    except Exception as exc:  # an estimate is informative only; say why it is missing
        details["estimated_bytes_error"] = type(exc).__name__  # its text may hold paths
    _warm_up(chat)
    info = routes.ReplicaInfo(replica_id=replica_id)
    if node:
        info = routes.ReplicaInfo(replica_id=replica_id, node=node)
    return routes.ModelService(chat, llm, model.served_name(), info, details, policy)


def _warm_up(chat: Any) -> None:
    """Load the weights now, so a replica is healthy only once it can answer."""
    load = getattr(chat, "load", None)
    if callable(load):
        load()
        return
    with chat._lease():  # the classes before the public load(): same effect
        pass


@serve.deployment(name=DEPLOYMENT_NAME)
@serve.ingress(app)
class SetrafReplica:
    """One replica: one model, the OpenAI-compatible routes, the replica id in answers."""

    def __init__(self, model: dict[str, Any], ingress: dict[str, Any] | None = None) -> None:
        import ray

        cfg = ModelConfig.model_validate(model)
        policy = IngressPolicy(**(ingress or {}))
        ctx = serve.get_replica_context()
        node = str(ray.util.get_node_ip_address())  # type: ignore[no-untyped-call]
        self.service = build_service(cfg, ctx.replica_tag, node, policy)

    @app.post("/v1/chat/completions")
    async def chat_completions(self, request: Request) -> Response:
        """OpenAI chat completions (streaming included)."""
        return await routes.chat_completions(self.service, request)

    @app.post("/v1/completions")
    async def completions(self, request: Request) -> Response:
        """OpenAI text completions (streaming included)."""
        return await routes.completions(self.service, request)

    @app.get("/v1/models")
    async def models(self, request: Request) -> Response:
        """The served model."""
        return await routes.models(self.service, request)

    @app.get("/health")
    async def health(self) -> Response:
        """200 with the replica's id once its model is loaded."""
        return await routes.health(self.service)

    @app.post("/tokenize")
    async def tokenize(self, request: Request) -> Response:
        """llama.cpp's ``/tokenize`` (the attach client counts tokens with it)."""
        return await routes.tokenize(self.service, request)

    @app.post("/apply-template")
    async def apply_template(self, request: Request) -> Response:
        """llama.cpp's ``/apply-template`` (the attach client renders prompts with it)."""
        return await routes.apply_template(self.service, request)

    def check_health(self) -> None:
        """Ray Serve's periodic health check: the model must still be usable, and no
        generation may have outlived its timeout (Ray then replaces the replica)."""
        if self.service.chat is None:  # pragma: no cover - defensive
            raise RuntimeError("replica has no model")
        wedged = self.service.wedged()
        if wedged is not None:
            raise RuntimeError(f"replica is wedged: {wedged}")

    def __del__(self) -> None:
        service = getattr(self, "service", None)
        if service is not None:
            # the process is going away: nothing to report a failure to
            with contextlib.suppress(Exception):
                service.chat.release(wait=False)


def build_app(cfg: RayServeConfig, policy: IngressPolicy | None = None) -> Any:
    """The Serve application for a config (replica count / autoscaling from it).

    Args:
        cfg: The config.
        policy: The ingress policy (default: ``cfg.http.policy()``, which reads the API
            key from the environment). Only the key's digest is passed to the replicas.
    """
    policy = policy or cfg.http.policy()
    return SetrafReplica.options(**cfg.deployment.to_ray_options()).bind(  # type: ignore[attr-defined]
        cfg.model.model_dump(), dataclasses.asdict(policy)
    )


def deploy(cfg: RayServeConfig) -> DeploymentHandle[Any]:
    """Connect to the cluster, start Serve's proxies and deploy; returns once running.

    The application lives in the cluster (Serve's controller is detached): it keeps
    running after this process exits, until ``serve shutdown`` or ``ray stop``.

    Raises:
        RayServeConfigError: ``http.api_key_env`` names an unset variable or a short key
            (checked before anything is started).
    """
    import ray

    policy = cfg.http.policy()
    if not ray.is_initialized():
        ray.init(address=cfg.ray_address, log_to_driver=False)
    serve.start(
        proxy_location=cfg.http.proxy_location,
        http_options={"host": cfg.http.host, "port": cfg.http.port},
    )
    return serve.run(build_app(cfg, policy), name=cfg.app_name, route_prefix=cfg.route_prefix)


def serve_ray(config_path: str | Path, *, block: bool = True) -> int:
    """``setraf serve --ray CONFIG``: deploy the config's application and wait.

    Args:
        config_path: The YAML/JSON config (see :mod:`langchain_setraf.serve.ray_config`).
        block: Wait until SIGINT/SIGTERM, then delete the application (``False``: return
            once it runs, leaving it deployed).

    Returns:
        The process exit status (0).

    Raises:
        RayServeConfigError: the config file is invalid (file and key named).
    """
    cfg = load_config(config_path)
    try:
        cfg.http.policy()  # the key's variable, before the cluster is touched
    except RayServeConfigError as exc:
        raise RayServeConfigError(f"{config_path}: {exc}") from None
    deploy(cfg)
    url = f"http://{cfg.http.host}:{cfg.http.port}{cfg.route_prefix.rstrip('/')}/v1"
    print(
        f"serving {cfg.model.served_name()!r} as application {cfg.app_name!r} at {url}",
        flush=True,
    )
    if not block:
        return 0
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    serve.delete(cfg.app_name)
    return 0


if __name__ == "__main__":  # pragma: no cover - thin CLI shim
    if len(sys.argv) != 2:
        print("usage: python -m langchain_setraf.serve.ray_app CONFIG.yaml", file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(serve_ray(sys.argv[1]))
