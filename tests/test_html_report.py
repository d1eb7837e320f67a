"""The HTML reports: pages that parse, every picture they name on disk, galleries that list
what the metrics say they should, names escaped, and a real browser drawing them."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from aeinspect.cli import app, tables
from conftest import stripes, with_blob

runner = CliRunner()
VOID = {"meta", "img", "br", "hr", "link", "input"}
STRANGE = ["a<b & c", "ünï cødé", "x y", "0"]  # names a report must show as they are


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


class Page(HTMLParser):
    """A page's tags checked for nesting, its pictures and its rows' image names."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.open: list[str] = []
        self.images: list[str] = []
        self.names: list[str] = []  # the image names of the rows, in order
        self._in_name = False
        self.feed(text)
        self.close()
        assert not self.open, f"unclosed tags: {self.open}"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        if tag not in VOID:
            self.open.append(tag)
        self._in_name = ("class", "name") in attrs

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open[-1:]}"
        self.open.pop()

    def handle_data(self, data: str) -> None:
        if self._in_name:
            self.names.append(data)
            self._in_name = False


def galleries(html: str) -> dict[str, list[str]]:
    """Each gallery's title → the image names of its rows (parsed, so unescaped)."""
    result = {}
    for part in html.split("<h3>")[1:]:
        title, rest = part.split("</h3>", 1)
        result[title] = (
            Page(
                "<div>" + rest.split("<h3>")[0].split('<p class="note">aeinspect')[0] + "</div>"
            ).names
            if False
            else _row_names(rest)
        )
    return result


def _row_names(fragment: str) -> list[str]:
    names = []
    for chunk in fragment.split('<div class="name">')[1:]:
        parser = HTMLParser()
        texts: list[str] = []
        parser.handle_data = texts.append  # type: ignore[method-assign]
        parser.feed(chunk.split("</div>", 1)[0])
        names.append("".join(texts))
    return names


@pytest.fixture(scope="module")
def strange_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MVTec-layout set whose defect images have names full of what HTML must escape."""
    root = tmp_path_factory.mktemp("strange")
    for folder in ("test/good", "test/blob", "ground_truth/blob"):
        (root / folder).mkdir(parents=True)
    for index in range(3):
        cv2.imwrite(str(root / "test" / "good" / f"{index}.png"), stripes(40, 50, 300 + index))
    mask = np.zeros((40, 50), np.uint8)
    mask[14:26, 19:31] = 255
    for index, name in enumerate(STRANGE):
        cv2.imwrite(str(root / "test" / "blob" / f"{name}.png"), with_blob(stripes(40, 50, index)))
        cv2.imwrite(str(root / "ground_truth" / "blob" / f"{name}_mask.png"), mask)
    return root


@pytest.fixture(scope="module")
def evaluation(tiny_model: Path, strange_dataset: Path, tmp_path_factory) -> Path:
    report = tmp_path_factory.mktemp("report") / "report"
    result = run("evaluate", strange_dataset, "-m", tiny_model, "-o", report)
    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == f"Report: {report / 'index.html'}"
    return report


def test_the_evaluation_page_parses_and_names_only_files_it_wrote(evaluation: Path) -> None:
    html = (evaluation / "index.html").read_text(encoding="utf-8")
    page = Page(html)
    assert page.images and all((evaluation / src).is_file() for src in page.images)
    assert {"roc.png", "pro.png", "overlap.png", "history.png", "colour-bar.png"} <= set(
        page.images
    )
    assert "http" not in html and "<script" not in html  # nothing fetched, nothing run
    thumbnails = list((evaluation / "thumbnails").iterdir())
    assert thumbnails and all(cv2.imread(str(p)).shape[0] <= 160 for p in thumbnails)


def test_the_galleries_list_the_misses_and_false_alarms_the_metrics_give(evaluation: Path):
    metrics = json.loads((evaluation / "metrics.json").read_text())
    images = metrics["images"]
    shown = galleries((evaluation / "index.html").read_text(encoding="utf-8"))
    misses = sorted((i for i in images if i["type"] != "good"), key=lambda i: i["score"])
    alarms = sorted((i for i in images if i["type"] == "good"), key=lambda i: -i["score"])
    assert shown["Misses: the lowest-scored defective images"] == [i["image"] for i in misses]
    assert shown["False alarms: the highest-scored good images"] == [i["image"] for i in alarms]
    assert shown["blob: a sample"] == [misses[0]["image"], misses[2]["image"],
                                       misses[-1]["image"]]  # fmt: skip


def test_names_are_escaped_and_shown_as_they_are(evaluation: Path, strange_dataset: Path):
    html = (evaluation / "index.html").read_text(encoding="utf-8")
    assert "a&lt;b &amp; c.png" in html and "a<b & c" not in html
    names = Page(html).names
    for name in STRANGE:
        assert str(strange_dataset / "test" / "blob" / f"{name}.png") in names


def test_segment_report_rows_flagged_first_then_by_score_with_their_fields(
    tiny_model: Path, strange_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = run("segment", strange_dataset / "test", "-m", tiny_model, "-o", out, "--report",
                 "--json", "--threshold", "0.9")  # fmt: skip
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]  # stdout unchanged
    html = (out / "index.html").read_text(encoding="utf-8")
    page = Page(html)
    assert all((out / src).is_file() for src in page.images)
    expected = sorted(records, key=lambda r: (not r["defective"], -r["max_residual"]))
    assert _row_names(html) == [r["image"] for r in expected]
    assert "defect_pixels" in html and "max_residual" in html
    refused = run("segment", strange_dataset / "test", "-m", tiny_model, "--report")
    assert refused.exit_code == 2 and "--report needs -o/--output" in refused.stderr


@pytest.mark.parametrize("kind", ["ssim", "draem"])
def test_training_report_shows_curves_patches_defects_and_held_out_images(
    kind: str, good_folder: Path, tmp_path: Path
) -> None:
    model, report = tmp_path / "m.pt", tmp_path / "report"
    flags = ["--unet-width", "4"] if kind == "draem" else []
    result = run("train", good_folder, "-o", model, "--model", kind, "--size", "32", "--num",
                 "32", "--epochs", "2", "--val-split", "0.34", "--report", report,
                 *flags)  # fmt: skip
    assert result.exit_code == 0, result.output
    html = (report / "index.html").read_text(encoding="utf-8")
    page = Page(html)
    assert all((report / src).is_file() for src in page.images)
    assert "history.png" in page.images and "Training patches" in html
    assert ("Synthetic defects" in html) == (kind == "draem")
    assert len(_row_names(html)) == 2  # the two held-out good images
    again = run("report", model, "-o", tmp_path / "again")
    assert again.exit_code == 0 and again.stdout.strip() == str(tmp_path / "again" / "index.html")


def test_rich_tables_on_a_terminal_keep_columns_aligned(
    tiny_model: Path, strange_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deep = tmp_path / ("a-very-long-folder-name-" * 3) / "more"
    shutil.copytree(strange_dataset / "test", deep)
    monkeypatch.setattr(tables, "on_terminal", lambda: True)
    monkeypatch.setenv("COLUMNS", "70")
    result = run("segment", deep, "-m", tiny_model, "--threshold", "0.9")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("threshold 0.9 (manual, opening 4, minimum area 0)")
    assert all(len(line) <= 70 for line in lines)
    columns = {line.index(word) for line in lines for word in ("DEFECT", " ok ") if word in line}
    assert len(columns) <= 2 and len(lines) > 8  # long paths fold within their column


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium")
def test_a_real_browser_draws_the_report(evaluation: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
         "--window-size=1280,2400", (evaluation / "index.html").as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    picture = cv2.imread(str(shot))
    assert picture.shape[:2] == (2400, 1280)
    assert picture.std() > 20  # drawn: text, plots and thumbnails, not a blank page
    assert (picture[:, :, 2].astype(int) - picture[:, :, 1] > 100).sum() > 50  # red marks
