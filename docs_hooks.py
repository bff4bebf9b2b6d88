"""MkDocs hook (``hooks:`` in mkdocs.yml): results tables read from the JSON in docs/, and the tutorials as pages.

Two markers may appear in any page under docs/:

``<!-- tfimp-table: FILE -->`` or ``<!-- tfimp-table: FILE#VIEW -->``
    becomes a Markdown table built from ``docs/FILE`` at build time. Without a
    view, FILE holds ``columns`` and ``rows`` (the tables in docs/tables/);
    a view (``fidelity``, ``methods-a``, ``methods-b``, ``methods-b98``,
    ``methods-c``, ``methods-str``, ``methods-own``, ``speed``,
    ``before-after``, ``torch-methods``) computes the table from a benchmark's raw JSON, as
    the benchmark script writes it.

``<!-- tfimp-source: FILE; command=...; revision=... -->``
    becomes one sentence naming the file, the command that produced it and
    the revision it was produced at. The file's own ``command`` and
    ``revision`` keys come first, then the marker's; without either
    revision, the last commit that changed the file (``git log``).

A marker that names a missing file, view or key stops the build with an
error naming the marker. No figure on a results page is typed by hand.
"""

from __future__ import annotations

import decimal
import json
import pathlib
import posixpath
import re
import statistics
import subprocess
from typing import Optional

ROOT = pathlib.Path(__file__).resolve().parent
DOCS = ROOT / "docs"
COLAB = ROOT / "colab"
#: The tutorials' folder, in the repository and in the site (``colab/01_quickstart.ipynb`` -> ``colab/01_quickstart/``).
TUTORIALS = "colab"
MARKER = re.compile(r"<!--\s*tfimp-(table|source):\s*(.+?)\s*-->")
MINUS = "\u2212"


class MarkerError(ValueError):
    """A marker names a file, view or key that does not exist."""


# -- numbers ---------------------------------------------------------------------------------------------------------


def fixed(value: float, digits: int = 2, sign: bool = False) -> str:
    """``value`` with ``digits`` decimals, halves rounded up as a reader rounds its printed form; minus as U+2212."""
    quantum = decimal.Decimal(1).scaleb(-digits)
    text = str(decimal.Decimal(repr(float(value))).quantize(quantum, rounding=decimal.ROUND_HALF_UP))
    if text.startswith("-"):
        text = MINUS + text[1:]
        if text.strip(MINUS + "0.") == "":
            text = text[1:]
    elif sign:
        text = "+" + text
    return text


def mean_std(values: list[float]) -> str:
    """``mean ± sample standard deviation``, two decimals."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{fixed(statistics.mean(values))} ± {fixed(spread)}"


def percent(fraction: float, digits: int = 0) -> str:
    return f"{fixed(100 * fraction, digits)}%"


def markdown_table(columns: list[str], rows: list[list[str]]) -> str:
    def cell(text) -> str:
        return str(text).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# -- reading ---------------------------------------------------------------------------------------------------------


def load(name: str) -> dict:
    path = DOCS / name
    if not path.is_file():
        raise MarkerError(f"docs/{name} does not exist")
    return json.loads(path.read_text(encoding="utf-8"))


def need(data: dict, key: str, name: str):
    try:
        return data[key]
    except (KeyError, TypeError):
        raise MarkerError(f"docs/{name} has no key {key!r}") from None


def _runs(data: dict, name: str, group: str) -> list[dict]:
    runs = [r for r in need(data, "results", name) if r["group"] == group]
    if not runs:
        raise MarkerError(f"docs/{name} holds no runs of group {group!r}")
    return runs


def _accuracies(runs: list[dict], method: str, target: float) -> list[float]:
    return [100 * r["test_accuracy"] for r in runs if r["method"] == method and abs(r["target"] - target) < 1e-9]


# -- views -----------------------------------------------------------------------------------------------------------

METHOD_LABELS = {"dense": "dense", "tfmot_gmp": "tfmot GMP (per layer)", "gmp": "GMP (global)", "dpf": "DPF",
                 "imp_ft": "IMP + FT", "imp_lrw": "IMP + LRW", "imp_slr": "IMP + SLR", "imp_clr": "IMP + CLR",
                 "imp_allr": "IMP + ALLR", "bimp": "BIMP", "str": "STR", "dnw": "DNW", "lc": "LC", "gsm": "GSM",
                 "cs": "CS", "dst": "DST"}
CRITERION_LABELS = {"global": "global", "uniform": "uniform", "uniform_plus": "uniform+", "erk": "ERK",
                    "lamp": "LAMP"}
FRONT_END_LABELS = {"tf_keras": "tf_keras (tfmot)", "tensorflow": "Keras 3 + TensorFlow", "jax": "Keras 3 + JAX",
                    "torch": "Keras 3 + PyTorch"}


def fidelity(data: dict, name: str) -> str:
    """The fidelity protocol: each method's test accuracy per seed, its mean, the authors' mean, the difference."""
    rows = []
    for entry in need(data, "summary", name):
        rows.append([METHOD_LABELS.get(entry["method"], entry["method"]), percent(entry["target_sparsity"]),
                     " / ".join(fixed(v) for v in entry["tfimp"]), fixed(entry["tfimp_mean"]),
                     fixed(entry["authors_mean"]), fixed(entry["difference"], sign=True)])
    seeds = " / ".join(str(s) for s in need(data, "summary", name)[0]["seeds"])
    return markdown_table(["method", "sparsity", f"tfimp, seeds {seeds}", "tfimp mean", "authors' mean",
                           "difference"], rows)


def methods_a(data: dict, name: str) -> str:
    """Claim (a): every method at every target, mean ± std over the seeds."""
    runs = _runs(data, name, "a")
    targets = sorted({r["target"] for r in runs if r["target"] > 0})
    methods = list(dict.fromkeys(r["method"] for r in runs))
    rows = []
    for method in methods:
        if method == "dense":
            rows.append([METHOD_LABELS["dense"] + " (no pruning)", mean_std(_accuracies(runs, "dense", 0.0))]
                        + [""] * (len(targets) - 1))
            continue
        rows.append([METHOD_LABELS.get(method, method)]
                    + [mean_std(_accuracies(runs, method, t)) if _accuracies(runs, method, t) else "" for t in targets])
    return markdown_table(["method"] + [percent(t) for t in targets], rows)


def methods_b(data: dict, name: str) -> str:
    """Claim (b) as far as raw runs exist: IMP + SLR with each criterion run in group b."""
    runs = _runs(data, name, "b")
    targets = sorted({r["target"] for r in runs})
    rows = []
    for method in dict.fromkeys(r["method"] for r in runs):
        label = CRITERION_LABELS.get(method.rsplit("_", 1)[-1], method)
        rows.append([label] + [mean_std(_accuracies(runs, method, t)) for t in targets])
    return markdown_table(["IMP + SLR with"] + [percent(t) for t in targets], rows)


def methods_b98(data: dict, name: str) -> str:
    """The per-layer sparsity each criterion chose (one run each) and its test accuracy."""
    runs = _runs(data, name, "b98")
    layers = list(runs[0]["layer_sparsity"])
    rows = [[f"{CRITERION_LABELS.get(r['criterion'], r['criterion'])} ({percent(r['target'])})"]
            + [percent(r["layer_sparsity"][layer], 1) for layer in layers] + [fixed(100 * r["test_accuracy"])]
            for r in runs]
    return markdown_table(["criterion (target)"] + layers + ["test accuracy"], rows)


def methods_c(data: dict, name: str) -> str:
    """Claim (c): the dense/retraining split of one budget against the retraining epochs per cycle."""
    runs = _runs(data, name, "c")
    per_cycle = sorted({r["retrain_epochs"] for r in runs})
    rows = []
    for dense in sorted({r["dense_epochs"] for r in runs}):
        budget = runs[0]["epochs"]
        row = [f"{dense} / {budget - dense} epochs"]
        for epochs in per_cycle:
            chosen = [r for r in runs if r["dense_epochs"] == dense and r["retrain_epochs"] == epochs]
            cycles = chosen[0]["cycles"]
            row.append(f"{mean_std([100 * r['test_accuracy'] for r in chosen])} "
                       f"({cycles} cycle{'s' if cycles != 1 else ''})")
        rows.append(row)
    columns = ["dense / retraining"] + [f"{e} epoch{'s' if e != 1 else ''} per cycle" for e in per_cycle]
    return markdown_table(columns, rows)


def methods_str(data: dict, name: str) -> str:
    """STR calibrated per target, and IMP + SLR rerun at the sparsity STR reached."""
    runs = _runs(data, name, "str")
    rows = []
    for target in sorted({r["target"] for r in runs}):
        str_runs = [r for r in runs if r["method"] == "str" and r["target"] == target]
        imp_runs = [r for r in runs if r["method"] == "imp_slr_at_str" and r["target"] == target]
        decay = decimal.Decimal(repr(str_runs[0]["str_weight_decay"]))
        rows.append([percent(target), f"{float(round(decay, 3 - decay.adjusted() - 1)):g}",
                     percent(statistics.mean(r["sparsity"] for r in str_runs), 2),
                     mean_std([100 * r["test_accuracy"] for r in str_runs]),
                     mean_std([100 * r["test_accuracy"] for r in imp_runs])])
    return markdown_table(["target", "decay on s", "STR reached (mean)", "STR", "IMP + SLR at that sparsity"], rows)


def methods_own(data: dict, name: str) -> str:
    """STR, CS and DST, each with its hyper-parameter for a target, and IMP + SLR rerun at the sparsity each
    reached."""
    runs = _runs(data, name, "own")
    rows = []
    for method in dict.fromkeys(r["method"] for r in runs if not r["method"].startswith("imp_slr_at_")):
        for target in sorted({r["target"] for r in runs if r["method"] == method}):
            own = [r for r in runs if r["method"] == method and r["target"] == target]
            imp = [r for r in runs if r["method"] == f"imp_slr_at_{method}" and r["target"] == target]
            value = decimal.Decimal(repr(own[0]["value"]))
            rows.append([METHOD_LABELS.get(method, method), percent(target),
                         f"{own[0]['hyperparameter']} {float(round(value, 3 - value.adjusted() - 1)):g}",
                         f"{mean_std([100 * r['sparsity'] for r in own])}%",
                         mean_std([100 * r["test_accuracy"] for r in own]),
                         mean_std([100 * r["test_accuracy"] for r in imp]) if imp else "not run"])
    # IMP + SLR runs at each seed's sparsity (older files: at the seeds' mean).
    return markdown_table(["method", "target", "hyper-parameter", "reached", "method",
                           "IMP + SLR at the sparsity reached"], rows)


def speed(data: dict, name: str) -> str:
    """Each front end's IMP wall time (median and range over repeats), paired with tf_keras', and its step times."""
    runs = [r for r in need(data, "results", name) if r.get("variant", "default") == "default"]
    low, high = need(data, "authors_wall_s", name)
    base = {r["repeat"]: r["imp_wall_s"] for r in runs if r["front_end"] == "tf_keras"}
    rows = []
    for front_end in dict.fromkeys(r["front_end"] for r in runs):
        mine = [r for r in runs if r["front_end"] == front_end]
        walls = [r["imp_wall_s"] for r in mine]
        paired = [r["imp_wall_s"] / base[r["repeat"]] for r in mine if r["repeat"] in base]
        costs = [r["mask_cost"] for r in mine]
        median = statistics.median(walls)
        rows.append([FRONT_END_LABELS.get(front_end, front_end),
                     f"{fixed(median, 1)} s ({fixed(min(walls), 1)}–{fixed(max(walls), 1)})",
                     f"{fixed(median / high)}–{fixed(median / low)}×",
                     f"{fixed(statistics.median(paired))}× ({fixed(min(paired))}–{fixed(max(paired))})",
                     f"{fixed(statistics.median(r['step_ms_plain'] for r in mine), 1)} ms",
                     f"{fixed(statistics.median(r['step_ms_masked'] for r in mine), 1)} ms",
                     f"{fixed(statistics.median(costs))}× ({fixed(min(costs))}–{fixed(max(costs))})"])
    repeats = len(base)
    return markdown_table(["front end", "IMP + SLR 98% wall, median (range)", f"/ authors' {fixed(low, 0)}–"
                           f"{fixed(high, 0)} s", "/ tf_keras, paired (range)", "plain step", "masked step",
                           f"mask cost ({repeats} repeats)"], rows)


def before_after(data: dict, name: str) -> str:
    """Each front end's IMP wall time at the current revision over the older one's, paired by repeat."""
    runs = need(data, "results", name)
    before = {(r["front_end"], r["repeat"]): r for r in runs if r.get("tree") == "before"}
    rows = []
    for front_end in dict.fromkeys(r["front_end"] for r in runs):
        pairs = [(r, before[(front_end, r["repeat"])]) for r in runs
                 if r["front_end"] == front_end and r.get("tree") == "current" and (front_end, r["repeat"]) in before]
        if not pairs:
            raise MarkerError(f"{name}: {front_end} has no current/before pair")
        ratios = [now["imp_wall_s"] / then["imp_wall_s"] for now, then in pairs]
        rows.append([FRONT_END_LABELS.get(front_end, front_end), str(len(pairs)),
                     ", ".join(f"{fixed(now['imp_wall_s'], 1)} / {fixed(then['imp_wall_s'], 1)} s" for now, then in pairs),
                     f"{fixed(statistics.median(ratios))}× ({fixed(min(ratios))}–{fixed(max(ratios))})",
                     ", ".join(sorted({percent(now["imp_test_accuracy"], 2) + (
                         "" if now["imp_test_accuracy"] == then["imp_test_accuracy"] else " (changed)")
                         for now, then in pairs}))])
    return markdown_table(["front end", "pairs", "IMP + SLR 98% wall, after / before", "after / before, median (range)",
                           "test accuracy after (same as before?)"], rows)


#: The implementations of benchmarks/torch_methods_reference.py, in the order its tables list them.
IMPLEMENTATION_LABELS = {"torch": "PyTorch reference", "torch64": "PyTorch reference, float64",
                         "torch_l2": "PyTorch reference, authors' extra L2", "tf_keras": "tfimp, tf_keras",
                         "jax": "tfimp, Keras 3 + JAX"}


def torch_methods(data: dict, name: str) -> str:
    """Each method of the PyTorch-reference protocol: every implementation's test accuracy per seed, sparsity and
    per-layer sparsity, and how far it ended from the PyTorch reference of the same seeds (means over the seeds)."""
    layers = need(data, "layers", name)
    results = need(data, "results", name)
    summary = {(s["side"], s["method"]): s for s in need(data, "summary", name)}
    sides = sorted(dict.fromkeys(r["side"] for r in results),
                   key=lambda side: list(IMPLEMENTATION_LABELS).index(side) if side in IMPLEMENTATION_LABELS else 99)
    rows = []
    for method in dict.fromkeys(r["method"] for r in results):
        for side in sides:
            runs = [r for r in results if (r["method"], r["side"]) == (method, side)]
            if not runs:
                continue
            against = summary.get((side, method))
            rows.append([method.upper(), IMPLEMENTATION_LABELS.get(side, side),
                         " / ".join(fixed(100 * r["test_accuracy"]) for r in runs),
                         percent(statistics.mean(r["sparsity"] for r in runs), 2),
                         " / ".join(percent(statistics.mean(r["layer_sparsity"][layer] for r in runs), 1)
                                    for layer in layers),
                         fixed(against["mean_accuracy_difference"], sign=True) if against else "(reference)",
                         fixed(against["mean_kept_differences"], 0) if against else "",
                         f"{against['mean_kernel_relative_difference']:.1e}".replace("-", MINUS) if against else ""])
    seeds = " / ".join(str(s) for s in dict.fromkeys(r["seed"] for r in results))
    return markdown_table(["method", "implementation", f"test accuracy (%), seeds {seeds}", "sparsity",
                           "per layer (" + " / ".join(layers) + ")", "accuracy − PyTorch (points)",
                           "weights kept by only one", "final kernels apart (relative)"], rows)


def generic(data: dict, name: str) -> str:
    """A table kept as ``columns`` and ``rows`` of cells (docs/tables/)."""
    return markdown_table(need(data, "columns", name), need(data, "rows", name))


VIEWS = {"fidelity": fidelity, "methods-a": methods_a, "methods-b": methods_b, "methods-b98": methods_b98,
         "methods-c": methods_c, "methods-str": methods_str, "methods-own": methods_own, "speed": speed,
         "before-after": before_after, "torch-methods": torch_methods, "": generic}


# -- markers ---------------------------------------------------------------------------------------------------------


def _git_revision(name: str) -> Optional[str]:
    try:
        result = subprocess.run(["git", "log", "-1", "--format=%h", "--", f"docs/{name}"], cwd=ROOT,
                                capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None


def table(argument: str) -> str:
    name, _, view = argument.partition("#")
    if view not in VIEWS:
        raise MarkerError(f"unknown view {view!r}; known: {sorted(v for v in VIEWS if v)}")
    data = load(name.strip())
    try:
        return VIEWS[view](data, name.strip())
    except (KeyError, IndexError, TypeError, statistics.StatisticsError) as error:
        raise MarkerError(f"docs/{name} does not hold what view {view or 'table'!r} reads: {error!r}") from None


def source(argument: str, link_prefix: str = "") -> str:
    name, *options = [part.strip() for part in argument.split(";")]
    given = {}
    for option in options:
        key, equals, value = option.partition("=")
        if not equals or key.strip() not in ("command", "revision"):
            raise MarkerError(f"a source marker takes command=... and revision=..., got {option!r}")
        given[key.strip()] = value.strip()
    data = load(name)
    command = data.get("command") if isinstance(data, dict) else None
    command = command or given.get("command")
    if not command:
        raise MarkerError(f"docs/{name} names no command, and neither does its marker")
    revision = (data.get("revision") if isinstance(data, dict) else None) or given.get("revision")
    how = "at revision"
    if not revision:
        revision, how = _git_revision(name), "committed at revision"
    sentence = f"Figures from [`docs/{name}`]({link_prefix}{name}), produced by `{command}`"
    sentence += f" {how} `{revision}`." if revision else " (revision unknown: no git history here)."
    if isinstance(data, dict):
        for key, label in (("machine", "Measured on"), ("source", "The table was"), ("note", "Note:")):
            if data.get(key):
                sentence += f" {label} {str(data[key]).rstrip('.')}."
    return sentence


def render(kind: str, argument: str, link_prefix: str = "") -> str:
    """The Markdown a marker stands for."""
    return table(argument) if kind == "table" else source(argument, link_prefix)


def markers(markdown: str) -> list[tuple[str, str]]:
    """Every ``(kind, argument)`` marker in ``markdown``."""
    return MARKER.findall(markdown)


def expand(markdown: str, link_prefix: str = "") -> str:
    """``markdown`` with every marker replaced by what it stands for."""
    def replace(match: re.Match) -> str:
        try:
            return render(match.group(1), match.group(2), link_prefix)
        except MarkerError as error:
            raise MarkerError(f"{match.group(0)}: {error}") from None

    return MARKER.sub(replace, markdown)


# -- MkDocs events ---------------------------------------------------------------------------------------------------


def on_page_markdown(markdown, page, config, files):
    """Expands the markers of a page; links to the JSON files are relative to the page."""
    directory = posixpath.dirname(page.file.src_uri)
    prefix = posixpath.relpath(".", directory) + "/" if directory else ""
    return expand(markdown, prefix)


def _tutorial_files(files, config):
    """Adds ``colab/*.ipynb`` as pages at ``colab/NAME/`` (read from the repository, not copied into docs/)."""
    from mkdocs.structure.files import File

    for path in sorted(COLAB.glob("*.ipynb")):
        files.append(File(f"{TUTORIALS}/{path.name}", src_dir=str(ROOT), dest_dir=config["site_dir"],
                          use_directory_urls=config["use_directory_urls"]))
    return files


try:  # before mkdocs-jupyter's on_files, which turns notebook files into pages
    from mkdocs.plugins import event_priority

    on_files = event_priority(100)(_tutorial_files)
except ImportError:  # the hook's functions are also used without MkDocs (tests)
    on_files = _tutorial_files
