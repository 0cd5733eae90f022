"""The ``setraf`` command, in Ollama's verbs: generate text, list and stop this host's
managed servers, serve a model over HTTP, pull models, interpret ERT surveys.

Every command that loads a model takes ``--model URI`` (see :mod:`langchain_setraf.cli_model`).

Example:
    .. code-block:: console

        $ setraf generate "Explain apparent resistivity in one sentence."
        $ setraf generate "Hi" --model llama-server:/models/qwen.gguf
        $ setraf ps
        $ setraf stop --all
        $ setraf serve ray examples/ray_serve.yaml
        $ setraf memory
        $ setraf pull --list
        $ setraf interpret examples/two_layer_wenner.dat --lang en
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from langchain_setraf._version import __version__

#: ``setraf generate``'s own defaults (given to the class only where they apply).
GENERATE_DEFAULTS: dict[str, Any] = {"max_tokens": 128, "temperature": 0.7, "n_ctx": 2048}


def _cmd_generate(args: argparse.Namespace) -> int:
    from langchain_setraf.cache import get_model_cache
    from langchain_setraf.cli_model import build_llm
    from langchain_setraf.memory import memory_snapshot

    before = memory_snapshot()
    given = {
        name: getattr(args, name)
        for name in ("max_tokens", "temperature", "seed", "n_ctx")
        if getattr(args, name) is not None
    }
    llm = build_llm(args.model, given, GENERATE_DEFAULTS)
    start = time.perf_counter()
    for chunk in llm.stream(args.prompt):
        sys.stdout.write(chunk)
        sys.stdout.flush()
    sys.stdout.write("\n")
    elapsed = time.perf_counter() - start
    loaded = memory_snapshot()
    info = get_model_cache().loaded()
    _release(llm)
    released = memory_snapshot()
    err = sys.stderr
    if info:
        m = info[0]
        print(f"model: {m.path} (loaded in {m.load_seconds:.2f} s)", file=err)
    print(f"generation: {elapsed:.2f} s", file=err)
    print(f"memory before load : {before}", file=err)
    print(f"memory while loaded: {loaded}", file=err)
    print(f"memory after release: {released}", file=err)
    return 0


def _cmd_memory(args: argparse.Namespace) -> int:
    from langchain_setraf.memory import memory_snapshot

    snap = memory_snapshot(args.pid)
    if args.json:
        print(json.dumps(snap.as_dict()))
    else:
        print(snap)
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from langchain_setraf.cache import get_model_cache
    from langchain_setraf.factory import init_llm, list_backends
    from langchain_setraf.memory import format_bytes

    cache = get_model_cache()
    for uri in args.load or []:
        _load(init_llm(uri))
    backends = [
        {
            "name": b.name,
            "distribution": b.distribution,
            "version": b.version,
            "builtin": b.builtin,
            "importable": b.importable,
            "error": b.error,
            "missing": b.missing,
        }
        for b in list_backends()
    ]
    models: list[dict[str, Any]] = [
        {
            "backend": m.backend,
            "path": m.path,
            "options": m.options,
            "estimated_bytes": m.estimated_bytes,
            "idle_seconds": round(m.idle_seconds, 1),
            "users": m.users,
            "memory": None if m.memory is None else m.memory.as_dict(),
            "allocated": None if m.allocated is None else m.allocated.as_dict(),
            "weights_shared_with": [k.describe() for k in m.weights_shared_with],
        }
        for m in cache.loaded()
    ]
    if args.json:
        print(json.dumps({"backends": backends, "loaded": models, "max_memory": cache.max_memory}))
        return 0
    print("backends:")
    for b in backends:
        state = "ok" if b["importable"] and not b["missing"] else (b["error"] or b["missing"])
        origin = "built-in" if b["builtin"] else f"{b['distribution']} {b['version']}"
        print(f"  {b['name']:<14} {origin:<28} {state}")
    budget = format_bytes(cache.max_memory) if cache.max_memory else "none"
    print(
        f"loaded models (budget {budget}):" if models else f"loaded models: none (budget {budget})"
    )
    for m in models:
        print(
            f"  {m['backend']}:{m['path']}  {format_bytes(m['estimated_bytes'])}  "
            f"idle {m['idle_seconds']} s  users {m['users']}"
        )
        for name in ("memory", "allocated"):
            split = m[name]
            if split is not None:
                print(
                    f"    {'estimate' if name == 'memory' else name:9}  weights "
                    f"{format_bytes(split['weights'])}  KV cache {format_bytes(split['kv_cache'])}"
                    f"  prompt cache {format_bytes(split['prompt_cache'])}  other "
                    f"{format_bytes(split['other'])}"
                )
        for other in m["weights_shared_with"]:
            print(f"    weights shared with {other}")
    return 0


def _cmd_pull(args: argparse.Namespace) -> int:
    from langchain_setraf.memory import format_bytes
    from langchain_setraf.pull import CATALOG, catalog_as_dicts, get_entry, load_catalog, pull

    catalog = load_catalog(args.catalog) if args.catalog else CATALOG
    if args.list:
        if args.name or args.dir or args.quiet or args.wait is not None:
            raise ValueError("--list takes no model name, --dir, --quiet or --wait")
        rows = catalog_as_dicts(catalog)
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        print(f"{'name':<26} {'size':>9} {'min memory':>10}  {'quant':<7} {'licence':<11} source")
        for r in rows:
            print(
                f"{r['name']:<26} {format_bytes(r['size']):>9} "
                f"{format_bytes(r['min_memory_bytes']):>10}  {r['quant']:<7} {r['license']:<11} "
                f"{r['repo']}/{r['file']}"
            )
        print("(min memory: the package's estimate with n_ctx=2048, mmap, no repack)")
        return 0
    if not args.name:
        raise ValueError("give a model name (setraf pull --list shows them)")
    if args.json:
        raise ValueError("--json goes with --list")
    entry = get_entry(args.name, catalog)
    try:
        wait = {} if args.wait is None else {"lock_timeout": args.wait}
        result = pull(entry, args.dir, show_progress=not args.quiet, **wait)
    except OSError as exc:  # network, offline mode, a different file in the way, disk
        print(f"setraf: error: {exc}", file=sys.stderr)
        return 2
    state = "downloaded and verified" if result.downloaded else "already present, verified"
    print(f"{entry.name}: {state} (sha256 {entry.sha256[:12]}…, licence {entry.license})")
    print(f"path: {result.path}")
    print(f"estimated memory (n_ctx=2048): {format_bytes(result.memory_bytes)}")
    print(f"use it with: --model {result.path}")
    return 0


def _load(llm: object) -> None:
    llm.load()  # type: ignore[attr-defined]


def _release(llm: object) -> None:
    release = getattr(llm, "release", None)
    if callable(release):
        release()


def _cmd_serve(args: argparse.Namespace) -> int:
    from langchain_setraf.cli_model import deprecated

    if args.target is None:
        if args.ray is None:
            raise ValueError("serve what? setraf serve ray CONFIG")
        deprecated("setraf serve --ray CONFIG", "setraf serve ray CONFIG")
        config, detach = args.ray, args.detach_old
    elif args.ray is not None:
        raise ValueError("give the config once: setraf serve ray CONFIG")
    else:
        config, detach = args.config, args.detach
    try:
        from langchain_setraf.serve.ray_app import serve_ray
    except ImportError as exc:
        raise ImportError(
            f"setraf serve ray needs Ray Serve: pip install 'langchain-setraf[ray]' ({exc})"
        ) from exc
    return serve_ray(config, block=not detach)


def _add_serve_parser(sub: Any) -> None:
    serve = sub.add_parser("serve", help="serve a model over the OpenAI HTTP API")
    targets = serve.add_subparsers(dest="target", metavar="{ray}")
    ray = targets.add_parser("ray", help="from Ray Serve replicas behind one ingress (extra ray)")
    ray.add_argument(
        "config",
        metavar="CONFIG",
        help="Serve config (YAML or JSON): model, load options, replicas, autoscaling",
    )
    ray.add_argument("--detach", action="store_true", help="return once deployed")
    serve.add_argument(
        "--ray", metavar="CONFIG", default=None, help="deprecated: setraf serve ray CONFIG"
    )
    serve.add_argument(
        "--detach", dest="detach_old", action="store_true", help="with --ray (deprecated)"
    )
    serve.set_defaults(func=_cmd_serve, detach=False, config=None)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``setraf`` command."""
    parser = argparse.ArgumentParser(
        prog="setraf", description="Local LLMs in little memory, and ERT interpretation."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    from langchain_setraf.cli_model import add_model_argument

    gen = sub.add_parser("generate", help="stream text from a model, then show memory")
    gen.add_argument("prompt")
    add_model_argument(gen)
    d = GENERATE_DEFAULTS
    gen.add_argument("--max-tokens", type=int, default=None, help=f"default {d['max_tokens']}")
    gen.add_argument("--temperature", type=float, default=None, help=f"default {d['temperature']}")
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument(
        "--n-ctx",
        type=int,
        default=None,
        help=f"default {d['n_ctx']} (an attached openai: server has its own)",
    )
    gen.set_defaults(func=_cmd_generate)

    mem = sub.add_parser("memory", help="print a memory snapshot of a process")
    mem.add_argument("--pid", type=int, default=None, help="process id (default: this one)")
    mem.add_argument("--json", action="store_true")
    mem.set_defaults(func=_cmd_memory)

    models = sub.add_parser("models", help="list backends (plugins included) and loaded models")
    models.add_argument(
        "--load",
        action="append",
        metavar="URI",
        help="load a model first (default, gguf:PATH, transformers:DIR, a bare path...)",
    )
    models.add_argument("--json", action="store_true")
    models.set_defaults(func=_cmd_models)

    pull = sub.add_parser("pull", help="download a recommended GGUF model (size + SHA-256 checked)")
    pull.add_argument("name", nargs="?", help="catalogue name (see --list)")
    pull.add_argument("--list", action="store_true", help="show the catalogue")
    pull.add_argument(
        "--dir",
        default=None,
        help="destination folder (default: $SETRAF_MODELS_DIR or ~/.cache/setraf/models)",
    )
    pull.add_argument("--catalog", default=None, help="JSON catalogue to use instead")
    pull.add_argument("--quiet", action="store_true", help="no progress bars")
    pull.add_argument(
        "--wait",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long to wait for another pull of the same model (default 600)",
    )
    pull.add_argument("--json", action="store_true", help="with --list: print JSON")
    pull.set_defaults(func=_cmd_pull)

    from langchain_setraf.cli_servers import add_server_commands

    add_server_commands(sub)
    _add_serve_parser(sub)

    try:
        from langchain_setraf.ert.cli import add_interpret_parser
    except ImportError:  # pragma: no cover - ERT part always ships with the package
        pass
    else:
        add_interpret_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``setraf`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (
        FileNotFoundError,
        ValueError,
        ImportError,
        PermissionError,
        LookupError,
        MemoryError,
    ) as exc:
        print(f"setraf: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
