"""A GGUF with Mistral-7B-Instruct-v0.2's chat template and BOS/EOS settings, for tests.

SETRAF's production model is Mistral-7B-Instruct. Its chat template writes
``{{- bos_token }}`` and its tokenizer also adds a BOS to every prompt
(``add_bos_token`` true, ``add_eos_token`` false): the combination that gave prompts two
BOS tokens. :func:`build_mistral_gguf` rewrites the metadata of the embedded SmolLM2 GGUF
with the ``gguf`` package and copies its weights unchanged:

- ``tokenizer.chat_template``: Mistral-7B-Instruct-v0.2's template (:data:`MISTRAL_V02_TEMPLATE`);
- tokens 1 and 2 (SmolLM2's ``<|im_start|>``/``<|im_end|>`` control tokens) are renamed
  ``<s>``/``</s>`` and become BOS/EOS, Mistral's token texts;
- ``tokenizer.ggml.add_bos_token`` true, ``tokenizer.ggml.add_eos_token`` false, as in
  Mistral's ``tokenizer_config.json``.

The file is written once per source file under the test cache (``$SETRAF_TEST_CACHE`` or
``<repo>/.cache/tests``), never in the home directory.

Run ``python tests/helpers/mistral_gguf.py [OUTDIR]`` to build it by hand.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

#: Mistral-7B-Instruct-v0.2's chat template (the ``chat_template`` of its
#: ``tokenizer_config.json``), character for character as llama.cpp's test suite carries it:
#: ggml-org/llama.cpp, ``tests/test-chat-template.cpp``, test case
#: "mistralai/Mistral-7B-Instruct-v0.2 (mistralai 'v1' template with a system prompt)"
#: (read at commit 03f94f19a2c4c9d039fa1a84838fe3e2110cc28d). The C++ literal and this
#: Python literal use the same escapes: ``\\n`` inside the Jinja strings is a backslash-n
#: that Jinja turns into a newline.
MISTRAL_V02_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {%- set system_message = messages[0]['content'] %}\n"
    "    {%- set loop_messages = messages[1:] %}\n"
    "{%- else %}\n"
    "    {%- set loop_messages = messages %}\n"
    "{%- endif %}\n"
    "\n"
    "{{- bos_token }}\n"
    "{%- for message in loop_messages %}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\n"
    "        {{- raise_exception('After the optional system message, conversation roles must "
    "alternate user/assistant/user/assistant/...') }}\n"
    "    {%- endif %}\n"
    "    {%- if message['role'] == 'user' %}\n"
    "        {%- if loop.first and system_message is defined %}\n"
    "            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}\n"
    "        {%- else %}\n"
    "            {{- ' [INST] ' + message['content'] + ' [/INST]' }}\n"
    "        {%- endif %}\n"
    "    {%- elif message['role'] == 'assistant' %}\n"
    "        {{- ' ' + message['content'] + eos_token}}\n"
    "    {%- else %}\n"
    "        {{- raise_exception('Only user and assistant roles are supported, with the "
    "exception of an initial optional system message!') }}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
)

BOS_ID, EOS_ID = 1, 2
BOS_TEXT, EOS_TEXT = "<s>", "</s>"
_VERSION = "1"  # bump when the rewrite changes, so cached files are rebuilt


def _cache_root() -> Path:
    env = os.environ.get("SETRAF_TEST_CACHE")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / ".cache" / "tests"


def _digest(path: Path) -> str:
    h = hashlib.sha256(_VERSION.encode())
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def build_mistral_gguf(source: Path, directory: Path | None = None) -> Path:
    """Return a copy of ``source`` carrying Mistral-7B-Instruct-v0.2's template and specials.

    Raises:
        ImportError: the ``gguf`` package is missing (``pip install -e '.[test]'``).
        ValueError: ``source`` has no vocabulary, or ``<s>``/``</s>`` already name other tokens.
    """
    source = Path(source)
    target = (directory or _cache_root()) / f"mistral-v0.2-template-{_digest(source)}.gguf"
    if target.is_file():
        return target
    try:
        import gguf
    except ImportError as exc:
        raise ImportError(f"the gguf package is needed: pip install -e '.[test]' ({exc})") from exc

    reader = gguf.GGUFReader(source, "r")
    tokens_field = reader.fields.get("tokenizer.ggml.tokens")
    if tokens_field is None:
        raise ValueError(f"{source}: no tokenizer.ggml.tokens, cannot carry a chat template")
    tokens = list(tokens_field.contents())
    for text in (BOS_TEXT, EOS_TEXT):
        if text in tokens:
            raise ValueError(f"{source}: token {text!r} already exists at {tokens.index(text)}")
    tokens[BOS_ID], tokens[EOS_ID] = BOS_TEXT, EOS_TEXT
    t = gguf.GGUFValueType
    new: dict[str, tuple[object, gguf.GGUFValueType, gguf.GGUFValueType | None]] = {
        "tokenizer.ggml.tokens": (tokens, t.ARRAY, t.STRING),
        "tokenizer.chat_template": (MISTRAL_V02_TEMPLATE, t.STRING, None),
        "tokenizer.ggml.bos_token_id": (BOS_ID, t.UINT32, None),
        "tokenizer.ggml.eos_token_id": (EOS_ID, t.UINT32, None),
        "tokenizer.ggml.add_bos_token": (True, t.BOOL, None),
        "tokenizer.ggml.add_eos_token": (False, t.BOOL, None),
        "general.name": ("SmolLM2-135M with Mistral-7B-Instruct-v0.2's template", t.STRING, None),
    }

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    arch = str(reader.fields["general.architecture"].contents())
    writer = gguf.GGUFWriter(tmp, arch=arch, endianess=reader.endianess)
    try:
        for field in reader.fields.values():
            if field.name == "general.architecture" or field.name.startswith("GGUF."):
                continue  # written by GGUFWriter itself
            if field.name in new:
                value, vtype, sub = new.pop(field.name)
            else:
                vtype = field.types[0]
                sub = field.types[-1] if vtype == t.ARRAY else None
                value = field.contents()
            writer.add_key_value(field.name, value, vtype, sub_type=sub)
        for name, (value, vtype, sub) in new.items():
            writer.add_key_value(name, value, vtype, sub_type=sub)
        for tensor in reader.tensors:
            writer.add_tensor_info(
                tensor.name,
                tensor.data.shape,
                tensor.data.dtype,
                tensor.data.nbytes,
                tensor.tensor_type,
            )
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for tensor in reader.tensors:
            writer.write_tensor_data(tensor.data, tensor_endianess=reader.endianess)
    finally:
        writer.close()
    os.replace(tmp, target)
    return target


if __name__ == "__main__":
    from langchain_setraf.models import default_gguf_path

    out = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    print(build_mistral_gguf(default_gguf_path(), out))
