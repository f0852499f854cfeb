"""Every figure the README's results section quotes appears in a results file the same bullet
cites, to the README's precision: a reader who follows the link finds the number."""

import re
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "experiments" / "results"

# A number followed by one of these is a setting or a budget (256 envs, 16 epochs), not a finding.
_SETTING_UNITS = re.compile(
    r"\s*(envs|env steps|steps|-step|x |minibatches|episodes|iterations|seeds|min\b|actions|"
    r"attempts|members|calls|epochs|dims)"
)
_TOKEN = re.compile(r"\d[\d,]*(?:\.\d+)?")


def _bullets() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Experiments and results") : readme.index("## Layout")]
    return [b.replace("\n", " ") for b in re.split(r"\n(?=- )", section)]


def _quoted(bullet: str) -> list[str]:
    """The findings a bullet quotes: numbers with decimals, and whole numbers of three digits
    or more, outside code spans and links (commands, paths, flags); not budgets and settings
    (a number with a k / M suffix or followed by a unit such as "envs")."""
    prose = re.sub(r"`[^`]*`|\]\([^)]*\)", " ", bullet)
    out = []
    for m in _TOKEN.finditer(prose):
        before, after = prose[m.start() - 1 : m.start()], prose[m.end() : m.end() + 1]
        text = m.group().rstrip(",").replace(",", "")
        if before.isalnum() or before in "._-/" and before or (after.isalpha() and after != "x"):
            continue
        if _SETTING_UNITS.match(prose, m.end()) or "goal" in prose[m.start() - 12 : m.start()]:
            continue  # a budget, a setting or a goal set beforehand
        if "." in text or len(text) >= 3:
            out.append(text)
    return out


def _file_numbers(names: list[str]) -> list[float]:
    values = []
    for name in names:
        text = (RESULTS / name).read_text().replace(",", "")
        values += [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", text)]
    return values


def _found(quoted: str, values: list[float]) -> bool:
    """Whether some value rounds (half up, as one rounds by hand) to ``quoted``; a share may
    be quoted as a percentage."""
    step = Decimal(1).scaleb(-len(quoted.partition(".")[2]))
    n = Decimal(quoted)
    return any(
        Decimal(repr(abs(x) * scale)).quantize(step, ROUND_HALF_UP) == n
        for x in values
        for scale in (1, 100)
    )


def test_every_number_the_readme_quotes_is_in_the_file_it_cites():
    checked, missing = 0, []
    for bullet in _bullets():
        cited = sorted(set(re.findall(r"experiments/results/([\w\-]+\.md)", bullet)))
        if not cited:
            continue
        values = _file_numbers(cited)
        for quoted in _quoted(bullet):
            checked += 1
            if not _found(quoted, values):
                missing.append(f"{quoted} (cited: {', '.join(cited)})")
    assert checked > 100  # the reader sees the README's findings
    assert missing == [], "\n".join(missing)


def test_the_check_finds_a_number_that_is_not_there():
    values = _file_numbers(["under_conditioned.md"])
    assert _found("0.53", values) and _found("51.7", values)  # 0.517 as a percentage
    assert not _found("0.5371", values)
