"""Write tests/fixtures/tracr: three RASP programs of tracr's library compiled into
transformers whose heads do known jobs, each converted to a plain TransformerLens checkpoint
(config.json fields at the top level, model.safetensors under 3.x names) with prompts whose
targets are tracr's own outputs (prompts.jsonl, for PromptTask).

- hist: SelectorWidth of Select(tokens, tokens, EQ), one head (the histogram);
- pattern: detect_pattern(tokens, "abc"): two heads shifting the tokens in layer 1, the
  other layers' head slots empty;
- reverse: make_reverse(tokens): a head measuring the length (layer 0), MLPs turning it into
  an index, a head that reads at that index (layer 3); layers 1 and 2 empty. Prompts of
  every length from 2 to 5, so that the length matters.

tracr compiles causal models here (headcoop runs no bidirectional attention); every target is
read at the last position, which sees the whole prompt. tracr's input and output spaces become
one vocabulary: ids [0, n_in) are its input tokens, [n_in, n_in + n_out) its outputs, whose
unembedding reads the program's output dimensions of the residual stream.

Run in a venv of its own (never a dependency of headcoop or of CI):
    python3 -m venv /tmp/tracr && /tmp/tracr/bin/pip install tracr-pypi safetensors
    /tmp/tracr/bin/python scripts/make_tracr_fixtures.py
"""

import itertools
import json
import random
import shutil
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file
from tracr.compiler import compiling, lib
from tracr.rasp import rasp

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "tracr"
VOCAB = {"a", "b", "c"}
BOS = "BOS"


def programs() -> dict:
    """Name: (program, longest prompt, prompts as token lists)."""
    every = lambda n: [list(p) for p in itertools.product("abc", repeat=n)]  # noqa: E731
    pattern = [p for p in every(6) if p[-3:] == list("abc")]
    rest = [p for p in every(6) if p[-3:] != list("abc")]
    pattern += random.Random(0).sample(rest, 3 * len(pattern))
    return {
        "hist": (lib.make_hist(), 5, every(4) + every(3)),
        "pattern": (lib.detect_pattern(rasp.tokens, "abc"), 6, pattern),
        "reverse": (lib.make_reverse(rasp.tokens), 5, every(2) + every(3) + every(4) + every(5)),
    }


def convert(model, label: str) -> tuple[dict, dict[str, np.ndarray], dict, list]:
    """TransformerLens config fields and 3.x-named weights of a compiled tracr model."""
    c, p = model.model_config, model.params
    d_model = p["token_embed"]["embeddings"].shape[1]
    inputs = model.input_encoder.encoding_map
    outputs = model.output_encoder.encoding_map
    n_in, n_out = len(inputs), len(outputs)
    config = {
        "n_layers": c.num_layers, "d_model": d_model, "n_heads": c.num_heads,
        "d_head": c.key_size, "d_mlp": c.mlp_hidden_size,
        "n_ctx": p["pos_embed"]["embeddings"].shape[0],
        "d_vocab": n_in + n_out, "act_fn": "relu", "normalization_type": None,
        "attn_only": False, "positional_embedding_type": "standard", "attention_dir": "causal",
        "model_name": f"tracr {label}",
    }  # fmt: skip
    W_E = np.zeros((n_in + n_out, d_model), np.float32)
    W_E[:n_in] = p["token_embed"]["embeddings"]
    W_U = np.zeros((d_model, n_in + n_out), np.float32)
    for value, index in outputs.items():
        W_U[model.residual_labels.index(f"{label}:{value}"), n_in + index] = 1.0
    weights = {
        "embed.W_E": W_E,
        "pos_embed.W_pos": p["pos_embed"]["embeddings"],
        "unembed.W_U": W_U,
    }
    weights["unembed.b_U"] = np.zeros(n_in + n_out, np.float32)
    for layer in range(c.num_layers):
        weights |= _layer(p, layer, c.num_heads, c.key_size, d_model)
    weights = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.items()}
    return config, weights, inputs, [n_in + outputs[v] for v in sorted(outputs, key=outputs.get)]


def _layer(p: dict, layer: int, heads: int, key: int, d_model: int) -> dict[str, np.ndarray]:
    at, to = f"transformer/layer_{layer}", f"blocks.{layer}"
    split = lambda w: np.asarray(w).reshape(d_model, heads, key).transpose(1, 0, 2)  # noqa: E731
    weights = {
        f"{to}.attn.W_{x}": split(p[f"{at}/attn/{n}"]["w"])
        for x, n in zip("QKV", ("query", "key", "value"), strict=True)
    }
    weights |= {
        f"{to}.attn.b_{x}": np.asarray(p[f"{at}/attn/{n}"]["b"]).reshape(heads, key)
        for x, n in zip("QKV", ("query", "key", "value"), strict=True)
    }
    weights[f"{to}.attn.W_O"] = np.asarray(p[f"{at}/attn/linear"]["w"]).reshape(heads, key, d_model)
    weights[f"{to}.attn.b_O"] = np.asarray(p[f"{at}/attn/linear"]["b"])
    weights[f"{to}.mlp.W_in"] = np.asarray(p[f"{at}/mlp/linear_1"]["w"])
    weights[f"{to}.mlp.b_in"] = np.asarray(p[f"{at}/mlp/linear_1"]["b"])
    weights[f"{to}.mlp.W_out"] = np.asarray(p[f"{at}/mlp/linear_2"]["w"])
    weights[f"{to}.mlp.b_out"] = np.asarray(p[f"{at}/mlp/linear_2"]["b"])
    return weights


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    for name, (program, longest, prompts) in programs().items():
        model = compiling.compile_rasp_to_model(
            program, vocab=VOCAB, max_seq_len=longest, compiler_bos=BOS, causal=True
        )
        config, weights, inputs, outputs = convert(model, program.label)
        folder = OUT / name
        folder.mkdir(parents=True)
        save_file(weights, folder / "model.safetensors")
        (folder / "config.json").write_text(json.dumps(config, indent=1) + "\n")
        lines = []
        for prompt in prompts:
            decoded = model.apply([BOS, *prompt]).decoded[-1]
            target = len(inputs) + model.output_encoder.encoding_map[decoded]
            lines.append(
                json.dumps({"tokens": [inputs[t] for t in [BOS, *prompt]], "target": target})
            )
        (folder / "prompts.jsonl").write_text("\n".join(lines) + "\n")
        meta = {
            "program": program.label,
            "candidates": outputs,
            "heads": config["n_layers"] * config["n_heads"],
        }
        (folder / "tracr.json").write_text(json.dumps(meta) + "\n")
        print(
            f"{name}: {config['n_layers']} layers x {config['n_heads']} heads, {len(lines)} prompts"
        )


if __name__ == "__main__":
    main()
