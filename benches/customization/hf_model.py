"""Write the GGUF model Basalt serves as a Hugging Face folder, for the PEFT peer.

transformers' GGUF loader dequantizes the weights (Q4_1 -> f32) and undoes llama.cpp's
q/k row permutation; the tokenizer (and its chat template) comes from the same file.
The folder gets config.json, generation_config.json, the tokenizer files and an f32
model.safetensors. A greedy generation on a chat prompt is printed as a sanity check.

    python hf_model.py --gguf models/.../SmolLM2-135M-Instruct.Q4_1.gguf --out /tmp/smollm2-hf
"""
import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local files only, never the Hub

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", required=True, help="path of the .gguf file")
    ap.add_argument("--out", required=True, help="folder to write")
    ap.add_argument("--prompt", default="What is the capital of France?")
    args = ap.parse_args()

    folder, name = os.path.split(os.path.abspath(args.gguf))
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    # dequantize=True: a plain dense model (transformers 5 can otherwise keep GGUF blocks).
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=torch.float32,
        quantization_config=GgufConfig(gguf_file=name, dequantize=True))
    os.makedirs(args.out, exist_ok=True)
    model.save_pretrained(args.out)
    tok.save_pretrained(args.out)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out}: {model.config.model_type}, {n / 1e6:.1f}M parameters, "
          f"dtype {next(model.parameters()).dtype}, vocab {len(tok)}")

    # Sanity check from the written folder: a greedy reply to one chat turn.
    tok = AutoTokenizer.from_pretrained(args.out)
    model = AutoModelForCausalLM.from_pretrained(args.out, dtype=torch.float32).eval()
    ids = tok.apply_chat_template([{"role": "user", "content": args.prompt}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=24, do_sample=False)
    reply = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    print(f"check: {args.prompt!r} -> {reply!r}")


if __name__ == "__main__":
    main()
