"""Static HTML QC report (mrisr.report.qc): pages, images, windows, world-aligned planes, the index, a real browser."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mrisr.eval.consistency import resimulate_input
from mrisr.inference import interpolate_volume, output_grid
from mrisr.io.geometry import detect_slice_axis
from mrisr.io.nifti import Volume
from mrisr.report.qc import (
    PAGE_NAME,
    RECORD_NAME,
    QCEntry,
    encode_png,
    intensity_window,
    safe_name,
    write_qc_index,
    write_qc_page,
)

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# --------------------------------------------------------------------------------------------------
# Volumes and helpers


def thick_input(flip_x: bool = False, shape: tuple[int, int, int] = (24, 20, 6)) -> Volume:
    """Axial thick-slice input: 1 × 1 mm in plane, 4 mm slices, smooth positive content plus a bright bar at the
    subject's right-anterior (x > 4 mm, y > 3 mm, every slice). ``flip_x`` stores the same world image with the first
    voxel axis reversed (LAS instead of RAS)."""
    x, y, z = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape), indexing="ij")
    affine = np.diag([1.0, 1.0, 4.0, 1.0])
    affine[:3, 3] = [-(shape[0] - 1) / 2, -(shape[1] - 1) / 2, -4.0 * (shape[2] - 1) / 2]
    world_x, world_y = x + affine[0, 3], y + affine[1, 3]
    data = 100 + 40 * np.sin(x / 4) + 30 * np.cos(y / 3) + 15 * z
    data[(world_x > 4) & (world_y > 3)] = 600.0
    if flip_x:
        data = data[::-1]
        affine = affine @ np.array([[-1, 0, 0, shape[0] - 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    return Volume(data.astype(np.float32), affine)


def sr_of(volume: Volume, order: int = 3) -> Volume:
    """The through-plane interpolation of ``volume`` onto its isotropic grid."""
    geometry = detect_slice_axis(volume)
    return interpolate_volume(volume, output_grid(geometry, volume.shape[geometry.axis]), order=order)


def residual_of(volume: Volume, sr: Volume) -> Volume:
    geometry = detect_slice_axis(volume)
    resim, _ = resimulate_input(sr, volume, geometry, geometry.separation_mm)
    return Volume((resim - volume.data).astype(np.float32), volume.affine)


def cord_mask_of(sr: Volume) -> Volume:
    """A cylinder of radius 4 mm along z through the world origin, on the output grid."""
    ijk = np.stack(np.meshgrid(*(np.arange(n) for n in sr.shape), indexing="ij"), axis=-1).astype(np.float64)
    world = ijk @ sr.affine[:3, :3].T + sr.affine[:3, 3]
    return Volume((np.hypot(world[..., 0], world[..., 1]) < 4.0).astype(np.float32), sr.affine)


def record(psnr: float | None = 37.5, warnings: list[str] | None = None) -> dict:
    rec = {
        "model": "cubic",
        "mrisr_version": "0.1.0",
        "weights_sha256": "c0ffee" * 10 + "beef",
        "thickness_mm": 4.0,
        "thickness_source": "sidecar",
        "seconds": np.float32(0.25),
        "warnings": warnings or [],
        "slice_residual": np.linspace(0.01, 0.05, 12),
        "ssim_small": float("nan"),
    }
    if psnr is not None:
        rec["forward_consistency"] = {"psnr": psnr, "ssim": 0.97, "warn": psnr < 30}
    return rec


def full_entry(name: str = "sub-01_T2w", **changes) -> QCEntry:
    inp = thick_input()
    out = sr_of(inp)
    entry = QCEntry(
        name=name,
        input=inp,
        output=out,
        record=record(warnings=["thickness from the separation (no sidecar)"]),
        residual=residual_of(inp, out),
        sd=Volume(np.abs(out.data - out.data.mean()) * 0.01, out.affine),
        cord_mask=cord_mask_of(out),
        csa_mm2=[(float(z), 50.0 + z / 10) for z in range(-10, 11)],
        landmark_mm=(1.0, -2.0, 3.0),
    )
    return dataclasses.replace(entry, **changes)


class _Tags(HTMLParser):
    """Collects ``<img src>`` values and the ``data-name`` of table rows, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.rows: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "img":
            self.images.append(str(found["src"]))
        elif tag == "tr" and "data-name" in found:
            self.rows.append(str(found["data-name"]))
        elif tag == "a" and found.get("href"):
            self.links.append(str(found["href"]))


def tags(page: Path) -> _Tags:
    parser = _Tags()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def decoded(path: Path) -> np.ndarray:
    """Pixels of a PNG, decoded by Pillow (an independent decoder)."""
    with Image.open(path) as image:
        image.load()
        return np.asarray(image)


def assert_valid_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 0, path
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    with Image.open(path) as image:
        image.verify()
    pixels = decoded(path)
    assert pixels.size > 0 and pixels.dtype == np.uint8


# --------------------------------------------------------------------------------------------------
# PNG, windows, names


@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (33, 5, 3), (1, 9, 3)])
def test_encode_png_round_trips_through_pillow(tmp_path: Path, shape: tuple[int, ...]):
    pixels = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    path = tmp_path / "x.png"
    path.write_bytes(encode_png(pixels))
    np.testing.assert_array_equal(decoded(path), pixels)


def test_encode_png_refuses_other_arrays():
    for bad in (np.zeros((4, 4), np.float32), np.zeros((4, 4, 4), np.uint8), np.zeros((0, 4), np.uint8)):
        with pytest.raises(ValueError, match="uint8"):
            encode_png(bad)


def test_intensity_window():
    data = np.zeros((100, 100, 10))
    data[:50] = np.arange(1, 50 * 100 * 10 + 1).reshape(50, 100, 10)
    lo, hi, note = intensity_window(data)
    foreground = data[data > 0]
    assert note is None
    assert lo == pytest.approx(np.percentile(foreground, 0.5)) and hi == pytest.approx(np.percentile(foreground, 99.5))
    # Subsampled: still within a few per mille of the exact percentiles.
    lo_s, hi_s, _ = intensity_window(data, max_samples=10_000)
    assert abs(lo_s - lo) < 0.01 * hi and abs(hi_s - hi) < 0.01 * hi
    assert intensity_window(np.full((4, 4, 4), 3.0))[2] == "constant image (value 3)"
    lo, hi, note = intensity_window(-np.arange(64.0).reshape(4, 4, 4))
    assert "no voxel > 0" in note and lo < hi <= 0


def test_safe_name_is_unique_and_safe():
    names = ["sub-01_T2w", "a/b", "a_b", "a b", "../x", ".hidden", "index.html", "ü", "x" * 300]
    folders = [safe_name(n) for n in names]
    assert folders[0] == "sub-01_T2w" and folders[2] == "a_b"
    assert len(set(folders)) == len(folders)
    for folder in folders:
        assert all((c.isalnum() and c.isascii()) or c in "._-" for c in folder)
        assert not folder.startswith(".") and folder != "index.html" and len(folder) < 100


# --------------------------------------------------------------------------------------------------
# The page


def test_page_writes_every_view_as_a_valid_png(tmp_path: Path):
    entry = full_entry()
    page = write_qc_page(entry, tmp_path)
    folder = tmp_path / "sub-01_T2w"
    assert page == folder / PAGE_NAME
    sources = tags(page).images
    # 2 view sets (centre, landmark) × 3 planes × 5 panels (input, output, residual, SD, mask) + the CSA plot.
    assert len(sources) == 31 == len(set(sources))
    for src in sources:
        assert_valid_png(folder / src)
    assert {p.name for p in folder.glob("*.png")} == set(sources)  # nothing else, nothing missing

    qc = json.loads((folder / RECORD_NAME).read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    listed = {f for views in qc["images"].values() for files in views.values() for f in files.values()} | {qc["csa"]}
    assert listed == set(sources) and qc["thumbnail"] in listed
    assert qc["thumbnail"] == "centre_sagittal_output.png"  # across the axial slices
    assert qc["summary"] == {
        "model": "cubic",
        "thickness_mm": 4.0,
        "thickness_source": "sidecar",
        "forward_psnr_db": 37.5,
        "forward_ssim": 0.97,
        "seconds": 0.25,
    }
    assert qc["record"]["ssim_small"] is None and len(qc["record"]["slice_residual"]) == 12
    assert qc["warnings"] == ["thickness from the separation (no sidecar)"]

    text = page.read_text()
    assert 'class="warnings"' in text and "thickness from the separation (no sidecar)" in text
    assert entry.record["weights_sha256"] in text and "forward_consistency.psnr" in text
    lo, hi, _ = intensity_window(entry.input.data)
    assert qc["windows"]["input"] == [lo, hi] and f"{lo:.6g} – {hi:.6g}" in text
    r = qc["windows"]["residual"][1]
    assert qc["windows"]["residual"] == [-r, r] and r > 0
    assert "<script" not in text and "http://" not in text and "https://" not in text  # offline, no scripts

    # The mask panel is the output with a red outline: its red pixels trace the 4-mm cylinder in the axial view.
    axial_mask = decoded(folder / "centre_axial_mask.png")
    axial_output = decoded(folder / "centre_axial_output.png")
    red = np.all(axial_mask == (255, 48, 48), axis=-1)
    rows, cols = np.nonzero(red)
    # Pixel (row, col) of the axial view lies at x = 11.5 - col, y = 9.5 - row mm (right and anterior first).
    radius = np.hypot(11.5 - cols, 9.5 - rows)
    assert red.sum() >= 16 and np.all((radius >= 3.0) & (radius < 4.0))
    np.testing.assert_array_equal(axial_mask[~red][:, 0], axial_output[~red])


def test_optional_panels_come_and_go(tmp_path: Path):
    bare = full_entry(residual=None, sd=None, cord_mask=None, csa_mm2=None, landmark_mm=None)
    page = write_qc_page(bare, tmp_path)
    assert sorted(tags(page).images) == sorted(
        f"centre_{plane}_{kind}.png" for plane in ("axial", "coronal", "sagittal") for kind in ("input", "output")
    )
    text = page.read_text()
    assert "forward residual" not in text and "SD of samples" not in text and "cord outline" not in text
    assert "Cross-sectional area" not in text

    write_qc_page(dataclasses.replace(bare, residual=full_entry().residual), tmp_path)
    folder = tmp_path / bare.name
    assert len(list(folder.glob("*_residual.png"))) == 3
    assert len(list(folder.glob("*_sd.png"))) == 0
    write_qc_page(dataclasses.replace(bare, sd=full_entry().sd), tmp_path)  # the residual's PNGs are stale now
    assert len(list(folder.glob("*_residual.png"))) == 0 and len(list(folder.glob("*_sd.png"))) == 3
    for src in tags(folder / PAGE_NAME).images:
        assert_valid_png(folder / src)


def _values(png: Path, window: list[float]) -> np.ndarray:
    """Intensities of a grey view (NaN where clipped to black or white)."""
    pixels = decoded(png).astype(np.float64)
    values = window[0] + pixels / 255.0 * (window[1] - window[0])
    values[(pixels == 0) | (pixels == 255)] = np.nan
    return values


def _mismatch(folder: Path, plane: str) -> float:
    qc = json.loads((folder / RECORD_NAME).read_text())
    a = _values(folder / f"centre_{plane}_input.png", qc["windows"]["input"])
    b = _values(folder / f"centre_{plane}_output.png", qc["windows"]["output"])
    assert a.shape == b.shape
    step = (np.diff(qc["windows"]["input"]) + np.diff(qc["windows"]["output"])) / 255.0
    both = np.isfinite(a) & np.isfinite(b)
    assert both.mean() > 0.5
    return float(np.mean(np.abs(a[both] - b[both]) > step))


def test_input_and_output_are_shown_at_the_same_world_points(tmp_path: Path):
    """With a nearest-neighbour SR output, the input sampled at the output's plane positions is the output itself."""
    inp = thick_input()
    nearest = sr_of(inp, order=0)
    write_qc_page(QCEntry("same", inp, nearest), tmp_path)
    for plane in ("axial", "coronal", "sagittal"):
        assert _mismatch(tmp_path / "same", plane) == 0.0, plane
    # Negative control: the output moved by one input slice (4 mm) along z no longer matches across the slices.
    moved = nearest.affine.copy()
    moved[2, 3] += 4.0
    write_qc_page(QCEntry("moved", inp, Volume(nearest.data, moved)), tmp_path)
    assert _mismatch(tmp_path / "moved", "coronal") > 0.3
    assert _mismatch(tmp_path / "moved", "sagittal") > 0.3


def test_views_follow_world_orientation_not_storage_order(tmp_path: Path):
    ras, las = thick_input(), thick_input(flip_x=True)
    write_qc_page(QCEntry("ras", ras, sr_of(ras)), tmp_path)
    write_qc_page(QCEntry("las", las, sr_of(las)), tmp_path)
    for png in sorted((tmp_path / "ras").glob("*.png")):
        np.testing.assert_array_equal(decoded(png), decoded(tmp_path / "las" / png.name), err_msg=png.name)
    # Radiological display: the bar at the subject's right-anterior is in the top-left corner of the axial view.
    axial = decoded(tmp_path / "ras" / "centre_axial_output.png")
    rows, cols = axial.shape
    bright = axial > 250
    assert bright[: rows // 2, : cols // 2].mean() > 0.3
    assert bright[rows // 2 :, :].mean() < 0.01 and bright[:, cols // 2 + 1 :].mean() < 0.01
    # Coronal and sagittal views: superior at the top (the content grows with z).
    coronal = decoded(tmp_path / "ras" / "centre_coronal_output.png").astype(float)
    assert coronal[:5].mean() > coronal[-5:].mean()


def test_landmark_views_and_a_landmark_outside(tmp_path: Path):
    entry = full_entry(residual=None, sd=None, cord_mask=None, csa_mm2=None)
    page = write_qc_page(entry, tmp_path)
    assert sum(src.startswith("landmark_") for src in tags(page).images) == 6
    assert "Through the landmark (1.0, -2.0, 3.0) mm" in page.read_text()
    page = write_qc_page(dataclasses.replace(entry, landmark_mm=(0.0, 0.0, 500.0)), tmp_path)
    qc = json.loads((page.parent / RECORD_NAME).read_text())
    assert not any(src.startswith("landmark_") for src in tags(page).images)
    assert not list(page.parent.glob("landmark_*.png"))
    assert any("outside the output's field of view" in w for w in qc["qc_warnings"])
    assert qc["warnings"] == ["thickness from the separation (no sidecar)", *qc["qc_warnings"]]


def test_entry_validation():
    entry = full_entry()
    with pytest.raises(ValueError, match="name"):
        QCEntry("", entry.input, entry.output)
    with pytest.raises(TypeError, match="Volume"):
        QCEntry("x", entry.input, entry.output.data)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="warnings"):
        QCEntry("x", entry.input, entry.output, record={"warnings": "one string"})
    with pytest.raises(ValueError, match="csa_mm2"):
        QCEntry("x", entry.input, entry.output, csa_mm2=[(0.0, float("nan"))])
    with pytest.raises(ValueError, match="landmark_mm"):
        QCEntry("x", entry.input, entry.output, landmark_mm=(0.0, 1.0))


def test_empty_mask_and_foreign_output_are_warned(tmp_path: Path):
    entry = full_entry(residual=None, sd=None, csa_mm2=None, landmark_mm=None)
    empty = Volume(np.zeros(entry.output.shape, np.float32), entry.output.affine)
    far = entry.output.affine.copy()
    far[:3, 3] += 1000.0
    page = write_qc_page(dataclasses.replace(entry, cord_mask=empty, output=Volume(entry.output.data, far)), tmp_path)
    warnings = json.loads((page.parent / RECORD_NAME).read_text())["qc_warnings"]
    assert any("cord mask is empty" in w for w in warnings)
    assert any("outside the input's field of view" in w for w in warnings)


# --------------------------------------------------------------------------------------------------
# The index


def small_entry(name: str, psnr: float | None, warnings: list[str] | None = None) -> QCEntry:
    inp = thick_input(shape=(12, 10, 3))
    return QCEntry(name, inp, sr_of(inp), record=record(psnr, warnings))


def test_index_lists_every_page_sorted_and_rebuilds(tmp_path: Path):
    entries = [
        small_entry("good", 40.0),
        small_entry("warned", 35.0, ["thickness from the separation"]),
        small_entry("poor", 30.0),
        small_entry("unchecked", None),
        small_entry("sub/02 odd name", 38.0),
    ]
    for entry in entries:
        write_qc_page(entry, tmp_path)
    index = write_qc_index(tmp_path)
    assert index == tmp_path / PAGE_NAME
    found = tags(index)
    assert found.rows == ["warned", "poor", "sub/02 odd name", "good", "unchecked"]
    for entry in entries:
        link = f"{safe_name(entry.name)}/{PAGE_NAME}"
        assert link in found.links and (tmp_path / link).is_file()
    assert len(found.images) == len(entries)
    for src in found.images:
        assert_valid_png(tmp_path / src)
    text = index.read_text()
    assert "35.00" in text and "4 mm (sidecar)" in text and "<script>" in text and "http" not in text

    # A resumed batch: a new page (with a warning and the worst PSNR) and an unreadable record; nothing else rewritten.
    write_qc_page(small_entry("late", 20.0, ["forward consistency poor"]), tmp_path)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / RECORD_NAME).write_text("{")
    rows = tags(write_qc_index(tmp_path)).rows
    # Warned rows by PSNR (the unreadable record has none: last of them), then the others.
    assert rows == ["late", "warned", "broken", "poor", "sub/02 odd name", "good", "unchecked"]
    assert "unreadable" in index.read_text()


def test_index_of_an_empty_folder(tmp_path: Path):
    index = write_qc_index(tmp_path / "qc")
    assert index.is_file() and tags(index).rows == []


# --------------------------------------------------------------------------------------------------
# A real browser

_PROBE = """<script>
window.addEventListener('load', function () {
  function names() {
    return Array.prototype.map.call(document.querySelectorAll('#volumes tbody tr'),
                                    function (r) { return r.getAttribute('data-name'); });
  }
  var result = {
    images: Array.prototype.map.call(document.images, function (i) {
      return {src: i.getAttribute('src'), loaded: i.complete && i.naturalWidth > 0, width: i.naturalWidth};
    }),
    rows: names(), by_psnr: null, by_psnr_desc: null
  };
  var psnr = document.querySelector('#volumes thead th:nth-child(5)');
  if (psnr) { psnr.click(); result.by_psnr = names(); psnr.click(); result.by_psnr_desc = names(); }
  var out = document.createElement('pre'); out.id = 'probe-result'; out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>"""


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _probe(page: Path, profile: Path) -> dict:
    """Open a copy of ``page`` (same folder, so relative paths resolve) with a probe script; return its findings."""
    probe = page.with_name("probe-" + page.name)
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    done = _chromium(["--virtual-time-budget=10000", "--dump-dom", probe.as_uri()], profile)
    probe.unlink()
    start = done.stdout.find('<pre id="probe-result">')
    assert start >= 0, f"no probe result from chromium (rc {done.returncode}): {done.stderr[-2000:]}"
    text = done.stdout[start + len('<pre id="probe-result">') :]
    from html import unescape

    return json.loads(unescape(text[: text.index("</pre>")]))


@pytest.mark.skipif(CHROMIUM is None, reason="headless chromium not installed (apt-get install chromium)")
def test_report_opens_in_headless_chromium(tmp_path: Path):
    folder = tmp_path / "qc"
    entries = [
        full_entry("sub-01_T2w", record=record(37.5)),
        small_entry("sub-02_T2w", 31.0),
        small_entry("sub-03_T2w", 42.0, ["x"]),
    ]
    for entry in entries:
        write_qc_page(entry, folder)
    index = write_qc_index(folder)
    profile = tmp_path / "chromium-profile"

    found = _probe(index, profile)
    assert found["rows"] == ["sub-03_T2w", "sub-02_T2w", "sub-01_T2w"]  # warnings first, then PSNR ascending
    assert found["by_psnr"] == ["sub-02_T2w", "sub-01_T2w", "sub-03_T2w"]  # the header click sorts by PSNR
    assert found["by_psnr_desc"] == ["sub-03_T2w", "sub-01_T2w", "sub-02_T2w"]
    assert len(found["images"]) == 3 and all(image["loaded"] for image in found["images"]), found["images"]

    page = folder / "sub-01_T2w" / PAGE_NAME
    found = _probe(page, profile)
    assert len(found["images"]) == len(tags(page).images) == 31
    assert all(image["loaded"] and image["width"] > 0 for image in found["images"]), found["images"]

    for target in (index, page):
        shot = tmp_path / f"{target.parent.name}.png"
        done = _chromium(["--window-size=1280,1600", f"--screenshot={shot}", target.as_uri()], profile)
        assert shot.is_file(), done.stderr[-2000:]
        assert_valid_png(shot)
        pixels = decoded(shot)
        assert pixels.shape[:2] == (1600, 1280) and pixels.std() > 10  # a rendered page, not a blank one


# --------------------------------------------------------------------------------------------------
# A real scan


def test_page_of_a_real_thick_scan(tmp_path: Path, shared_data: Path):
    from mrisr.api import as_volume

    inp = as_volume(shared_data / "thick" / "t1w_axial_5mm.nii.gz")
    out = sr_of(inp)
    page = write_qc_page(QCEntry("t1w", inp, out, residual=residual_of(inp, out)), tmp_path)
    images = tags(page).images
    assert len(images) == 9
    for src in images:
        assert_valid_png(page.parent / src)
    # Views at the output's resolution: the axial view has the output's in-plane size (192 × 192).
    assert decoded(page.parent / "centre_axial_output.png").shape == (192, 192)
