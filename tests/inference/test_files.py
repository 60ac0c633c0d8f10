"""collect_images: how predict's arguments (files, folders, glob patterns) become image paths."""

from __future__ import annotations

import os

import pytest

from maskrt.core.errors import MaskrtError
from maskrt.inference.files import collect_images


@pytest.fixture
def tree(tmp_path):
    for rel in ("a.png", "b.jpg", "notes.txt", "sub/c.png", "sub/deeper/d.jpeg", "other/e.png"):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    return tmp_path


def test_files_folders_and_patterns_in_order_each_once(tree):
    t = str(tree)
    got = collect_images([f"{t}/other/e.png", f"{t}/sub", f"{t}/*.png", f"{t}/sub/c.png"])
    assert got == [
        (f"{t}/other/e.png", f"{t}/other"),
        (f"{t}/sub/c.png", f"{t}/sub"),
        (f"{t}/sub/deeper/d.jpeg", f"{t}/sub"),
        (f"{t}/a.png", t),
    ]


def test_a_missing_name_among_found_ones_is_kept_to_be_reported(tree):
    got = collect_images([str(tree / "a.png"), str(tree / "gone.png")])
    assert [os.path.basename(p) for p, _ in got] == ["a.png", "gone.png"]


@pytest.mark.parametrize("items,message", [
    (["gone.png"], "image not found: gone.png"),
    (["gone.png", "lost.jpg"], "none of the 2 images exist (first: gone.png)"),
    ([], "no images given"),
])
def test_nothing_to_read_is_refused_before_any_model_loads(items, message):
    with pytest.raises(MaskrtError) as e:
        collect_images(items)
    assert str(e.value) == message


def test_empty_folder_and_unmatched_pattern(tree):
    (tree / "empty").mkdir()
    with pytest.raises(MaskrtError, match="holds no images"):
        collect_images([str(tree / "empty")])
    with pytest.raises(MaskrtError, match="no file matches"):
        collect_images([str(tree / "*.webp")])
