"""Reports of a sweep: Markdown with PNG figures and the CSV behind every figure.

    from bionas_bench.report import write_report
    written = write_report("results/paper-fig2", "reports/paper-fig2")

The report holds the paper's Figure 2 ((a) gold-standard median loss and knowledge of
the converged architectures against lambda, (b) their ranks, (c, d) per-step loss and
knowledge at the smallest and largest lambda), the per-layer choice probabilities of
each policy controller at three lambdas, and the controller comparison (rank
distributions, pairwise tests, anytime curves, Pareto front and hypervolume).

A file ``NOTES.md`` already in the output folder is kept and included verbatim at the
end of the report: hand-written commentary (e.g. where a reproduction differs from the
paper) survives regeneration. The report text holds no timestamps, so regenerating it
from the same results gives the same Markdown and CSV files.

The report is built in a new folder beside ``out`` and then moved in: an interrupted
run leaves the previous report as it was. ``out/.bionas-report.json`` lists the files a
report wrote; a rewrite replaces exactly those as a whole, so none of them lingers, and
keeps every other file and folder in ``out`` (``NOTES.md``, the demo's ``results/``,
files of the user's). A report written before that list existed is recognised by its
``report.md`` and the files it links. A non-empty folder that holds no report (besides
``NOTES.md`` and the results being reported) is refused as ``out``, as are a store and a
sweep's results folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bionas_bench import scoring
from bionas_bench.controllers.random_search import PERMUTATION_LIMIT, RandomSearchParams
from bionas_bench.errors import SweepError
from bionas_bench.report import figures
from bionas_bench.report.markdown import fmt, pvalue, table, with_ci
from bionas_bench.sweep import BudgetSpec, ControllerSpec, SweepConfig, SweepResults, load_results

NOTES_FILE = "NOTES.md"
#: the list of the files a report wrote, in its folder
REPORT_MARKER = ".bionas-report.json"
REPORT_FORMAT = "bionas-bench-report/1"
#: lines every report.md has (the inputs table, the regenerate section): how a report
#: written before :data:`REPORT_MARKER` existed is recognised
REPORT_LANDMARKS = ("\n## Inputs\n", "\n| sweep config | ", "\n## Regenerate\n")
#: the local files a report.md links to (its figures and their CSVs)
LINKED_FILE = re.compile(r"\]\(([^()/\\\s]+\.(?:csv|png))\)")
#: the most architectures tied for most frequent that the rank table lists one by one
MAX_TIED_SHOWN = 3
#: the per-step curves' smoothing, as the captions state it (:func:`scoring.sma`)
SMOOTHING = (
    f"moving average of {scoring.SMA_WINDOW} steps (before step {scoring.SMA_WINDOW}: the mean of the "
    "steps so far, as the original's figure code)"
)


@dataclass
class ReportFiles:
    """What :func:`write_report` wrote."""

    out: Path
    markdown: Path
    figures: list[Path] = field(default_factory=list)
    tables: list[Path] = field(default_factory=list)
    summary: pd.DataFrame | None = None
    #: cells of the config not finished in the results (left out of the report)
    missing: list[str] = field(default_factory=list)


def write_report(
    results: SweepResults | str | Path, out: str | Path, title: str | None = None, *, flag: str = "--out"
) -> ReportFiles:
    """Write ``report.md``, its figures and CSVs for a results folder into ``out``.

    ``flag``: the command-line option that named ``out``, for the messages.
    """
    out = Path(out)
    check_report_folder(out, flag, results.path if isinstance(results, SweepResults) else Path(results))
    res = results if isinstance(results, SweepResults) else load_results(results)
    place = out.resolve()  # "." has no name to put a work folder beside
    earlier = _report_files(place) or []
    notes = place / NOTES_FILE
    place.parent.mkdir(parents=True, exist_ok=True)
    work = place.with_name(f".{place.name}.writing-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        builder = _Builder(res, work, shown=out, notes=notes.read_text("utf-8") if notes.is_file() else None)
        (work / "report.md").write_text(builder.build(title), encoding="utf-8")
        _refuse_overwriting(work, place, earlier, flag)
        _put_in_place(work, place, earlier)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    figures_out = [out / p.name for p in builder.figures]
    tables_out = [out / p.name for p in builder.tables]
    return ReportFiles(out, out / "report.md", figures_out, tables_out, builder.summary, res.missing)


def check_report_folder(out: Path, flag: str = "--out", results: Path | None = None) -> None:
    """Refuse an ``out`` for a report that is a file, a Zarr store, a sweep's results, or a
    folder holding files but no report: the report would mix with files it did not write.

    ``NOTES.md`` (included in the report) and ``results``, the results folder being
    reported when it lies in ``out`` (the demo's), do not count as files of the folder.
    """
    if out.exists() and not out.is_dir():
        raise SweepError(f"{flag} {out} is a file; pass a folder for the report")
    blocking = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise SweepError(f"{flag} {out}: {blocking} is a file, not a folder; pass a folder for the report")
    for marker, what in (("zarr.json", "a Zarr store"), ("sweep.json", "a sweep's results folder")):
        if (out / marker).is_file():
            raise SweepError(f"{flag} {out} is {what}; pass another folder for the report")
    if _report_files(out) is None and _foreign_entries(out, results):
        raise SweepError(f"{flag} {out} is not empty and is not a bionas-bench report; choose a new folder")


def _foreign_entries(out: Path, results: Path | None) -> list[Path]:
    """What ``out`` holds besides ``NOTES.md``, hidden files and (the folder holding)
    ``results``."""
    if not out.is_dir():
        return []
    mine = results.resolve() if results is not None else None

    def foreign(path: Path) -> bool:
        if path.name == NOTES_FILE or path.name.startswith("."):
            return False
        where = path.resolve()
        return mine is None or not (where == mine or where in mine.parents)

    return [p for p in out.iterdir() if foreign(p)]


def _report_files(out: Path) -> list[str] | None:
    """The names of the files the report in ``out`` wrote (its marker not included), or
    None when ``out`` holds no report: those :data:`REPORT_MARKER` lists, else (a report
    written before the marker existed, or a damaged marker) ``report.md`` and the CSVs and
    figures it links to, which are every file such a report wrote."""
    listed = _marked_files(out / REPORT_MARKER)
    return listed if listed is not None else _linked_files(out)


def _marked_files(marker: Path) -> list[str] | None:
    """The files a report's marker lists, or None when it is missing or damaged."""
    try:
        listed = json.loads(marker.read_text("utf-8")) if marker.is_file() else None
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(listed, dict) or listed.get("format") != REPORT_FORMAT:
        return None
    files = listed.get("files")
    return [n for n in files if isinstance(n, str) and _plain_name(n)] if isinstance(files, list) else None


def _linked_files(out: Path) -> list[str] | None:
    """``report.md`` and the files it links to, when ``out/report.md`` is a bionas-bench
    report (:data:`REPORT_LANDMARKS`); else None."""
    report = out / "report.md"
    try:
        text = report.read_text("utf-8") if report.is_file() else ""
    except UnicodeDecodeError:
        return None
    if not all(landmark in text for landmark in REPORT_LANDMARKS):
        return None
    linked = dict.fromkeys(LINKED_FILE.findall(text))
    return ["report.md", *(n for n in linked if (out / n).is_file())]


def _plain_name(name: str) -> bool:
    """Whether ``name`` names a file directly in a folder (a marker lists only those)."""
    return Path(name).name == name and name not in ("", ".", "..", NOTES_FILE, REPORT_MARKER)


def _refuse_overwriting(work: Path, out: Path, earlier: list[str], flag: str) -> None:
    """Refuse to put the report in ``work`` into ``out`` when one of its files would
    replace a file that the earlier report (``earlier``: its files) did not write."""
    clash = sorted(p.name for p in work.iterdir() if p.name not in earlier and (out / p.name).exists())
    if clash:
        raise SweepError(
            f"{flag} {out} holds {', '.join(clash)}, not written by its earlier report, which the new "
            "report would replace; move them away or choose a new folder"
        )


def _put_in_place(work: Path, out: Path, earlier: list[str]) -> None:
    """Move the finished report in ``work`` into ``out``, the earlier report's files
    (``earlier``: their names) and marker out, and the new marker in last (it lists the
    files moved in)."""
    names = sorted(p.name for p in work.iterdir())
    marker = {"format": REPORT_FORMAT, "files": names}
    (work / REPORT_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    out.mkdir(exist_ok=True)
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    old.mkdir()
    for name in [*earlier, REPORT_MARKER]:
        if (out / name).is_file():
            os.replace(out / name, old / name)
    for name in [*names, REPORT_MARKER]:
        os.replace(work / name, out / name)
    work.rmdir()
    shutil.rmtree(old, ignore_errors=True)


class _Builder:
    """Assembles the report section by section, writing each figure and its CSV."""

    def __init__(self, res: SweepResults, out: Path, shown: Path, notes: str | None = None):
        self.res = res
        self.out = out  # where the files are written
        self.shown = shown  # where they will be (the report's command names it)
        self.hand_notes = notes  # the text of the report folder's NOTES.md, if it has one
        self.labels = [label for label in res.labels if any(res.has_cell(label, lam) for lam in res.lambdas)]
        self.figures: list[Path] = []
        self.tables: list[Path] = []
        self.summary: pd.DataFrame | None = None
        self.n_archs = int(res.gold["arch"].nunique())

    # ------------------------------------------------------------ plumbing
    def arch_name(self, arch: int) -> str:
        names = self.res.gold.drop_duplicates("arch").set_index("arch")["arch_name"]
        return str(names.get(int(arch), "?"))

    def csv(self, frame: pd.DataFrame, name: str) -> str:
        """Write ``frame`` as ``name.csv``; floats in their shortest round-trip form (pandas'
        default, Python's repr), so a reader gets every value back exactly (a fixed number of
        significant digits lost e.g. the x of the GPU-seconds grid) and the bytes depend
        only on the values."""
        path = self.out / f"{name}.csv"
        frame.to_csv(path, index=False)
        self.tables.append(path)
        return path.name

    def figure(self, path: Path, caption: str, csv_name: str) -> str:
        self.figures.append(path)
        return f"![{path.stem}]({path.name})\n\n*{caption}* Data: [`{csv_name}`]({csv_name}).\n"

    # ------------------------------------------------------------ document
    def build(self, title: str | None) -> str:
        config = self.res.config
        title = title or config.report.title or f"Sweep report: {config.name}"
        self.summary = scoring.summary(self.res)
        parts = [
            f"# {title}\n",
            (config.description + "\n") if config.description else "",
            self.inputs(),
            self.headline(),
            self.rank_table(),
            self.figure2(),
            self.policies(),
            self.comparison(),
            self.pareto(),
            self.notes(),
            self.files(),
        ]
        return "\n".join(p for p in parts if p).rstrip() + "\n"

    def inputs(self) -> str:
        res, config = self.res, self.res.config
        meta = res.meta
        store = meta.get("store", {})
        hashes = store.get("hashes", {})
        prov = hashes.get("provenance", {})
        budget = config.budget
        budget_text = f"{budget.episodes} episodes x {budget.archs_per_episode} architectures"
        budget_text += f" = {budget.samples} samples"
        if budget.gpu_seconds:
            budget_text += f", at most {budget.gpu_seconds:g} simulated GPU seconds"
        controllers = "; ".join(
            f"`{c.label}` ({c.name}" + (f", {c.hparams}" if c.params else ", default hyper-parameters") + ")"
            for c in config.controllers
        )
        dataset = hashes.get("dataset", {})
        rows = [
            ("sweep config", f"`{meta['config'].get('file') or config.name}` sha256 `{config.sha256[:16]}…`"),
            ("store", _store_text(store.get("source"), hashes.get("location"))),
            ("store provenance", ", ".join(f"{k} = {v}" for k, v in prov.items()) or "-"),
            ("dataset", ", ".join(_hash_text(k, v) for k, v in dataset.items() if v) or "-"),
            (
                "space",
                f"{meta['space']['name']} ({self.n_archs} architectures), "
                f"sha256 `{meta['space']['sha256'][:16]}…`",
            ),
            ("lambdas", ", ".join(f"{lam:g}" for lam in config.lambdas)),
            ("cells", self.cells_line()),
            ("runs per cell", str(config.runs)),
            ("budget per run", budget_text),
            ("controllers", controllers),
            (
                "oracle",
                f"loss `{config.oracle.loss}`, knowledge `{config.oracle.knowledge or 'store default'}`, "
                f"failed replicates {config.oracle.failed}, replicate `{config.oracle.replicate}`",
            ),
            ("sweep seed", str(config.seed)),
            ("package", meta.get("package_version", "?")),
        ]
        return "## Inputs\n\n" + table(["", ""], rows, "ll") + "\n"

    def cells_line(self) -> str:
        total, missing = len(self.res.config.cells()), self.res.missing
        text = f"{total - len(missing)} of {total} finished"
        if missing:
            text += (
                f"; not finished: {', '.join(missing)} (rerun the sweep with the same --out to finish them)"
            )
        return text

    def headline(self) -> str:
        checks = scoring.trend_check(self.res)
        ends = self.res.lambdas[0], self.res.lambdas[-1]
        lines = ["## The paper's qualitative result\n"]
        lines.append(
            "The paper's Figure 2: at a small lambda the converged architecture has a low loss rank and a "
            "high knowledge rank; at a large lambda the reverse. Each end is tested with a two-sided "
            "paired Wilcoxon signed-rank test of the runs' loss rank against their knowledge rank; "
            f"**reproduced** needs both directions as in the paper and both p < {scoring.TREND_ALPHA:g}.\n"
        )
        for c in checks:
            unfinished = [lam for lam in ends if not self.res.has_cell(c.controller, lam)]
            if unfinished:
                lines.append(
                    f"- `{c.controller}`: **not checked** (its cell at λ = {unfinished[0]:g} is not finished)"
                )
                continue
            lines.append(
                f"- `{c.controller}`: **{c.verdict}** (λ = {c.small_lam:g}: loss rank < knowledge rank: "
                f"{fmt(c.small_ok)}, {_p(c.small_p)}; λ = {c.large_lam:g}: knowledge rank < loss "
                f"rank: {fmt(c.large_ok)}, {_p(c.large_p)})"
            )
        return "\n".join(lines) + "\n"

    def rank_table(self) -> str:
        s = self.summary
        name = self.csv(s, "summary_ranks")
        rows = []
        for _, r in s.sort_values(["lam", "controller"], key=_order(self.labels)).iterrows():
            rows.append(
                [
                    f"{r['lam']:g}",
                    r["controller"],
                    with_ci(r["loss_rank"], r["loss_rank_lo"], r["loss_rank_hi"]),
                    with_ci(r["knowledge_rank"], r["knowledge_rank_lo"], r["knowledge_rank_hi"]),
                    with_ci(r["objective_rank"], r["objective_rank_lo"], r["objective_rank_hi"]),
                    fmt(r["loss"]),
                    fmt(r["knowledge"]),
                    self.modal_text(r["modal_archs"], r["modal_share"]),
                ]
            )
        header = [
            "λ",
            "controller",
            "loss rank",
            "knowledge rank",
            "objective rank",
            "median loss",
            "median K",
            "most frequent arch (share of runs)",
        ]
        unranked = int(s["unranked"].sum())
        note = (
            f" {unranked} of {int(s['n'].sum())} runs recommended an architecture without a usable "
            "replicate in the store (no gold-standard value); they are left out of the means (column "
            "`unranked` of the data)."
            if unranked
            else ""
        )
        return (
            "## Ranks of the recommended architectures\n\n"
            "Mean over runs [95% percentile-bootstrap confidence interval of the mean: "
            f"{scoring.BOOTSTRAP_RESAMPLES} resamples of the runs, so it can be asymmetric and stays within "
            f"the runs' range] of the gold-standard ranks (1 = best of {self.n_archs}, ties "
            "averaged) of each run's recommended architecture, and the mean of its median loss and median "
            f"knowledge over replicates.{note} Data: [`{name}`]({name}).\n\n" + table(header, rows) + "\n"
        )

    def modal_text(self, archs: str, share: float) -> str:
        """The rank table's most frequent architecture: every one of a tie of up to
        :data:`MAX_TIED_SHOWN`, else the smallest id and how many tie with it."""
        ids = [int(a) for a in archs.split()]
        named = [f"{a} `{self.arch_name(a)}`" for a in ids]
        if len(ids) == 1:
            return f"{named[0]} ({share:.0%})"
        if len(ids) <= MAX_TIED_SHOWN:
            return f"{', '.join(named)} ({share:.0%} each)"
        return f"{named[0]}, one of {len(ids)} tied ({share:.0%} each)"

    def lambda_figure(self, cols: list[tuple[str, str]], stem: str, title: str, caption: str) -> str:
        """One panel per column of the summary against lambda, its CSV, and the caption."""
        keep = ["controller", "lam", "n"] + [f"{c}{x}" for c, _ in cols for x in ("", "_lo", "_hi")]
        name = self.csv(self.summary[keep], stem)
        path = figures.lambda_panels(self.summary, cols, title, self.out / f"{stem}.png", self.labels)
        return self.figure(path, caption, name)

    def figure2(self) -> str:
        labels, out = self.labels, self.out
        text = ["## Figure 2 of the paper\n"]
        cols_a = [
            ("loss", "median validation loss (BCE, nats)"),
            ("knowledge", "median knowledge dissimilarity K\n(KL, nats per motif position)"),
        ]
        text.append(
            self.lambda_figure(
                cols_a,
                "fig2a_values",
                "(a) Gold-standard medians of the converged architectures",
                "(a) Median loss and median knowledge (over replicates) of the recommended architecture, "
                "mean over runs with 95% CI, against lambda.",
            )
        )
        cols_b = [
            ("loss_rank", "loss rank (1 = best)"),
            ("knowledge_rank", "knowledge rank (1 = best)"),
            ("objective_rank", "objective rank at λ (1 = best)"),
        ]
        text.append(
            self.lambda_figure(
                cols_b,
                "fig2b_ranks",
                "(b) Gold-standard ranks of the converged architectures",
                "(b) Ranks among all architectures of the recommended architecture, mean over runs with "
                "95% CI.",
            )
        )
        ends = (
            [self.res.lambdas[0], self.res.lambdas[-1]]
            if len(self.res.lambdas) > 1
            else [self.res.lambdas[0]]
        )
        frames = []
        for label in labels:
            for lam in ends:
                if not self.res.has_cell(label, lam):
                    continue
                for field_name in ("loss", "knowledge"):
                    f = scoring.per_step(self.res, label, lam, field_name)
                    f.insert(2, "field", field_name)
                    frames.append(f)
        steps = pd.concat(frames, ignore_index=True)
        name = self.csv(steps, "fig2cd_per_step")
        path = figures.per_step_grid(
            steps,
            "(c, d) Per-step loss and knowledge of the sampled architectures",
            out / "fig2cd_per_step.png",
            labels,
        )
        text.append(
            self.figure(
                path,
                f"(c, d) Loss and knowledge of the architectures sampled at each controller step, averaged "
                f"over runs after a trailing {SMOOTHING}; band = mean ± "
                "t SD/√n (n = runs; t of n - 1 degrees of freedom).",
                name,
            )
        )
        return "\n".join(text)

    def policies(self) -> str:
        chosen = list(self.res.config.report.policy_lambdas) or _three(self.res.lambdas)
        layers = scoring.layer_choices(self.res)
        text = []
        for label in self.labels:
            frames = [
                scoring.policy_curves(self.res, label, lam) for lam in chosen if self.res.has_cell(label, lam)
            ]
            frames = [f for f in frames if not f.empty]
            if not frames:
                continue
            data = pd.concat(frames, ignore_index=True)
            name = self.csv(data, f"policy_{label}")
            path = figures.policy_grid(
                data, f"Choice probabilities of {label} per layer", self.out / f"policy_{label}.png", layers
            )
            text.append(
                self.figure(
                    path,
                    f"Per-layer choice probabilities of `{label}` over controller steps at λ = "
                    f"{', '.join(f'{lam:g}' for lam in chosen)}: per step, the mean over the step's sampled "
                    "architectures of the probabilities they were drawn from (what `recommend()` smooths), "
                    f"averaged over runs, {SMOOTHING}.",
                    name,
                )
            )
        if not text:
            return ""
        return "## Choice probabilities over training steps\n\n" + "\n".join(text)

    def comparison(self) -> str:
        rec = scoring.recommended(self.res)
        text = ["## Controller comparison\n"]
        name = self.csv(rec, "recommended_per_run")
        path = figures.rank_boxes(
            rec,
            "objective_rank",
            "Objective rank of the recommended architecture per run",
            self.out / "compare_rank_distributions.png",
            self.labels,
        )
        text.append(
            self.figure(
                path,
                "Distribution over runs of the objective rank (median loss + λ · median K) of each run's "
                "recommended architecture (log scale; boxes = quartiles, whiskers = 1.5 IQR).",
                name,
            )
        )
        cmp = scoring.compare(self.res)
        if len(cmp):
            name = self.csv(cmp, "compare_tests")
            rows = [
                [
                    f"{r['lam']:g}",
                    f"{r['a']} vs {r['b']}",
                    f"{r['mean_a']:.1f} vs {r['mean_b']:.1f}",
                    f"{r['p_a_better']:.2f}",
                    pvalue(r["p"]),
                    pvalue(r["p_holm"]),
                    fmt(bool(r["significant"])),
                ]
                for _, r in cmp.iterrows()
            ]
            text.append(
                "Pairwise tests on the objective rank of the recommended architecture: two-sided "
                "Mann-Whitney U per lambda, Holm-corrected over all rows (family-wise α = 0.05). "
                "P(a better) is the probability that a run of a recommends a better-ranked architecture "
                f"than a run of b (ties count half). Data: [`{name}`]({name}).\n\n"
                + table(["λ", "pair", "mean rank", "P(a better)", "p", "p (Holm)", "significant"], rows)
                + "\n"
            )
        text.append(self.anytime())
        return "\n".join(text)

    def anytime(self) -> str:
        text = []
        curves = scoring.anytime(self.res, "samples")
        name = self.csv(curves, "anytime_samples")
        path = figures.anytime_grid(
            curves,
            "rank",
            "oracle samples (architectures evaluated)",
            "best-so-far objective rank",
            "Anytime: best objective rank among the sampled architectures",
            self.out / "anytime_samples.png",
            self.labels,
        )
        text.append(
            self.figure(
                path,
                "Best-so-far: gold-standard objective rank of the best architecture sampled so far (by its "
                "median objective), mean over runs with 95% CI, against samples (log axes). This is how "
                "soon a controller *samples* a good architecture -- what an oracle choosing among its "
                "samples would get; which one the controller itself picks is its recommended "
                f"architecture, ranked above. Every point averages all runs{self.carry_text()}. "
                f"{sampling_note(self.res.config, self.in_budget_episodes(), self.n_archs)} Normalised "
                "regret (objective gap to the best architecture over the objective's range) is in the CSV.",
                name,
            )
        )
        gpu = scoring.anytime(self.res, "gpu_seconds")
        if len(gpu):
            name = self.csv(gpu, "anytime_gpu_seconds")
            path = figures.anytime_grid(
                gpu,
                "regret_norm",
                "simulated GPU time (s)",
                "normalised regret",
                "Anytime: regret against simulated GPU time",
                self.out / "anytime_gpu_seconds.png",
                self.labels,
                log_x=False,
            )
            text.append(
                self.figure(
                    path,
                    "Normalised regret of the best-so-far architecture against the simulated GPU seconds "
                    "charged by the oracle (each sample costs its replicate's recorded training time), from "
                    f"the time every run has its first sample to the runs' median {self.total_text()}, so "
                    f"that each point averages all runs{self.carry_text()}.",
                    name,
                )
            )
        else:
            text.append(
                "*No anytime curve against GPU time: the store records no training seconds, so the "
                "oracle charges no cost.*\n"
            )
        return "\n".join(text)

    def carry_text(self) -> str:
        """How the anytime curves average all runs under a GPU-seconds budget (nothing without
        one), as a clause of their captions."""
        if self.res.config.budget.gpu_seconds is None:
            return ""
        return ": a run whose GPU-seconds budget has ended keeps its last in-budget best-so-far value"

    def total_text(self) -> str:
        """The end of the GPU-seconds axis as its caption names it."""
        if self.res.config.budget.gpu_seconds is None:
            return "total"
        return "in-budget total (what a run spent up to the end of its budget's last episode)"

    def in_budget_episodes(self) -> dict[str, np.ndarray]:
        """Per reported controller, each of its runs' episodes inside the budget, all its cells."""
        return {
            label: np.concatenate(
                [
                    self.res.cell(label, lam).runs["episodes"]
                    for lam in self.res.lambdas
                    if self.res.has_cell(label, lam)
                ]
            )
            for label in self.labels
        }

    def pareto(self) -> str:
        front = scoring.front_table(self.res)
        rec = scoring.recommended(self.res)
        picks = (
            rec.groupby(["controller", "arch"], sort=False)
            .agg(loss=("loss", "first"), knowledge=("knowledge", "first"), runs=("run", "size"))
            .reset_index()
        )
        picks["share"] = picks["runs"] / picks.groupby("controller")["runs"].transform("sum")
        hv = scoring.hypervolumes(self.res)
        name = self.csv(front, "pareto_front")
        picks_name = self.csv(picks, "pareto_picks")
        hv_name = self.csv(hv, "hypervolume")
        path = figures.pareto(
            front,
            picks,
            hv,
            "Median loss vs median knowledge: Pareto front",
            self.out / "pareto_front.png",
            self.labels,
        )
        on = front[front["on_front"]]
        ref = (hv["ref_loss"].iloc[0], hv["ref_knowledge"].iloc[0]) if len(hv) else (np.nan, np.nan)
        rows = [
            [
                r["controller"],
                with_ci(r["hv_mean"], r["hv_lo"], r["hv_hi"], 4),
                f"{r['fraction_mean']:.1%}",
                fmt(r["hv_union"], 4),
                f"{r['fraction_union']:.1%}",
            ]
            for _, r in hv.iterrows()
        ]
        return (
            "## Pareto front and hypervolume\n\n"
            + self.figure(
                path,
                f"Every architecture's median loss and median knowledge; the {len(on)} non-dominated "
                "architectures form the Pareto front; markers: architectures the controllers recommended "
                f"(over all lambdas), sized by their share of runs (data: [`{picks_name}`]({picks_name})).",
                name,
            )
            + "\nHypervolume (both objectives minimised) of the set of architectures one run recommends "
            "across the lambda grid, mean over run indices [95% CI], and of the union over all runs; "
            "reference point = the worst point of the space (worst median loss, worst median knowledge: "
            f"{fmt(ref[0], 4)} and {fmt(ref[1], 4)}, over all architectures, not only the front's), so every "
            "architecture counts and the true front reaches "
            f"{fmt(hv['hv_front'].iloc[0] if len(hv) else np.nan, 4)}. Data: [`{hv_name}`]({hv_name}).\n\n"
            + table(["controller", "hypervolume per run", "of front", "union of runs", "of front"], rows)
            + "\n"
        )

    def notes(self) -> str:
        parts = []
        if self.res.config.report.notes:
            parts.append(self.res.config.report.notes.strip())
        if self.hand_notes is not None:
            parts.append(self.hand_notes.strip())
        if not parts:
            return ""
        text = "\n\n".join(parts) + "\n"
        return text if text.startswith("#") else "## Notes\n\n" + text  # notes with headings of their own

    def files(self) -> str:
        config = self.res.config
        if _is_shipped(config):
            name, where = config.name, ""
        else:  # a config of the user's: name its file, whose text the results keep
            name = Path(config.path).name if config.path else f"{config.name}.toml"
            where = f"`{name}` is the config this sweep ran; its text is also in `RESULTS/sweep.json`. "
        return (
            f"## Regenerate\n\n```bash\n"
            f"bionas-bench sweep {name} --out RESULTS --report {self.shown.as_posix()}\n"
            f"```\n\n{where}"
            "Or in two steps: `bionas-bench sweep ... --out RESULTS`, then "
            "`bionas-bench report RESULTS --out DIR`. "
            "The sweep is deterministic: the same config and seeds give byte-identical results on any "
            "scheduler.\n"
        )


def sampling_note(config: SweepConfig, episodes: dict[str, np.ndarray], n_archs: int) -> str:
    """How many architectures a run sampled, and for random search (when reported) how likely
    those samples include the best one: a best-so-far curve at rank 1 then shows coverage of
    the space, not a search that learnt where good architectures are.

    ``episodes`` holds, per reported controller label, each of its runs' episodes inside the
    budget (``runs["episodes"]`` of its cells): a GPU-seconds budget may end runs before the
    budget's episodes, and the counts and chances are those of what the runs sampled.
    """
    budget = config.budget
    every = np.concatenate([np.asarray(e, dtype=np.int64) for e in episodes.values()])
    text = f"{_samples_text(budget, every)} of the {n_archs} in the space."
    randoms = [spec for spec in config.controllers if spec.name == "random" and spec.label in episodes]
    coverage = [
        _random_coverage(spec, np.asarray(episodes[spec.label]) * budget.archs_per_episode, budget, n_archs)
        for spec in randoms
    ]
    return " ".join([text, *coverage])


def _samples_text(budget: BudgetSpec, episodes: np.ndarray) -> str:
    """The note's first sentence, up to the space ("Each run samples 600 architectures (...)",
    or "sampled" with the range a GPU-seconds budget left), for the runs' in-budget ``episodes``."""
    per = budget.archs_per_episode
    early = episodes < budget.episodes
    if not early.any():
        ended = "; the GPU-seconds budget ended no run early" if budget.gpu_seconds is not None else ""
        return f"Each run samples {budget.samples} architectures ({budget.episodes} episodes x {per}{ended})"
    who = "every run" if early.all() else f"{int(early.sum())} of {early.size} runs"
    return (
        f"Each run sampled {_span(episodes * per)} architectures ({_span(episodes)} episodes x {per}: the "
        f"GPU-seconds budget of {budget.gpu_seconds:g} s ended {who} before the {budget.episodes} episodes)"
    )


def _random_coverage(spec: ControllerSpec, samples: np.ndarray, budget: BudgetSpec, n_archs: int) -> str:
    """The chance that random search's runs, of ``samples`` each, include the best of ``n_archs``."""
    unique = spec.hparams.get("unique", RandomSearchParams.unique) and n_archs <= PERMUTATION_LIMIT
    if unique:
        how, chances = "draws without replacement", np.minimum(samples / n_archs, 1.0)
    else:
        how, chances = "draws independently", 1.0 - (1.0 - 1.0 / n_archs) ** samples
    which = f"full {budget.samples}" if (samples == budget.samples).all() else f"{_span(samples)} in-budget"
    if chances.min() >= 1.0:
        return (
            f"Random search (`{spec.label}`) {how}, so its {which} samples cover all {n_archs} "
            "architectures and reach rank 1 by construction."
        )
    return (
        f"Random search (`{spec.label}`) {how}: its {which} samples include the best "
        f"architecture with probability {_span(chances, '.0%')}."
    )


def _span(values: np.ndarray, form: str = "d") -> str:
    """``lo-hi`` of ``values`` in the format ``form``, or one value where both read the same."""
    lo, hi = (format(v, form) for v in (np.min(values), np.max(values)))
    return lo if lo == hi else f"{lo}-{hi}"


def _p(p: float) -> str:
    """``p = 0.049`` or ``p < 1e-12``."""
    text = pvalue(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def _is_shipped(config: Any) -> bool:
    """Whether ``config`` is the shipped sweep manifest of its name, unedited."""
    from bionas_bench.errors import BionasError
    from bionas_bench.sweep import load_sweep_config

    try:
        return load_sweep_config(config.name).sha256 == config.sha256
    except BionasError:
        return False


def _store_text(source: str | None, location: str | None) -> str:
    """The inputs table's store row; an imported table's cache path (this machine's) is
    left out: its name holds the table's content hash."""
    if source == "embedded" or location in (None, "embedded"):
        return "the embedded default store"
    if source == "bionas-pub":
        return f"the original BioNAS table, imported (`{Path(location).name}` in the cache)"
    return f"{source}: `{location}`"


def _hash_text(key: str, value: Any) -> str:
    """``key `value` ``, a hash cut to 16 hex digits."""
    text = str(value)
    return f"{key} `{text[:16]}…`" if key.endswith("sha256") and len(text) > 16 else f"{key} `{text}`"


def _three(lambdas: tuple[float, ...]) -> list[float]:
    """The smallest, a middle and the largest lambda (fewer when the grid is shorter)."""
    picks = [lambdas[0], lambdas[len(lambdas) // 2], lambdas[-1]]
    return list(dict.fromkeys(picks))


def _order(labels: list[str]) -> Any:
    """A sort key keeping controllers in config order."""

    def key(column: pd.Series) -> pd.Series:
        if column.name == "controller":
            return column.map({label: i for i, label in enumerate(labels)})
        return column

    return key


__all__ = ["ReportFiles", "write_report"]
