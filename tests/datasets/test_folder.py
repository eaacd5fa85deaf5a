import numpy as np
import pytest
from PIL import Image

from cnnlab.datasets import image_folder, load

COLORS = {"apple": (200, 10, 10), "banana": (220, 220, 40), "cherry": (120, 0, 40)}


def make_tree(root, split_dirs=("Training", "Test"), per_class=3, size=(10, 14)):
    """Solid-colour PNG and JPEG images, one folder per class."""
    for split in split_dirs:
        for cls, rgb in COLORS.items():
            d = root / split / cls if split else root / cls
            d.mkdir(parents=True)
            for i in range(per_class):
                img = Image.new("RGB", (size[1], size[0]), rgb)
                img.save(d / (f"{i}.png" if i % 2 == 0 else f"{i}.JPG"))
            (d / "notes.txt").write_text("ignored")


@pytest.mark.parametrize("layout", [("Training", "Test"), ("train", "test")])
def test_train_test_layouts_rgb_and_resize(tmp_path, layout):
    make_tree(tmp_path, layout)
    ds = image_folder(tmp_path, image_size=(6, 8))
    assert ds.class_names == ["apple", "banana", "cherry"]
    assert ds.x_train.shape == (9, 6, 8, 3) and ds.x_test.shape == (9, 6, 8, 3)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.uint8
    for x, y in zip(ds.x_train, ds.y_train):
        expected = COLORS[ds.class_names[y]]
        assert np.abs(x.reshape(-1, 3).mean(0) - expected).max() < 6  # JPEG is lossy
    (xt, yt), (xv, yv) = ds  # unpacks like load_data
    assert sorted(np.bincount(yv)) == [3, 3, 3]


def test_grayscale_and_native_size(tmp_path):
    make_tree(tmp_path, ("train", "test"))
    ds = image_folder(tmp_path, color_mode="grayscale")
    assert ds.x_train.shape == (9, 10, 14, 1)
    apple = ds.x_train[ds.y_train == 0]
    lum = 0.299 * 200 + 0.587 * 10 + 0.114 * 10
    assert abs(apple.mean() - lum) < 4


def test_flat_root_seeded_stratified_split(tmp_path):
    make_tree(tmp_path, (None,), per_class=5)
    a = image_folder(tmp_path, image_size=4, test_fraction=0.4, seed=3)
    b = load(tmp_path, image_size=4, test_fraction=0.4, seed=3)
    assert a.x_train.shape == (9, 4, 4, 3) and a.x_test.shape == (6, 4, 4, 3)
    assert list(np.bincount(a.y_test)) == [2, 2, 2]
    np.testing.assert_array_equal(a.x_test, b.x_test)
    assert b.source == str(tmp_path)


def test_split_is_seeded_and_stratified():
    from cnnlab.datasets.folder import _split
    labels = np.repeat([0, 1, 2], [10, 20, 30])
    tr, te = _split(labels, 0.2, seed=0)
    assert list(np.bincount(labels[te])) == [2, 4, 6] and len(np.intersect1d(tr, te)) == 0
    assert len(tr) + len(te) == 60
    np.testing.assert_array_equal(te, _split(labels, 0.2, seed=0)[1])
    assert not np.array_equal(te, _split(labels, 0.2, seed=1)[1])


def test_corrupt_image_warns_and_is_skipped(tmp_path):
    make_tree(tmp_path, ("train", "test"))
    bad = tmp_path / "train" / "banana" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "train" / "apple" / "gone.jpg").symlink_to(tmp_path / "missing.jpg")
    with pytest.warns(UserWarning) as rec:
        ds = image_folder(tmp_path, image_size=5)
    msgs = " ".join(str(w.message) for w in rec)
    assert "broken.png" in msgs and "gone.jpg" in msgs
    assert len(ds.x_train) == 9


def test_corrupt_image_raises(tmp_path):
    make_tree(tmp_path, ("train", "test"))
    (tmp_path / "test" / "cherry" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(ValueError, match=r"cannot read image .*broken\.jpg"):
        image_folder(tmp_path, image_size=5, on_error="raise")


def test_argument_errors(tmp_path):
    make_tree(tmp_path, ("train", "test"))
    with pytest.raises(ValueError, match="color_mode must be 'rgb' or 'grayscale', got 'cmyk'"):
        image_folder(tmp_path, color_mode="cmyk")
    with pytest.raises(ValueError, match="on_error must be 'warn' or 'raise'"):
        image_folder(tmp_path, on_error="ignore")
    (tmp_path / "test" / "durian").mkdir()
    with pytest.raises(ValueError, match="class folder 'durian' does not exist in the training set"):
        image_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        image_folder(tmp_path / "nope")
