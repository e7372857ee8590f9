"""What batch-invariant greedy decoding costs and buys, against one running server
(issue 22, item 3). Driven by benches/batch_invariance.sh.

    python benches/batch_invariance.py URL BEARER

Prints one JSON line:
- decode_short / decode_long: decode tok/s of one streamed request (40-token and
  ~750-token prompts), median of 5;
- prefill_long_ms: time to the first token of a ~750-token prompt nobody sent before;
- concurrent_tok_s: output tokens/s of 4 streams at once;
- mismatches: of 8 greedy requests (4 long prompts, 4 short) sent together with
  random delays, 4 rounds, how many answers differed from the same request alone.
"""
import json
import random
import statistics
import sys
import threading
import time

from chat_stream import stream_chat

LICENCE = ("Permission is hereby granted, free of charge, to any person obtaining a copy of "
           "this software and associated documentation files, to deal in the Software without "
           "restriction, including without limitation the rights to use, copy, modify, merge, "
           "publish, distribute, sublicense, and sell copies of the Software. ")


def chat(url, bearer, prompt, max_tokens):
    """(text, seconds to first chunk, decode tok/s, tokens) of one streamed completion."""
    return stream_chat(url, bearer, prompt, max_tokens)


def main(url, bearer):
    long_prompt = lambda tag: f"[{tag}] " + LICENCE * 11 + "\nSummarise the text above."  # noqa: E731
    short = "Write a very long story about a lighthouse keeper and the sea."
    chat(url, bearer, short, 8)
    decode_short = statistics.median(chat(url, bearer, short, 128)[2] for _ in range(5))
    chat(url, bearer, long_prompt("warm"), 8)
    decode_long = statistics.median(chat(url, bearer, long_prompt("warm"), 128)[2] for _ in range(5))
    prefill = statistics.median(chat(url, bearer, long_prompt(f"cold-{i}-{time.time()}"), 1)[1]
                                for i in range(5))
    # Four streams at once.
    outputs = []
    def stream(i):
        _, _, _, chunks = chat(url, bearer, f"Story number {i}: " + short, 128)
        outputs.append(chunks)
    started = time.perf_counter()
    threads = [threading.Thread(target=stream, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    concurrent = sum(outputs) / (time.perf_counter() - started)
    # Greedy answers alone and together.
    prompts = [long_prompt(f"case-{i}") for i in range(4)] + [
        "Write a short poem about the sea.", "List four metals and one use of each.",
        "Explain how a bicycle gear works.", "Describe a forest in spring."]
    alone = [chat(url, bearer, p, 48)[0] for p in prompts]
    mismatches, rng = 0, random.Random(5)
    for _ in range(4):
        answers = {}
        def ask(i):
            answers[i] = chat(url, bearer, prompts[i], 48)[0]
        threads = []
        for i in rng.sample(range(len(prompts)), len(prompts)):
            time.sleep(rng.random() * 0.05)
            threads.append(threading.Thread(target=ask, args=(i,)))
            threads[-1].start()
        for t in threads:
            t.join()
        mismatches += sum(answers[i] != alone[i] for i in range(len(prompts)))
    print(json.dumps({"decode_short": decode_short, "decode_long": decode_long,
                      "prefill_long_ms": 1000 * prefill, "concurrent_tok_s": concurrent,
                      "mismatches": mismatches, "requests": 4 * len(prompts)}))


if __name__ == "__main__":
    main(*sys.argv[1:])
