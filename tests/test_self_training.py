"""Self-training: soft labels of unlabelled faces from a teacher, a student that trains on them,
and teachers that never saw the faces their student's fold holds out."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from tests.conftest import IMAGES, MASKS, needs_data, tiny_config
from utils.errors import UserError

pytestmark = needs_data

UNLABELLED = 6


@pytest.fixture
def data_with_unlabelled(small_data):
    """16 labelled pairs and 6 real faces without a mask in the same image folder."""
    img_dir, mask_dir = small_data
    labelled = {p.stem for p in MASKS.glob("*.png")}
    extra = [p for p in sorted(IMAGES.glob("*.jpg")) if p.stem not in labelled][:UNLABELLED]
    for p in extra:
        os.symlink(p, img_dir / p.name)
    return img_dir, mask_dir, sorted(p.stem for p in extra)


def test_students_learn_from_their_own_folds_teacher(data_with_unlabelled, tmp_path):
    from utils.data.dataset import WrinkleDataset, normalize_input
    from utils.data.pairs import find_pairs
    from utils.runtime import logits_to_probs
    from utils.training.crossval import (
        check_teachers,
        labelled_ids,
        load_or_make_folds,
        read_oof,
        run_fold,
    )
    from utils.training.distill import teacher

    img_dir, mask_dir, unlabelled = data_with_unlabelled
    cfg = tiny_config(img_dir, mask_dir, tmp_path / "unused", epochs=2, lr=0.01)
    ids = labelled_ids(cfg, log=lambda s: None)
    quiet = {"progress": False, "log": lambda s: None}
    teachers = tmp_path / "teachers"
    folds = load_or_make_folds(teachers, ids, 2, 0)
    for k in range(2):
        run_fold(cfg, teachers, k, folds, **quiet)

    students = tmp_path / "students"
    assert load_or_make_folds(students, ids, 2, 0) == folds
    lines: list[str] = []
    for k in range(2):
        run_fold(cfg, students, k, folds, progress=False, log=lines.append, teachers=teachers)
        pseudo = students / f"pseudo{k}"
        # only the unlabelled faces get a soft label: no held-out face can leak in
        assert sorted(p.stem for p in pseudo.glob("*.png")) == unlabelled
        # and the label is fold k's teacher (flip-averaged) on that face, x 255
        model, recipe = teacher([teachers / f"fold{k}" / "last.pth"], "flip")
        pair = find_pairs(img_dir, None, None, ids=[unlabelled[0]], progress=False).pairs[0]
        sample = WrinkleDataset([pair], recipe)[0]
        x = normalize_input(sample["image"][None], recipe)
        want = logits_to_probs(model(x)).detach().numpy()[0] * 255
        got = cv2.imread(str(pseudo / f"{unlabelled[0]}.png"), cv2.IMREAD_GRAYSCALE)
        assert got.shape == (64, 64) and np.abs(got - want).max() <= 1.01
        assert sorted(read_oof(students, k)["ids"]) == folds[k]
    assert sum(f"self-training: {UNLABELLED} pseudo-labelled faces" in line
               for line in lines) == 2
    # a student trained on them differs from its teacher (the soft labels reached it)
    a, b = read_oof(teachers, 0)["probs"], read_oof(students, 0)["probs"]
    assert np.abs(a.astype(np.float32) - b.astype(np.float32)).max() > 1e-3

    # two teacher folders of the same folds (here: 6 epochs beside 2): fold k's teacher is the
    # average of their fold-k models, an ensemble that never saw fold k's faces
    longer = tmp_path / "teachers_e6"
    load_or_make_folds(longer, ids, 2, 0)
    cfg6 = tiny_config(img_dir, mask_dir, tmp_path / "unused", epochs=6, lr=0.02)
    run_fold(cfg6, longer, 0, folds, **quiet)
    both = tmp_path / "students_of_two"
    load_or_make_folds(both, ids, 2, 0)
    run_fold(cfg, both, 0, folds, teachers=[teachers, longer], **quiet)
    pair = find_pairs(img_dir, None, None, ids=[unlabelled[1]], progress=False).pairs[0]
    views = []
    for folder in (teachers, longer):
        model, recipe = teacher([folder / "fold0" / "last.pth"], "flip")
        x = normalize_input(WrinkleDataset([pair], recipe)[0]["image"][None], recipe)
        views.append(logits_to_probs(model(x)).detach().numpy()[0])
    assert np.abs(views[0] - views[1]).max() > 0.05  # two different teachers ...
    got = cv2.imread(str(both / "pseudo0" / f"{unlabelled[1]}.png"), cv2.IMREAD_GRAYSCALE)
    assert np.abs(got - (views[0] + views[1]) / 2 * 255).max() <= 1.01  # ... averaged
    with pytest.raises(UserError, match="teacher of fold 1 is missing"):
        run_fold(cfg, both, 1, folds, teachers=[teachers, longer], **quiet)

    other = tmp_path / "other_seed"
    load_or_make_folds(other, ids, 2, 1)
    with pytest.raises(UserError, match="folds differ"):
        check_teachers(other, folds)
    with pytest.raises(UserError, match="folds differ"):
        run_fold(cfg, both, 0, folds, teachers=[teachers, other], **quiet)
    with pytest.raises(UserError, match="not a cross-validation folder"):
        check_teachers(tmp_path, folds)


def test_a_pool_of_soft_labels_is_drawn_afresh_each_epoch(data_with_unlabelled, tmp_path):
    from pseudo_label import main
    from utils.data.dataset import WrinkleDataset, build_augmentation
    from utils.data.pairs import find_pairs
    from utils.training.loop import pseudo_pairs, train

    img_dir, mask_dir, unlabelled = data_with_unlabelled
    cfg = tiny_config(img_dir, mask_dir, tmp_path / "cp", epochs=1)
    train(cfg, progress=False, log=lambda s: None)
    ckpt = tmp_path / "cp" / "t" / "last.pth"
    soft = tmp_path / "soft"
    assert main(["-m", str(ckpt), "--images", str(img_dir), "--skip-masks", str(mask_dir),
                 "--out", str(soft), "--no-progress"]) == 0
    assert sorted(p.stem for p in soft.glob("*.png")) == unlabelled
    with pytest.raises(UserError, match="another teacher"):  # not mixed with other labels
        main(["-m", str(ckpt), "--images", str(img_dir), "--out", str(soft), "--tta", "none"])

    d = cfg["data"] | {"pseudo_dir": str(soft), "pseudo_per_epoch": 2}
    labelled = {p.id for p in find_pairs(img_dir, mask_dir, progress=False).pairs}
    pool = pseudo_pairs(d, labelled, log=lambda s: None)
    assert sorted(p.id for p in pool) == unlabelled and all(p.soft for p in pool)
    pairs = find_pairs(img_dir, mask_dir, progress=False).pairs[:4]
    ds = WrinkleDataset(pairs, {"image_size": 64, "normalize": "symmetric"},
                        build_augmentation(cfg["augment"]), pool=pool, pool_per_epoch=2)
    assert len(ds) == 6
    draws = []
    for epoch in range(6):
        ds.set_epoch(epoch)
        draws.append(tuple(ds.pair(i).id for i in (4, 5)))
        assert draws[-1] == tuple(ds.pair(i).id for i in (4, 5))  # one draw per epoch
        labelled_y, soft_y = ds[0]["mask"], ds[4]["mask"]
        assert labelled_y.dtype == soft_y.dtype  # one batch can hold both
        assert set(np.unique(labelled_y.numpy())) <= {0.0, 1.0}
    assert len(set(draws)) > 1
    ds.set_epoch(0)
    values = np.unique(WrinkleDataset(pool[:1], {"image_size": 64, "normalize": "symmetric"})
                       [0]["mask"].numpy())
    assert ((values > 0) & (values < 1)).any()  # probabilities, not a binary mask

    with pytest.raises(UserError, match="no soft label of an unlabelled face"):
        pseudo_pairs(d, labelled | set(unlabelled), log=lambda s: None)
