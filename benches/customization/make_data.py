"""Write a deterministic synthetic fine-tuning set: JSONL of {"prompt", "completion"}.

Each record is about a made-up product: the prompt gives a few of its facts and asks a
question, the completion answers in full sentences. Prompt and completion each run to
roughly 40-200 tokens (SmolLM2's tokenizer). The same --seed always gives the same file,
so Basalt and the PEFT peer train on identical data.

    python make_data.py --records 64 --out train.jsonl --seed 7
"""
import argparse
import json
import random

SYLLABLES = ["ka", "lo", "mi", "ra", "ven", "tor", "zu", "pel", "nix", "ar", "qua", "dre", "sol", "fi"]
KINDS = ["kettle", "bike lamp", "desk chair", "rain jacket", "drone", "coffee grinder", "tent",
         "keyboard", "water filter", "smart plug", "hiking boot", "blender", "headlamp", "backpack"]
MATERIALS = ["recycled aluminium", "bamboo fibre", "stainless steel", "ripstop nylon",
             "walnut wood", "carbon composite", "borosilicate glass", "cork"]
COLOURS = ["slate grey", "moss green", "ochre", "midnight blue", "coral", "sand", "graphite"]
PLACES = ["Porto", "Lyon", "Kraków", "Tampere", "Ghent", "Bilbao", "Aarhus", "Brno", "Turin"]
QUESTIONS = [
    "Write a short product description for a customer who asked about it.",
    "A customer wants to know if this is a good fit for them. Summarise the key facts.",
    "Answer the support ticket: what should the customer know before buying?",
    "Explain the product to a new sales colleague in plain words.",
    "Draft the answer for the product page's frequently asked questions.",
]


def product(rng):
    name = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()
    return {
        "name": f"{name} {rng.randint(2, 9)}{rng.choice('SXLP')}",
        "kind": rng.choice(KINDS),
        "material": rng.choice(MATERIALS),
        "colour": rng.choice(COLOURS),
        "place": rng.choice(PLACES),
        "weight": rng.randint(120, 4800),
        "price": rng.randint(19, 480) + 0.99,
        "warranty": rng.randint(1, 5),
        "battery": rng.randint(4, 60),
        "year": rng.randint(2015, 2024),
        "rating": round(rng.uniform(3.1, 4.9), 1),
        "reviews": rng.randint(12, 9000),
    }


FACTS = [
    lambda p: f"It is made of {p['material']}.",
    lambda p: f"It comes in {p['colour']}.",
    lambda p: f"It weighs {p['weight']} grams.",
    lambda p: f"It costs {p['price']:.2f} euros.",
    lambda p: f"The warranty lasts {p['warranty']} years.",
    lambda p: f"The battery lasts about {p['battery']} hours on one charge.",
    lambda p: f"It is assembled in a small workshop in {p['place']}.",
    lambda p: f"The first version came out in {p['year']}.",
    lambda p: f"Buyers rate it {p['rating']} out of 5 across {p['reviews']} reviews.",
]
EXTRAS = [
    "Spare parts are sold separately and ship within a week.",
    "The packaging is plastic-free and can go in paper recycling.",
    "It should be cleaned with a dry cloth only.",
    "Returns are accepted within 30 days if the seal is unbroken.",
    "It is not suitable for children under eight.",
    "A firmware update is planned for next spring.",
]


def record(rng):
    p = product(rng)
    facts = rng.sample(FACTS, rng.randint(3, len(FACTS)))
    prompt = (f"Product sheet for the {p['name']} {p['kind']}. "
              + " ".join(f(p) for f in facts) + " " + rng.choice(QUESTIONS))
    told = rng.sample(facts, rng.randint(2, len(facts)))
    extras = rng.sample(EXTRAS, rng.randint(1, 4))
    completion = (f"The {p['name']} is a {p['kind']} from {p['place']}. "
                  + " ".join(f(p) for f in told) + " " + " ".join(extras)
                  + f" In short, the {p['name']} suits anyone who wants a {p['kind']} "
                    f"in {p['colour']} that lasts.")
    return {"prompt": prompt, "completion": completion}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=64)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with open(args.out, "w", encoding="utf-8") as f:
        for _ in range(args.records):
            f.write(json.dumps(record(rng), ensure_ascii=False) + "\n")
    print(f"wrote {args.records} records to {args.out} (seed {args.seed})")


if __name__ == "__main__":
    main()
