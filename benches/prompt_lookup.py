"""Decode speed with and without prompt-lookup speculation (issue 22, item 4), one
streamed request at a time, through the same client for Basalt and llama-server.
Driven by benches/prompt_lookup.sh.

    python benches/prompt_lookup.py URL [BEARER]

Two workloads of 6 requests each, 128 output tokens at most, temperature 0:
- grounded: passages in the prompt and a question whose answer quotes them (what
  RetrieveAndGenerate sends);
- free: open-ended writing with nothing to copy.
Decode rate = (completion tokens - 1) / (time of last chunk - time of first chunk),
the token count from the stream's usage; the mean over the requests of each workload.
The answers are printed too (hashed), so runs can be compared for equality.
"""
import hashlib
import json
import statistics
import sys

from chat_stream import stream_chat
PASSAGES = [
    "The Varden Bridge opened in 1932. It is 418 metres long and carries two railway tracks "
    "and a footpath over the river Aln. Its steel came from the Harrow works in Sheffield.",
    "Copper conducts heat and electricity very well. It is used in electrical wiring, in "
    "plumbing pipes, and in the alloys bronze and brass, which are harder than copper alone.",
    "The Ostra lighthouse stands on a granite rock 12 kilometres from the coast. Its lamp "
    "was electrified in 1958 and it has been unmanned since 1991, when the last keeper left.",
]
GROUNDED = [
    "How long is the Varden Bridge and what does it carry?",
    "Where did the steel for the Varden Bridge come from?",
    "What is copper used for?",
    "Which alloys contain copper, and how do they differ from copper?",
    "When was the Ostra lighthouse electrified, and when did the last keeper leave?",
    "Where does the Ostra lighthouse stand?",
]
FREE = [
    "Write a short story about a fox who learns to sail.",
    "Describe a busy market on a summer morning.",
    "Write a poem about the first snow of winter.",
    "Explain why people enjoy gardening.",
    "Tell a story about a clockmaker and a lost key.",
    "Describe a journey on a night train.",
]


def stream(url, bearer, prompt, max_tokens=128):
    """(text, decode tok/s, completion tokens) of one streamed completion."""
    text, _, rate, tokens = stream_chat(url, bearer, prompt, max_tokens)
    return text, rate, tokens


def main(url, bearer=None):
    context = "\n\n".join(PASSAGES)
    grounded = [f"Answer from the passages, quoting them.\n\n{context}\n\nQuestion: {q}" for q in GROUNDED]
    stream(url, bearer, grounded[0], 8)  # warm
    result = {}
    for name, prompts in (("grounded", grounded), ("free", FREE)):
        runs = [stream(url, bearer, p) for p in prompts]
        result[name] = {
            "decode_tok_s": statistics.mean(r[1] for r in runs),
            "tokens": sum(r[2] for r in runs),
            "answers": hashlib.sha256("\x00".join(r[0] for r in runs).encode()).hexdigest()[:16],
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:])
