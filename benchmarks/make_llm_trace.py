"""Generate the agent-traffic trace replayed by benchmarks/llm_cache_trace.py (seeded, so the
checked-in file is reproducible: ``python benchmarks/make_llm_trace.py`` rewrites it byte for byte).

    python benchmarks/make_llm_trace.py [--out benchmarks/data/llm_trace/trace.jsonl] [--sessions 70] [--seed 24]

Provenance: synthetic, written by this script — no recorded user data. It imitates what two
coding agents (two OpenCode processes on one machine, working on one repository) send to their
LLM provider, in the shapes OpenCode sends (OpenAI chat completions):

* three agent roles with long system prompts (``build``, ``plan``, ``general``), shared by every
  request of the role and by both agents — the prompt is the client's, not the user's;
* sessions on tasks drawn Zipf-distributed from 48 repository tasks, so both agents often work on
  the same task (a team splitting work, a retried session, a sub-agent asked the same thing);
* tool-result follow-ups: the model's tool call (read the task's file, run its tests) and the
  tool's output appended to the conversation; the output is a function of the task, so two
  agents reading the same file send the same follow-up;
* near-duplicate questions on a ``general`` sub-agent: a question, later its rewording (label
  ``equivalent``: the same answer is right) or the same template about another subject (label
  ``near_miss``: reusing the earlier answer would be wrong);
* 8 % of requests sample at temperature 0.7 (not cacheable: the cache must pass them through).

Each line after the header is one request: ``agent`` (a | b), ``seq`` (order within the agent),
``intent`` (requests with the same intent need the same answer — the ground truth for false
hits), ``label`` (first | repeat | equivalent | near_miss | followup | sampled), and ``request``
(the chat-completions body; ``{"role": "system", "ref": NAME}`` stands for the header's prompt).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "data" / "llm_trace" / "trace.jsonl"
MODEL = "agent-model"

SYSTEM = {
    "build": (
        "You are the build agent of a coding assistant running in the user's terminal. You can read and edit "
        "files, run shell commands and search the repository through tools. Follow the repository's "
        "conventions, keep diffs small, write or update tests for every change, run them, and report what "
        "you changed with file paths. Never invent APIs; read the code first. Ask before destructive "
        "commands. Answer concisely; use Markdown code blocks for code. "
    ) * 4,
    "plan": (
        "You are the planning agent of a coding assistant. You do not edit files. Read the relevant code "
        "through tools, then produce an ordered plan: the files to change, the tests to add, the risks, "
        "and the commands to verify. Prefer the smallest plan that solves the task. "
    ) * 5,
    "general": (
        "You are a general-purpose sub-agent. Answer the question precisely and briefly, with one short "
        "example when it helps. If the question is ambiguous, state your assumption. "
    ) * 6,
}
VERBS = ["fix the failing test in", "explain", "refactor", "add type hints to", "document", "review"]
THINGS = ["cache.py", "auth.py", "csv_reader.py", "retry.py", "config.py", "ratelimit.py", "sse.py",
          "migrate.py"]
QUESTIONS = [  # (template, a rewording with the same meaning)
    ("How do I use {x} in Python?", "How can I use {x} in Python?"),
    ("Explain what {x} is.", "explain what {x} is"),
    ("What's the difference between a list and {x}?", "What is the difference between a list and {x}"),
    ("Show me an example of {x}.", "Show me an example of {x}!"),
    ("When should I use {x}?", "when should I use {x}"),
    ("What is {x} good for?", "What's {x} good for?"),
]
SUBJECTS = ["a mutex", "a semaphore", "a closure", "a generator", "a decorator", "a context manager",
            "a coroutine", "a deque", "a heap", "a bloom filter", "a trie", "a ring buffer", "a thread pool",
            "a weak reference", "a dataclass", "a named tuple"]


def zipf(rnd: random.Random, n: int, s: float = 1.1) -> int:
    return rnd.choices(range(n), weights=[1 / (k + 1) ** s for k in range(n)])[0]


def file_output(thing: str) -> str:
    body = "".join(f"def {thing[:-3]}_{i}(x):\n    return x + {i}\n\n" for i in range(6))
    return f"$ cat src/{thing}\n{body}"


def test_output(thing: str) -> str:
    name = thing[:-3]
    return (f"$ pytest -q tests/test_{name}.py\n{'.' * 12}F\nFAILED tests/test_{name}.py::test_{name}_edge"
            f" - AssertionError: 3 != 4\n1 failed, 12 passed in 0.41s")


def tool_call(call_id: str, name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}]}


def session(rnd: random.Random, tasks: list[tuple[str, str]], asked: list[tuple[int, str]]) -> list[dict[str, Any]]:
    """One agent session: a list of (intent, label, request) dicts in order."""
    out: list[dict[str, Any]] = []
    if rnd.random() < 0.3:  # a near-duplicate question to the general sub-agent
        sysmsg = {"role": "system", "ref": "general"}
        if asked and rnd.random() < 0.65:
            q, subject = rnd.choice(asked)
            if rnd.random() < 0.5:
                text, intent, label = QUESTIONS[q][1].format(x=subject), f"q{q}:{subject}", "equivalent"
            else:
                other = rnd.choice([s for s in SUBJECTS if s != subject])
                text, intent, label = QUESTIONS[q][0].format(x=other), f"q{q}:{other}", "near_miss"
                asked.append((q, other))
        else:
            q, subject = rnd.randrange(len(QUESTIONS)), rnd.choice(SUBJECTS)
            text, intent, label = QUESTIONS[q][0].format(x=subject), f"q{q}:{subject}", "first"
            asked.append((q, subject))
        req = {"model": MODEL, "temperature": 0, "messages": [sysmsg, {"role": "user", "content": text}]}
        return [{"intent": intent, "label": label, "request": req}]
    verb, thing = tasks[zipf(rnd, len(tasks))]
    role = "plan" if verb in ("explain", "review") else "build"
    sampled = rnd.random() < 0.08
    temperature = 0.7 if sampled else 0
    msgs: list[dict[str, Any]] = [{"role": "system", "ref": role},
                                  {"role": "user", "content": f"Please {verb} {thing}."}]
    intent = f"task:{role}:{verb}:{thing}"
    label = "sampled" if sampled else "first"
    out.append({"intent": intent, "label": label, "request": {"model": MODEL, "temperature": temperature,
                                                               "messages": list(msgs)}})
    msgs += [tool_call("call_1", "read", {"path": f"src/{thing}"}),
             {"role": "tool", "tool_call_id": "call_1", "content": file_output(thing)}]
    out.append({"intent": f"{intent}:read", "label": "sampled" if sampled else "followup",
                "request": {"model": MODEL, "temperature": temperature, "messages": list(msgs)}})
    if verb.startswith("fix") or rnd.random() < 0.4:
        msgs += [tool_call("call_2", "bash", {"command": f"pytest -q tests/test_{thing[:-3]}.py"}),
                 {"role": "tool", "tool_call_id": "call_2", "content": test_output(thing)}]
        out.append({"intent": f"{intent}:read:test", "label": "sampled" if sampled else "followup",
                    "request": {"model": MODEL, "temperature": temperature, "messages": list(msgs)}})
    return out


def build(sessions: int, seed: int) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    tasks = [(v, t) for t in THINGS for v in VERBS]
    rnd.shuffle(tasks)
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for agent in ("a", "b"):
        asked: list[tuple[int, str]] = []  # each agent's own earlier questions
        seq = 0
        for _ in range(sessions):
            for item in session(rnd, tasks, asked):
                key = json.dumps(item["request"], sort_keys=True)
                if item["label"] in ("first", "followup") and key in seen:
                    item["label"] = "repeat"
                seen.add(key)
                rows.append({"agent": agent, "seq": seq, **item})
                seq += 1
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--sessions", type=int, default=70, help="sessions per agent")
    ap.add_argument("--seed", type=int, default=24)
    args = ap.parse_args()
    rows = build(args.sessions, args.seed)
    header = {"kind": "header", "generator": "benchmarks/make_llm_trace.py", "seed": args.seed,
              "sessions_per_agent": args.sessions, "model": MODEL, "system": SYSTEM}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as f:
        for row in [header, *rows]:
            f.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
    labels: dict[str, int] = {}
    for r in rows:
        labels[r["label"]] = labels.get(r["label"], 0) + 1
    print(json.dumps({"requests": len(rows), "labels": labels, "out": str(args.out)}))


if __name__ == "__main__":
    main()
