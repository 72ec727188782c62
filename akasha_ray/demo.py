"""Realistic demo memories: several AI systems holding short conversations on their own topics.

`generate` is deterministic for a given seed and `now`; `write_jsonl` saves records for ingest.
Run `python -m akasha_ray.demo --n 1000 --out demo.jsonl` to write a file.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import string
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from operator import itemgetter
from pathlib import Path

Slot = Sequence[str] | Callable[[random.Random], str]

_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August")
_MONTHS += ("September", "October", "November", "December")
_PEOPLE = ("Maria", "James", "Aiko", "Priya", "Lucas", "Fatima", "Chen", "Olivia", "Mateo", "Amara")

SLOTS: dict[str, Slot] = {
    "product": ("wireless earbuds", "standing desk", "espresso machine", "4K monitor",
                "running shoes", "air purifier", "mechanical keyboard", "smartwatch",
                "cast-iron skillet", "robot vacuum", "hiking backpack", "electric kettle"),
    "order": lambda r: f"#{r.randint(100000, 999999)}",
    "amount": lambda r: f"${r.randint(12, 950)}.{r.randint(0, 99):02d}",
    "date": lambda r: f"{r.choice(_MONTHS)} {r.randint(1, 28)}",
    "plan": ("Basic", "Plus", "Pro", "Team", "Enterprise"),
    "carrier": ("UPS", "FedEx", "DHL", "USPS", "Royal Mail"),
    "library": ("pandas", "requests", "asyncio", "SQLAlchemy", "FastAPI", "pydantic", "NumPy",
                "Django", "pytest", "Celery", "matplotlib", "aiohttp"),
    "error": ("KeyError: 'user_id'",
              "TypeError: 'NoneType' object is not subscriptable",
              "RecursionError: maximum recursion depth exceeded",
              "IndexError: list index out of range",
              "ModuleNotFoundError: No module named 'yaml'",
              "AttributeError: 'dict' object has no attribute 'id'",
              "ValueError: too many values to unpack",
              "RuntimeError: event loop is closed",
              "UnicodeDecodeError", "MemoryError"),
    "service": ("payments-api", "checkout", "auth-service", "search-indexer",
                "notification-worker", "billing-gateway", "image-resizer"),
    "k8s_object": ("deployment", "StatefulSet", "CronJob", "DaemonSet", "ReplicaSet"),
    "k8s_state": ("CrashLoopBackOff", "ImagePullBackOff", "Pending", "OOMKilled",
                  "CreateContainerConfigError"),
    "origin": ("Boston", "Berlin", "Sydney", "Toronto", "Mumbai", "Amsterdam", "Denver"),
    "city": ("Lisbon", "Tokyo", "Chicago", "Nairobi", "Barcelona", "Vancouver", "Singapore",
             "Buenos Aires", "Prague", "Seoul", "Cape Town", "Reykjavik", "Marrakesh"),
    "airline": ("Lufthansa", "Delta", "Emirates", "KLM", "Qantas", "JetBlue", "Air Canada",
                "Singapore Airlines", "TAP Air Portugal"),
    "hotel": ("Hotel Aurora", "The Grand Meridian", "Harbor View Inn", "Casa Verde",
              "Park Lane Suites", "The Linden House", "Sunset Lodge"),
    "nights": lambda r: str(r.randint(2, 9)),
    "hours": lambda r: str(r.randint(4, 7)),
    "person": _PEOPLE,
    "food": ("oatmeal", "greek yogurt", "lentils", "salmon", "quinoa", "almonds", "broccoli",
             "tofu", "chickpeas", "eggs", "spinach"),
    "nutrient": ("protein", "fiber", "iron", "vitamin D", "magnesium", "omega-3", "calcium"),
    "field": ("protein folding", "graph neural networks", "coral reef bleaching",
              "urban heat islands", "CRISPR off-target effects", "retrieval-augmented generation",
              "microplastics in freshwater", "long COVID", "battery degradation"),
    "database": ("PubMed", "Google Scholar", "arXiv", "Semantic Scholar", "Web of Science"),
    "year": lambda r: str(r.randint(2015, 2024)),
    "income": lambda r: f"${r.randint(25, 140) * 100:,}",
    "category": ("groceries", "dining out", "subscriptions", "transport", "clothing",
                 "childcare", "entertainment", "coffee"),
    "tax_form": ("W-2", "1099-NEC", "1099-INT", "Schedule C", "1098-E"),
    "deduction": ("home office costs", "student loan interest", "charitable donations",
                  "medical expenses", "mortgage interest"),
    "dish": ("chicken tikka masala", "mushroom risotto", "vegetable lasagna", "pad thai",
             "shakshuka", "beef stew", "banana bread", "lentil soup", "fish tacos"),
    "ingredient": ("heavy cream", "eggs", "butter", "fish sauce", "fresh basil", "saffron",
                   "buttermilk", "pine nuts", "coconut milk"),
    "servings": lambda r: str(r.randint(2, 12)),
    "team": ("platform engineering", "sales", "customer success", "finance", "design",
             "data science", "legal"),
    "tool": ("Slack", "Okta", "Jira", "GitHub", "Workday", "the VPN", "Salesforce"),
    "manager": ("Dana Whitfield", "Rafael Ortiz", "Mei Tanaka", "Samir Haddad", "Grace Mensah"),
    "benefit": ("dental plan", "401(k) plan", "vision coverage", "gym stipend",
                "health insurance", "commuter benefit"),
}  # fmt: skip

# topic -> (user sentences, assistant sentences); each sentence is a str.format template.
TOPICS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "billing": (
        ("I was charged {amount} twice for my {plan} plan this month.",
         "Why does my latest invoice show {amount} when my {plan} subscription should be cheaper?",
         "Can you update the credit card on file for my {plan} account?",
         "My payment for order {order} was declined but the bank says the card is fine.",
         "I need a copy of the invoice for order {order} for my expense report.",
         "How do I switch from monthly to annual billing on the {plan} plan?"),
        ("I can see the duplicate charge of {amount} and have flagged it with our billing team.",
         "Your {plan} plan renews on {date}, and the invoice will be emailed to you that day.",
         "I've updated the payment method, so the next charge of {amount} goes to the new card.",
         "The decline on order {order} came from the payment processor, so please try again.",
         "You can download every invoice under Account > Billing, including order {order}.",
         "Annual billing on the {plan} plan saves about two months of fees."),
    ),
    "refunds": (
        ("My {product} arrived damaged and I'd like a refund for order {order}.",
         "I returned the {product} two weeks ago but I still haven't received my {amount} refund.",
         "Can I get my money back for the {product}? It stopped working after three days.",
         "The {product} I ordered is not what the website showed, so I want to return it.",
         "Is it too late to request a refund for order {order}? I bought it on {date}.",
         "Please cancel order {order} and refund the {amount} to my original payment method."),
        ("I'm sorry the {product} was damaged; I've issued a full refund of {amount}.",
         "Refunds usually reach your card within 5 to 10 business days after we get the return.",
         "I've emailed you a prepaid return label for the {product}; the refund starts on scan.",
         "Order {order} is within the 30-day return window, so you're eligible for a refund.",
         "Please send a photo of the damaged {product} so I can approve the refund right away.",
         "The refund of {amount} was processed on {date}; your bank may take a few days."),
    ),
    "shipping": (
        ("Where is my {product}? The tracking for order {order} hasn't updated in four days.",
         "Can I change the delivery address for order {order} to my office in {origin}?",
         "The {carrier} driver marked my package as delivered but nothing arrived.",
         "Do you offer express shipping for the {product}? I need it by {date}.",
         "My order {order} was split into two shipments and only one has arrived.",
         "How much does it cost to ship a {product} abroad?"),
        ("Order {order} is with {carrier} and is expected to arrive on {date}.",
         "I've opened a trace with {carrier} for the missing package and will update you soon.",
         "The address can still be changed because order {order} hasn't left the warehouse.",
         "Express shipping for the {product} costs {amount} and takes one to two business days.",
         "The second parcel ships separately from another warehouse, tracked by {carrier}.",
         "If the package doesn't turn up by {date}, we'll send a replacement {product} for free."),
    ),
    "python-debugging": (
        ("My script crashes with {error} when I call a function from {library}.",
         "I'm getting {error} after upgrading {library}, any idea why?",
         "Why does my loop over a {library} result raise {error} only on the second run?",
         "My pytest suite passes locally but fails in CI with {error}.",
         "How do I debug a memory leak in a long-running {library} worker?",
         "The traceback ends with {error} inside {library}, but my own code looks fine."),
        ("That error usually means a value is missing earlier than you expect, so print it "
         "right before the failing line.",
         "Pin {library} to the previous version and read its changelog for changed defaults.",
         "Run the script under python -m pdb and step into the {library} call.",
         "CI may use another Python version, so check that {library} is installed the same way.",
         "Use tracemalloc to take two snapshots and compare which objects keep growing.",
         "Write a minimal reproduction; if {error} still appears, file an issue with {library}."),
    ),
    "kubernetes": (
        ("My {service} pod is stuck in {k8s_state} after the last deploy.",
         "How do I roll back the {k8s_object} for {service} to the previous revision?",
         "The {service} {k8s_object} keeps restarting and kubectl shows {k8s_state}.",
         "What's the right way to store the database password for {service} in the cluster?",
         "Our horizontal pod autoscaler never scales {service} above two replicas.",
         "The output of kubectl logs for {service} is empty while the pod is in {k8s_state}."),
        ("Run kubectl describe pod on {service}; the events at the bottom explain {k8s_state}.",
         "Use kubectl rollout undo on the {k8s_object} to restore the previous {service} revision.",
         "{k8s_state} often comes from wrong resource limits, so check the memory requests.",
         "Put the password in a Kubernetes Secret and mount it as an environment variable.",
         "Check that metrics-server runs and that the HPA for {service} targets the right CPU.",
         "Try kubectl logs --previous to see output from the container that crashed."),
    ),
    "flight-booking": (
        ("I need a round-trip flight from {origin} to {city} leaving on {date}.",
         "Are there any direct {airline} flights to {city} next week?",
         "Can you find me a cheaper flight to {city}, ideally under {amount}?",
         "My {airline} flight to {city} was cancelled; what are my options?",
         "I'd like to add a checked bag and a window seat on my flight to {city}.",
         "Please book two economy seats from {origin} to {city} for me and {person}."),
        ("I found a {airline} flight from {origin} to {city} on {date} for {amount} in economy.",
         "There is one direct {airline} flight to {city}; the others connect through a hub.",
         "Since {airline} cancelled the flight, you can rebook for free or get your fare back.",
         "I've added a checked bag and seat 23A to your booking to {city}.",
         "Flying out on {date} instead brings the fare to {city} down to {amount}.",
         "Both seats for you and {person} are confirmed, and the e-tickets are in your inbox."),
    ),
    "hotels": (
        ("Can you find a hotel in {city} for {nights} nights starting {date}?",
         "I'd like a quiet room with a king bed at {hotel} in {city}.",
         "Does {hotel} in {city} have free breakfast and an airport shuttle?",
         "I need to cancel my reservation at {hotel}; is there a fee?",
         "What are some family-friendly hotels near the old town in {city}?",
         "Can I check in early at {hotel}? My flight lands at 7 am."),
        ("{hotel} in {city} has a king room for {nights} nights from {date} at {amount} a night.",
         "Breakfast is included at {hotel}, and the airport shuttle runs every 30 minutes.",
         "Your booking at {hotel} can be cancelled free of charge up to 48 hours before arrival.",
         "I've requested early check-in at {hotel}; the front desk will confirm on the day.",
         "In {city}, {hotel} and two nearby guesthouses have family rooms and a pool.",
         "I reserved a quiet room on a high floor at {hotel} for {nights} nights."),
    ),
    "sleep": (
        ("I keep waking up at 3 am and can't fall back asleep.",
         "I only get about {hours} hours of sleep on weeknights; is that enough?",
         "Does drinking coffee after lunch really affect my sleep?",
         "My smartwatch says my deep sleep is low; what can I do?",
         "I feel tired even after sleeping {hours} hours; should I nap in the afternoon?",
         "How do I fix my sleep schedule after a long trip to {city}?"),
        ("Most adults need 7 to 9 hours, so {hours} hours a night likely builds a sleep debt.",
         "Keep the same wake-up time every day, even on weekends, to steady your body clock.",
         "Caffeine has a half-life of about five hours, so try cutting it off before noon.",
         "If you wake at night, get up after 20 minutes and read in dim light until sleepy.",
         "A 20-minute nap before 3 pm can help without hurting your night's sleep.",
         "Get bright morning light and avoid screens an hour before bed to deepen your sleep."),
    ),
    "nutrition": (
        ("How much {nutrient} should I eat per day if I work out three times a week?",
         "Is {food} a good source of {nutrient}?",
         "I'm vegetarian; how can I get enough {nutrient} without supplements?",
         "What's a healthy breakfast that keeps me full until lunch?",
         "Should I track calories or just eat more {food}?",
         "I get an energy crash every afternoon; could it be my diet?"),
        ("Yes, {food} is a solid source of {nutrient} and fits well into a balanced meal.",
         "Spread your {nutrient} across three meals rather than taking it all at once.",
         "Pair {food} with fruit and some protein for a breakfast that keeps you full.",
         "Afternoon crashes often follow a sugary lunch, so add fiber and protein to it.",
         "Beans, lentils and {food} can cover most of a vegetarian's {nutrient} needs.",
         "Instead of counting calories, fill half your plate with vegetables and add {food}."),
    ),
    "literature-search": (
        ("Can you find recent papers on {field} published since {year}?",
         "I need a review article about {field} for my thesis introduction.",
         "Search {database} for studies comparing methods in {field}.",
         "Who are the most cited authors working on {field}?",
         "Summarize the main open questions in {field} research.",
         "I need peer-reviewed sources on {field}, not preprints."),
        ("I found 14 papers on {field} in {database} since {year}, led by a widely cited review.",
         "A good starting point is a systematic review of {field} covering work up to {year}.",
         "Filtering {database} to peer-reviewed journals leaves 9 relevant studies on {field}.",
         "Open questions in {field} concern reproducibility, small samples and benchmarks.",
         "I've exported the citations on {field} to a BibTeX file you can import into Zotero.",
         "Several labs publish regularly on {field}; I've listed their top papers with abstracts."),
    ),
    "budgeting": (
        ("I earn {income} a month; how should I split it between needs, wants and savings?",
         "I'm spending too much on {category}; how do I cut back?",
         "Can you help me build a budget to save {amount} for a trip to {city}?",
         "Should I pay off my credit card or build an emergency fund first?",
         "How much of my {income} monthly income should go to rent?",
         "What's a simple way to track my spending on {category} every month?"),
        ("With {income} a month, the 50/30/20 rule puts half toward needs and a fifth to savings.",
         "Set a weekly cap for {category} and move whatever is left to savings on Sunday.",
         "Saving {amount} for {city} is realistic if you set aside a fixed sum each payday.",
         "Pay off high-interest card debt first, but keep a buffer of one month's expenses.",
         "Try to keep rent under a third of your take-home pay of {income}.",
         "A budgeting app or a spreadsheet with one row per {category} purchase works well."),
    ),
    "taxes": (
        ("Where do I report the income from my {tax_form} on my tax return?",
         "Can I deduct {deduction} on this year's taxes?",
         "I forgot to include a {tax_form} when I filed; what should I do?",
         "When is the filing deadline if I ask for an extension?",
         "I freelance on the side; do I have to pay estimated taxes each quarter?",
         "How long should I keep my {tax_form} and the receipts for {deduction}?"),
        ("Income on a {tax_form} goes on your return and must match what the issuer reported.",
         "You can deduct {deduction} if you itemize, so compare that with the standard deduction.",
         "If you missed a {tax_form}, file an amended return with the corrected figures.",
         "An extension moves filing to October 15, but any tax owed is still due in April.",
         "Freelancers usually pay estimated taxes quarterly to avoid an underpayment penalty.",
         "Keep tax records, including receipts for {deduction}, for at least three years."),
    ),
    "recipes": (
        ("How do I make {dish} for {servings} people?",
         "I don't have {ingredient}; what can I use instead in {dish}?",
         "My {dish} always turns out bland; what am I doing wrong?",
         "Can I prepare {dish} the night before a dinner party?",
         "What's a quick weeknight dinner I can make with {ingredient}?",
         "How long does leftover {dish} keep in the fridge?"),
        ("For {servings} servings of {dish}, scale the base recipe and cook a little longer.",
         "You can replace {ingredient} with what you have, though the texture will change.",
         "Season {dish} in layers and finish with salt and a squeeze of lemon to brighten it.",
         "Yes, {dish} reheats well, so cook it a day ahead and keep it covered in the fridge.",
         "With {ingredient}, a 20-minute stir-fry or pasta makes an easy weeknight dinner.",
         "Leftover {dish} keeps for three to four days in an airtight container."),
    ),
    "onboarding": (
        ("It's my first day on the {team} team; what should I set up first?",
         "I still don't have access to {tool}; who should I ask?",
         "Who is my onboarding buddy? My manager is {manager}.",
         "Where can I find the onboarding checklist for new hires in {team}?",
         "When do I get my laptop and badge?",
         "Is there a training I need to finish in my first week?"),
        ("Welcome to {team}; start with your laptop setup, then request access to {tool}.",
         "Access to {tool} is approved by IT; I've opened a ticket and copied {manager}.",
         "{manager} has assigned {person} as your onboarding buddy for the first month.",
         "The {team} onboarding checklist is pinned in the team channel and on the intranet.",
         "New hires finish security and compliance training within their first five days.",
         "Your laptop ships on {date}, and you can pick up your badge at reception."),
    ),
    "benefits": (
        ("How do I enroll in the {benefit}?",
         "When does my {benefit} start after joining?",
         "Can I add my partner {person} to my health insurance?",
         "How much paid parental leave do we get?",
         "What is the company match on retirement contributions?",
         "I missed open enrollment; can I still change my {benefit}?"),
        ("You can enroll in the {benefit} through Workday within 30 days of your start date.",
         "The {benefit} becomes active on the first day of the month after you join.",
         "Adding {person} as a dependent needs proof of relationship in the benefits portal.",
         "Employees get 16 weeks of fully paid parental leave within the first year.",
         "The company matches 100% of retirement contributions up to 5% of your salary.",
         "Outside open enrollment you can change the {benefit} only after a life event."),
    ),
}  # fmt: skip

# system -> (relative conversation volume, topic -> weight)
SYSTEMS: dict[str, tuple[float, dict[str, float]]] = {
    "support-bot": (5, {"billing": 4, "refunds": 4, "shipping": 3}),
    "code-assistant": (4, {"python-debugging": 6, "kubernetes": 4}),
    "travel-agent": (2.5, {"flight-booking": 5, "hotels": 4, "budgeting": 1}),
    "health-coach": (2, {"sleep": 5, "nutrition": 5}),
    "research-assistant": (2, {"literature-search": 8, "python-debugging": 2}),
    "finance-helper": (2, {"budgeting": 5, "taxes": 4, "billing": 1}),
    "recipe-bot": (1.5, {"recipes": 8, "nutrition": 2}),
    "hr-assistant": (1.5, {"onboarding": 5, "benefits": 4, "taxes": 1}),
}

_FIELDS: dict[str, tuple[str, ...]] = {
    topic: tuple(
        sorted({f for t in (*user, *bot) for _, f, _, _ in string.Formatter().parse(t) if f})
    )
    for topic, (user, bot) in TOPICS.items()
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_ROLES = ("user", "assistant")


class _System:
    """One demo system: name, topics, cumulative topic weights and a conversation counter."""

    def __init__(self, name: str, mix: dict[str, float]) -> None:
        self.name = name
        self.topics = list(mix)
        self.cum = list(accumulate(mix.values()))
        self.count = 0


def _systems(k: int, rng: random.Random) -> tuple[list[_System], list[float]]:
    """The first `k` systems and their cumulative volume weights; extras get random topic mixes."""
    out, weights, names = [], [], list(SYSTEMS)
    for i in range(k):
        if i < len(names):
            name = names[i]
            volume, mix = SYSTEMS[name]
        else:
            name, volume = f"agent-{i + 1:02d}", 1.0
            mix = {t: rng.randint(1, 5) for t in rng.sample(sorted(TOPICS), rng.randint(2, 3))}
        out.append(_System(name, mix))
        weights.append(volume)
    return out, list(accumulate(weights))


def _fill(topic: str, rng: random.Random) -> dict[str, str]:
    """Pick one value per slot used by `topic`, shared by the whole conversation."""
    values = {}
    for field in _FIELDS[topic]:
        slot = SLOTS[field]
        values[field] = slot(rng) if callable(slot) else rng.choice(slot)
    return values


def _texts(
    rng: random.Random, pool: Sequence[str], values: dict[str, str], count: int, most: int
) -> list[str]:
    """`count` texts of 1 to `most` sentences, dealt from the shuffled `pool` to avoid repeats."""
    deck = list(pool)
    rng.shuffle(deck)
    deck += deck
    texts, i = [], 0
    for _ in range(count):
        k = 1 + int(rng.random() * most)
        texts.append(" ".join(deck[i : i + k]).format_map(values))
        i = (i + k) % len(pool)
    return texts


def _check(n: int, systems: int, days: float, now: datetime | None) -> None:
    """Reject arguments `generate` cannot honour, naming the argument."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if systems < 1:
        raise ValueError(f"systems must be >= 1, got {systems}")
    if not (days > 0 and math.isfinite(days)):
        raise ValueError(f"days must be a positive finite number, got {days}")
    if now is not None and now.utcoffset() is None:
        raise ValueError("now must be timezone-aware (e.g. datetime.now(UTC))")


def generate(
    n: int, *, systems: int = 8, days: float = 120, seed: int = 0, now: datetime | None = None
) -> list[dict]:
    """Exactly `n` demo records from `systems` systems over the `days` before `now`.

    Records are sorted by `created_at`; the same arguments (including `now`) give the same output.
    """
    _check(n, systems, days, now)
    rng = random.Random(seed)
    end = now if now is not None else datetime.now(UTC)
    end_us = (end - _EPOCH) // _US
    window = int(days * 86_400_000_000)
    fleet, cum = _systems(systems, rng)
    order = rng.sample(fleet, len(fleet))  # every system gets a conversation before repeats
    rows: list[tuple[int, dict]] = []
    while len(rows) < n:
        system = order.pop() if order else rng.choices(fleet, cum_weights=cum)[0]
        system.count += 1
        topic = rng.choices(system.topics, cum_weights=system.cum)[0]
        user, bot = TOPICS[topic]
        values = _fill(topic, rng)
        turns = min(2 + int(rng.random() * 7), n - len(rows))
        asks = _texts(rng, user, values, (turns + 1) // 2, 2)
        answers = _texts(rng, bot, values, turns // 2, 3)
        offsets = [0]
        for i in range(1, turns):  # the assistant replies within seconds, the user within minutes
            gap = 2 + 43 * rng.random() if i % 2 else 20 + 580 * rng.random()
            offsets.append(offsets[-1] + int(gap * 1_000_000))
        if offsets[-1] > window:
            offsets = [o * window // offsets[-1] for o in offsets]
        start = end_us - window + rng.randint(0, window - offsets[-1])
        conversation_id = f"{system.name}-c{system.count:05d}"
        for i, offset in enumerate(offsets):
            record = {
                "system_id": system.name,
                "conversation_id": conversation_id,
                "content": answers[i // 2] if i % 2 else asks[i // 2],
                "created_at": (_EPOCH + (start + offset) * _US).isoformat(timespec="microseconds"),
                "metadata": {"role": _ROLES[i % 2], "topic": topic, "turn": i + 1},
            }
            rows.append((start + offset, record))
    rows.sort(key=itemgetter(0))
    return [record for _, record in rows]


def write_jsonl(path: str | Path, records: Iterable[dict]) -> int:
    """Write one JSON object per line (UTF-8) and return how many were written."""
    count = 0
    with Path(path).open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    """Command line: write demo records to a JSON-lines file."""
    parser = argparse.ArgumentParser(description="Write Akasha demo memories as JSON lines.")
    parser.add_argument("--n", type=int, default=1000, help="number of records")
    parser.add_argument("--systems", type=int, default=8, help="number of AI systems")
    parser.add_argument("--days", type=float, default=120, help="days of history before now")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--out", default="demo.jsonl", help="output file")
    args = parser.parse_args(argv)
    try:
        records = generate(args.n, systems=args.systems, days=args.days, seed=args.seed)
    except ValueError as exc:
        parser.error(str(exc))
    count = write_jsonl(args.out, records)
    print(f"wrote {count} records to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
