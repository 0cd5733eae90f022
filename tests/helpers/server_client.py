"""A client process of a managed server, for the multi-process tests.

``python server_client.py MODEL N_CTX N_PARALLEL`` loads MODEL through the
``llama-server`` backend (starting or reusing the host's server in
``$SETRAF_RUNTIME_DIR``), generates a few tokens, prints one JSON line
``{"pid", "server_pid", "url", "text"}``, then waits for a line on stdin and closes its
handle (detaching; the last client stops the server). Exits 3 on any error, printing it.
"""

from __future__ import annotations

import json
import os
import sys

from langchain_setraf.backends.base import GenerationRequest, GenerationStats
from langchain_setraf.backends.llama_server.backend import LlamaServerBackend


def main() -> int:
    model, n_ctx, n_parallel = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    backend = LlamaServerBackend()
    try:
        handle = backend.load(backend.spec_for(model, n_ctx=n_ctx, n_parallel=n_parallel))
        request = GenerationRequest(params={"max_tokens": 4, "temperature": 0.0})
        text = "".join(handle.generate("The sky is", request, GenerationStats()))
    except Exception as exc:  # reported to the test, which fails on it
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 3
    print(
        json.dumps(
            {
                "pid": os.getpid(),
                "server_pid": handle.info.pid,
                "url": handle.info.url,
                "text": text,
            }
        ),
        flush=True,
    )
    sys.stdin.readline()
    handle.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
