"""The refresh-paths benchmark's model grows with size exactly where AWS says the work does."""

from __future__ import annotations

import pytest

from benchmarks.refresh_paths import PATHS, SIZES_GIB, _replace_section, expected


def test_a_clone_takes_as_long_whatever_the_size_and_a_snapshot_grows() -> None:
    clone = [expected("clone", size).minutes for size in SIZES_GIB]
    snapshot = [expected("snapshot", size).minutes for size in SIZES_GIB]
    pitr = [expected("pitr", size).minutes for size in SIZES_GIB]
    assert len(set(clone)) == 1
    assert snapshot == sorted(snapshot) and snapshot[0] < snapshot[-1]
    # A point-in-time restore skips the copy but still loads the volume.
    assert all(c < p < s for c, p, s in zip(clone, pitr, snapshot, strict=True))
    assert "copy" in expected("snapshot", 100).stages and "copy" not in expected("pitr", 100).stages


def test_an_unknown_path_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="one of " + ", ".join(PATHS)):
        expected("export", 100)


def test_the_section_replaces_only_its_own() -> None:
    text = "# R\n\n## Refresh paths\nold\n\n## Test suite time\nkept\n"
    assert _replace_section(text, "## Refresh paths\nnew\n") == "# R\n\n## Refresh paths\nnew\n## Test suite time\nkept\n"
    assert "## Refresh paths\nnew" in _replace_section("# R\n\n## Test suite time\nkept\n", "## Refresh paths\nnew\n")
