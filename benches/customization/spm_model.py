"""A tiny Llama-layout model with a real SentencePiece BPE tokenizer, for checking that
Basalt's import reads tokenizer.model as llama.cpp's own converter does: sentencepiece
trains a BPE model (vocab 512) on a generated corpus; the weights are random (f32).

    python spm_model.py --out /tmp/spm-llama
"""
import argparse
import json
import random
import struct
from pathlib import Path

import numpy as np
import sentencepiece as spm


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    words = ["river", "stone", "basalt", "model", "token", "light", "quiet", "north", "green", "table",
             "window", "seven", "music", "paper", "garden", "engine", "silver", "market", "winter", "ocean"]
    corpus = out / "corpus.txt"
    corpus.write_text("\n".join(" ".join(rng.choice(words) for _ in range(12)) + f" {rng.randint(0, 999)}."
                                for _ in range(4000)))
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(out / "tokenizer"), vocab_size=512,
                                   model_type="bpe", byte_fallback=True, character_coverage=1.0,
                                   bos_id=1, eos_id=2, unk_id=0, pad_id=-1)
    corpus.unlink()
    (out / "tokenizer.vocab").unlink()
    hidden, layers, heads, ffn, vocab = 64, 2, 4, 128, 512
    nprng = np.random.default_rng(7)
    shapes = {"model.embed_tokens.weight": [vocab, hidden], "model.norm.weight": [hidden],
              "lm_head.weight": [vocab, hidden]}
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes.update({p + "input_layernorm.weight": [hidden], p + "post_attention_layernorm.weight": [hidden],
                       p + "self_attn.q_proj.weight": [hidden, hidden], p + "self_attn.k_proj.weight": [hidden, hidden],
                       p + "self_attn.v_proj.weight": [hidden, hidden], p + "self_attn.o_proj.weight": [hidden, hidden],
                       p + "mlp.gate_proj.weight": [ffn, hidden], p + "mlp.up_proj.weight": [ffn, hidden],
                       p + "mlp.down_proj.weight": [hidden, ffn]})
    header, blobs, offset = {}, [], 0
    for name, shape in sorted(shapes.items()):
        raw = nprng.normal(0, 0.1, shape).astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    (out / "model.safetensors").write_bytes(struct.pack("<Q", len(head)) + head + b"".join(blobs))
    (out / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
        "intermediate_size": ffn, "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": heads, "max_position_embeddings": 2048, "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0, "vocab_size": vocab, "tie_word_embeddings": False,
        "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32"}))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": True,
        "add_eos_token": False, "tokenizer_class": "LlamaTokenizer",
        "chat_template": "{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}"}))
    print(f"wrote {out}: llama layout, SentencePiece BPE vocabulary of {vocab}")


if __name__ == "__main__":
    main()
