#!/usr/bin/env bash
# LoRA training, side by side in one run: Basalt (crates/basalt-train, the example
# `train_bench`, which trains exactly as a customization job does) and Hugging Face PEFT
# + PyTorch on the CPU (benches/customization/peft_train.py), on the same model
# (SmolLM2-135M-Instruct: Basalt dequantizes the served Q4_1 GGUF; PEFT loads the same
# weights written as a Hugging Face folder by hf_model.py), the same data
# (make_data.py), LoRA rank, alpha, targets, sequence length, batch, steps and threads.
# Prints each side's tokens/s and peak RSS, alternating sides ROUNDS times, and the
# ratios. Then continued pre-training on a generated domain corpus: held-out
# perplexity before and after (Basalt).
# Environment: STEPS (12), BATCH (4), SEQ_LEN (256), RANK (8), TARGETS (q_proj,v_proj),
# THREADS (2), RECORDS (64), ROUNDS (2).
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
STEPS="${STEPS:-12}" BATCH="${BATCH:-4}" SEQ_LEN="${SEQ_LEN:-256}" RANK="${RANK:-8}"
TARGETS="${TARGETS:-q_proj,v_proj}" THREADS="${THREADS:-2}" RECORDS="${RECORDS:-64}" ROUNDS="${ROUNDS:-2}"
WORK="$REPO/benches/.work/customization"
GGUF="$BASALT_MODELS_DIR/smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf"
mkdir -p "$WORK"
bash "$REPO/benches/customization/setup.sh"
PY="$REPO/benches/customization/.venv/bin/python"
configure_native_toolchain
log "building the training benchmark (release)"
(cd "$REPO" && cargo build --release --locked -p basalt-train --example train_bench)
BENCH="$CARGO_TARGET_DIR/release/examples/train_bench"
[ -f "$WORK/hf/model.safetensors" ] || "$PY" "$REPO/benches/customization/hf_model.py" --gguf "$GGUF" --out "$WORK/hf"
"$PY" "$REPO/benches/customization/make_data.py" --records "$RECORDS" --out "$WORK/train.jsonl" --seed 7
common=(--rank "$RANK" --alpha 16 --targets "$TARGETS" --seq-len "$SEQ_LEN" --batch "$BATCH" --steps "$STEPS" --lr 1e-4 --threads "$THREADS")
for round in $(seq "$ROUNDS"); do
  log "round $round: PEFT + PyTorch"
  "$PY" "$REPO/benches/customization/peft_train.py" --model "$WORK/hf" --data "$WORK/train.jsonl" "${common[@]}" --json \
    2>/dev/null | tail -1 > "$WORK/peft-$round.json"
  log "round $round: Basalt"
  "$BENCH" --model "$GGUF" --data "$WORK/train.jsonl" "${common[@]}" 2>/dev/null | tail -1 > "$WORK/basalt-$round.json"
done
"$PY" - "$WORK" "$ROUNDS" <<'PY'
import json, sys
work, rounds = sys.argv[1], int(sys.argv[2])
def load(side):
    return [json.load(open(f"{work}/{side}-{r}.json")) for r in range(1, rounds + 1)]
peft, basalt = load("peft"), load("basalt")
best = lambda runs, k, f: f(r[k] for r in runs)
for name, runs in (("PEFT + PyTorch", peft), ("Basalt", basalt)):
    print(f"{name:16s} tokens/s {[round(r['tokens_per_s'], 1) for r in runs]}  peak RSS MiB "
          f"{[round(r['peak_rss_mib']) for r in runs]}  final loss {[round(r['final_loss'], 4) for r in runs]}")
ratio = best(basalt, "tokens_per_s", max) / best(peft, "tokens_per_s", max)
rss = best(basalt, "peak_rss_mib", min) / best(peft, "peak_rss_mib", min)
print(f"Basalt / PEFT: tokens/s {ratio:.2f}x (goal >= 1.0), peak RSS {rss:.2f}x (goal <= 1.0)")
PY
log "continued pre-training: held-out perplexity before and after (Basalt)"
"$PY" - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
rows = [json.loads(l) for l in open(f"{work}/train.jsonl")]
docs = [{"input": r["prompt"] + "\n" + r["completion"]} for r in rows]
split = len(docs) * 3 // 4
with open(f"{work}/cpt-train.jsonl", "w") as f:
    f.writelines(json.dumps(d) + "\n" for d in docs[:split])
with open(f"{work}/cpt-heldout.jsonl", "w") as f:
    f.writelines(json.dumps(d) + "\n" for d in docs[split:])
PY
"$BENCH" --model "$GGUF" --data "$WORK/cpt-train.jsonl" --eval "$WORK/cpt-heldout.jsonl" --rank "$RANK" --alpha 16 \
  --targets "$TARGETS" --seq-len "$SEQ_LEN" --batch "$BATCH" --steps "$STEPS" --lr 1e-3 --threads "$THREADS" 2>/dev/null \
  | tail -1 | "$PY" -c 'import json, sys; r = json.load(sys.stdin); b, a, n = r["eval_perplexity_before"], r["eval_perplexity_after"], r["steps"] + 2; print(f"held-out perplexity {b:.2f} -> {a:.2f} after {n} steps")'
