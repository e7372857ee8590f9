"""LoRA training throughput of Hugging Face PEFT + PyTorch on the CPU: the peer of Basalt's.

Each JSONL record {"prompt", "completion"} becomes: the chat template applied to one user
turn (the prompt) with the generation prompt, then the completion's tokens and EOS,
truncated to --seq-len. The loss covers only the completion and EOS (labels -100
elsewhere), averaged over the batch's loss tokens. Batches take the records in file
order, cycling, right-padded to the longest in the batch. float32 weights, LoRA (dropout
0, no bias) on --targets, AdamW (weight decay 0). The first 2 steps are warm-up;
tokens/s counts the non-padding input tokens of the remaining (timed) steps over their
wall time. peak_rss_mib is the process's peak resident set (ru_maxrss), loading included.

    python peft_train.py --model /tmp/smollm2-hf --data train.jsonl --rank 8 --alpha 16 \\
        --targets q_proj,v_proj --seq-len 256 --batch 4 --steps 12 --lr 1e-4 --threads 2 --json
"""
import argparse
import json
import os
import resource
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local files only, never the Hub

import peft
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

WARMUP = 2


def encode(tok, record, seq_len):
    """input_ids and labels of one record: loss on the completion and EOS only."""
    prompt = tok.apply_chat_template([{"role": "user", "content": record["prompt"]}],
                                     add_generation_prompt=True, tokenize=True, return_dict=False)
    completion = tok(record["completion"], add_special_tokens=False)["input_ids"]
    completion = completion + [tok.eos_token_id]
    ids = (list(prompt) + completion)[:seq_len]
    labels = ([-100] * len(prompt) + completion)[:seq_len]
    return ids, labels


def batch_of(examples, pad_id):
    """Right-pad a list of (ids, labels) to the longest one; returns model inputs."""
    width = max(len(ids) for ids, _ in examples)
    ids = [i + [pad_id] * (width - len(i)) for i, _ in examples]
    labels = [l + [-100] * (width - len(l)) for _, l in examples]
    mask = [[1] * len(i) + [0] * (width - len(i)) for i, _ in examples]
    return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask),
            "labels": torch.tensor(labels)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="Hugging Face model folder (hf_model.py)")
    ap.add_argument("--data", required=True, help="JSONL of {prompt, completion}")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=16)
    ap.add_argument("--targets", default="q_proj,v_proj")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=20, help="all steps, the 2 warm-up ones included")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="LoRA initialisation")
    ap.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    args = ap.parse_args()
    if args.steps <= WARMUP:
        sys.exit(f"--steps must exceed the {WARMUP} warm-up steps")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    model.config.use_cache = False
    lora = LoraConfig(r=args.rank, lora_alpha=args.alpha, target_modules=args.targets.split(","),
                      lora_dropout=0.0, bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.0)

    with open(args.data, encoding="utf-8") as f:
        examples = [encode(tok, json.loads(line), args.seq_len) for line in f if line.strip()]
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    losses, tokens, seconds = [], 0, 0.0
    for step in range(args.steps):
        batch = batch_of([examples[(step * args.batch + j) % len(examples)]
                          for j in range(args.batch)], pad_id)
        start = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step >= WARMUP:
            seconds += time.perf_counter() - start
            tokens += int(batch["attention_mask"].sum())

    result = {
        "tokens_per_s": round(tokens / seconds, 2),
        "steps": args.steps - WARMUP,
        "warmup_steps": WARMUP,
        "tokens": tokens,
        "seconds": round(seconds, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "final_loss": round(losses[-1], 4),
        "losses": [round(x, 4) for x in losses],
        "trainable_params": sum(p.numel() for p in trainable),
        "torch": torch.__version__,
        "peft": peft.__version__,
        "threads": args.threads,
    }
    print(f"PEFT LoRA r={args.rank} {args.targets} seq {args.seq_len} batch {args.batch}: "
          f"{result['tokens_per_s']} tokens/s over {result['steps']} timed steps "
          f"({tokens} tokens, {result['seconds']} s), peak RSS {result['peak_rss_mib']} MiB, "
          f"loss {losses[0]:.4f} -> {losses[-1]:.4f}, {args.threads} threads", file=sys.stderr)
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
