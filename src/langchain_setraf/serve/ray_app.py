"""The Ray Serve application: replicas of one model behind an OpenAI-compatible ingress.

Two deployments:

- ``SetrafModel``: the model replicas. Each is a Ray actor process holding one model
  through the package's cache (a ``ChatGGUF``/``GGUFLLM`` pair in-process,
  ``ChatTransformers``/``TransformersLLM``, or a managed llama-server with
  ``load: {server: true}``) and running the routes of
  :mod:`langchain_setraf.serve.openai_routes`. Ray Serve balances requests between them,
  restarts a dead one, and scales their count on ongoing requests.
- ``SetrafRouter``: the HTTP ingress behind Ray's proxy. It checks the API key and body
  size, forwards each request to a model replica through a deployment handle, and sends
  it again to another replica when one dies before its answer begins
  (:mod:`langchain_setraf.serve.ray_router`). It reserves no CPU.

Run it on a cluster started with ``ray start --head`` (and ``ray start --address`` on the
other nodes)::

    setraf serve ray examples/ray_serve.yaml       # or: python -m langchain_setraf.serve.ray_app

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
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from ray import serve
from ray.serve.handle import DeploymentHandle

from langchain_setraf.chat_base import LocalChatModel
from langchain_setraf.serve import openai_routes as routes
from langchain_setraf.serve.asgi_bridge import ForwardedRequest, ResponseHead, run_asgi
from langchain_setraf.serve.ingress_policy import IngressPolicy
from langchain_setraf.serve.ray_config import (
    ModelConfig,
    RayServeConfig,
    RayServeConfigError,
    load_config,
)
from langchain_setraf.serve.ray_router import DEFAULT_RETRIES, Router

__all__ = [
    "DEPLOYMENT_NAME",
    "ROUTER_NAME",
    "SetrafReplica",
    "SetrafRouter",
    "build_app",
    "deploy",
    "serve_ray",
]

#: The model replicas' deployment.
DEPLOYMENT_NAME = "SetrafModel"
#: The HTTP ingress deployment in front of them.
ROUTER_NAME = "SetrafRouter"


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


def _warm_up(chat: LocalChatModel) -> None:
    """Load the weights now, so a replica is healthy only once it can answer."""
    chat.load()


@serve.deployment(name=DEPLOYMENT_NAME)
class SetrafReplica:
    """One model replica: one model and the OpenAI-compatible routes, called by the router.

    It is not an HTTP ingress itself: the router (:class:`SetrafRouter`) forwards each
    request as a :class:`~langchain_setraf.serve.asgi_bridge.ForwardedRequest` to
    :meth:`handle`, which runs the routes on it and streams the response back.
    """

    def __init__(self, model: dict[str, Any], ingress: dict[str, Any] | None = None) -> None:
        import ray

        cfg = ModelConfig.model_validate(model)
        policy = IngressPolicy(**(ingress or {}))
        ctx = serve.get_replica_context()
        node = str(ray.util.get_node_ip_address())  # type: ignore[no-untyped-call]
        self.service = build_service(cfg, ctx.replica_tag, node, policy)
        self.asgi = routes.standalone_app(self.service)

    async def handle(self, request: ForwardedRequest) -> AsyncIterator[ResponseHead | bytes]:
        """Run the routes on one forwarded request: the response head, then its body."""
        async for item in run_asgi(self.asgi, request):
            yield item

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


router_app = FastAPI(title="langchain-setraf on Ray Serve")


@serve.deployment(name=ROUTER_NAME)
@serve.ingress(router_app)
class SetrafRouter:
    """The HTTP ingress: checks each request, forwards it to a model replica through a
    deployment handle, and retries it on another replica when one dies before its answer
    begins (see :mod:`langchain_setraf.serve.ray_router`)."""

    def __init__(
        self,
        replicas: DeploymentHandle[Any],
        ingress: dict[str, Any] | None = None,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        streaming = replicas.options(stream=True)

        def call(request: ForwardedRequest) -> Any:
            return streaming.handle.remote(request)

        self.router = Router(call, IngressPolicy(**(ingress or {})), retries=retries)

    @router_app.api_route("/{path:path}", methods=["GET", "POST"])
    async def forward(self, path: str, request: Request) -> Response:
        """Every route of the model replicas (``/v1/chat/completions``, ``/health``, ...)."""
        return await self.router.forward(request, "/" + path)


def build_app(cfg: RayServeConfig, policy: IngressPolicy | None = None) -> Any:
    """The Serve application for a config (replica count / autoscaling from it).

    Args:
        cfg: The config.
        policy: The ingress policy (default: ``cfg.http.policy()``, which reads the API
            key from the environment). Only the key's digest is passed to the replicas.
    """
    policy = policy or cfg.http.policy()
    ingress = dataclasses.asdict(policy)
    replicas = SetrafReplica.options(**cfg.deployment.to_ray_options()).bind(  # type: ignore[attr-defined]
        cfg.model.model_dump(), ingress
    )
    return SetrafRouter.options(**cfg.deployment.router_options()).bind(  # type: ignore[attr-defined]
        replicas, ingress, cfg.deployment.dead_replica_retries
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
    """``setraf serve ray CONFIG``: deploy the config's application and wait.

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
