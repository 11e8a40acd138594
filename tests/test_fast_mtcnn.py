"""The vectorized MTCNN: same detections as facenet-pytorch's, any batch, recall per size band."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sampledata.labelled_faces import BandCounts, LabelledImage, generate_labelled_set, grow, score_image
from transforms.detection.fast_mtcnn import (
    FAST_MTCNN,
    FastMtcnnDetector,
    FastMtcnnSettings,
    _max_pool,
    area_resize,
    integral_image,
    load_net,
    min_nms,
    pyramid_scales,
    take_rows,
)
from transforms.records import Face, box_iou

SCORE = 0.7  # detector_score_threshold's default: faces under it are not replaced


@pytest.fixture(scope="module")
def labelled() -> list[LabelledImage]:
    return [item for item, _ in generate_labelled_set(with_faces=48, faceless=12, seed=4)]


@pytest.fixture(scope="module")
def fast() -> FastMtcnnDetector:
    return FastMtcnnDetector(FastMtcnnSettings(device="cpu"))


@pytest.fixture(scope="module")
def stock_boxes(labelled: list[LabelledImage]) -> list[list[tuple[float, float, float, float, float]]]:
    from facenet_pytorch import MTCNN

    torch.set_num_threads(1)
    model = MTCNN(keep_all=True, device="cpu")
    out = []
    for item in labelled:
        boxes, probs = model.detect(item.image)
        out.append([] if boxes is None else
                   [(*(float(v) for v in b), float(p)) for b, p in zip(boxes, probs, strict=True)])
    return out



@pytest.mark.parametrize("name", ["pnet", "rnet", "onet"])
def test_nets_built_from_the_state_dicts_are_facenets_own(name: str) -> None:
    """The same layers and weights as facenet-pytorch's PNet, RNet and ONet modules: this module's
    forward pass gives the very same outputs on both, and matches facenet-pytorch's own forward
    (R-Net and O-Net run channels-last here: equal to float rounding)."""
    from facenet_pytorch.models import mtcnn

    theirs = {"pnet": mtcnn.PNet, "rnet": mtcnn.RNet, "onet": mtcnn.ONet}[name]().eval()
    ours = load_net(name, torch.device("cpu"))
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    side = {"pnet": 37, "rnet": 24, "onet": 48}[name]
    crops = torch.rand(3, 3, side, side, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.inference_mode():
        for got, same, want in zip(ours_forward(name, ours, crops), ours_forward(name, theirs, crops), theirs(crops),
                                   strict=True):
            assert torch.equal(got, same)
            assert torch.allclose(got, want, atol=1e-5)


def ours_forward(name: str, net: torch.nn.Module, crops: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """This module's forward pass of ``name``, in facenet-pytorch's output order and layout."""
    from transforms.detection import fast_mtcnn

    if name == "pnet":
        reg, prob = fast_mtcnn._pnet_forward(net, crops)
        return reg, prob
    if name == "rnet":
        reg, prob = fast_mtcnn._rnet_forward(net, crops)
        return reg, prob
    reg, marks, prob = fast_mtcnn._onet_forward(net, crops)
    return reg, marks, prob


def test_max_pool_matches_torch_pooling() -> None:
    for kernel in (2, 3):
        for shape in [(22, 22), (23, 24), (46, 47), (11, 10), (5, 5), (4, 3)]:
            x = torch.randn(3, 4, *shape)
            expected = torch.nn.functional.max_pool2d(x, kernel, 2, ceil_mode=True)
            assert torch.equal(_max_pool(x, kernel), expected), (kernel, shape)


def test_integral_image_opencv_and_cumsum_agree_on_mixed_sizes() -> None:
    rng = np.random.default_rng(5)
    arrays = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((31, 40), (45, 22), (7, 9))]
    opencv = integral_image(arrays, "cpu")
    assert opencv.dtype == torch.int32 and opencv.shape == (3, 46, 41, 3)
    cumsum = integral_image(arrays, "cpu", opencv=False)  # the path CUDA takes, here on CPU
    assert torch.equal(opencv, cumsum)
    assert torch.equal(integral_image(arrays[:1], "cpu"), integral_image(arrays[:1], "cpu", opencv=False))
    for i, a in enumerate(arrays):
        h, w = a.shape[:2]
        assert int(opencv[i, h, w, 1]) == int(a[:, :, 1].sum())
        assert int(opencv[i, 3, 5, 0]) == int(a[:3, :5, 0].sum())


def test_area_resize_is_bitwise_torch_area_interpolation() -> None:
    """The pyramid's levels from the integral image equal ``interpolate(mode="area")`` exactly."""
    rng = np.random.default_rng(6)
    arrays = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((480, 640), (333, 250))]
    planes = integral_image(arrays, "cpu").permute(0, 3, 1, 2).contiguous()
    for i, a in enumerate(arrays):
        h, w = a.shape[:2]
        image = torch.from_numpy(a).permute(2, 0, 1)[None].float()
        for scale in pyramid_scales(h, w, 12, 0.709):  # min face 12: the first level is scale 1
            size = (int(h * scale + 1), int(w * scale + 1))
            expected = torch.nn.functional.interpolate(image, size=size, mode="area")
            assert torch.equal(area_resize(planes[i: i + 1], h, w, size), expected), (h, w, size)
            # The torch gathers CUDA uses, here on CPU.
            assert torch.equal(area_resize(planes[i: i + 1], h, w, size, numpy_gather=False), expected)


def test_take_rows_numpy_and_torch_gathers_agree() -> None:
    table = torch.arange(60, dtype=torch.int32).reshape(20, 3)
    where = torch.tensor([[[0, 19], [5, 5]], [[7, 1], [2, 3]]])
    numpy_rows = take_rows(table, where)
    assert numpy_rows.shape == (2, 2, 2, 3) and int(numpy_rows[0, 0, 1, 2]) == 59
    assert torch.equal(numpy_rows, take_rows(table, where, numpy_gather=False))


def test_min_nms_matches_facenet_numpy_nms() -> None:
    from facenet_pytorch.models.utils.detect_face import batched_nms_numpy

    generator = torch.Generator().manual_seed(3)
    xy = torch.rand(60, 2, generator=generator) * 200
    wh = torch.rand(60, 2, generator=generator) * 60 + 5
    boxes = torch.cat([xy, xy + wh], dim=1)
    scores = torch.rand(60, generator=generator)
    groups = torch.randint(0, 3, (60,), generator=generator)
    expected = batched_nms_numpy(boxes, scores, groups, 0.7, "Min")
    got = min_nms(boxes, scores, groups, 0.7)
    assert sorted(got.tolist()) == sorted(expected.tolist())
    assert 0 < len(got) < 60


def test_agrees_with_stock_mtcnn(labelled: list[LabelledImage], fast: FastMtcnnDetector,
                                 stock_boxes: list[list[tuple[float, ...]]]) -> None:
    """IoU >= 0.9 for at least 99% of the boxes above the score threshold, both ways."""
    matched = total = 0
    for item, stock in zip(labelled, stock_boxes, strict=True):
        mine = [(f.x1, f.y1, f.x2, f.y2, f.score) for f in fast.detect([item.image])[0]]
        theirs = [b for b in stock if b[4] >= SCORE]
        ours = [b for b in mine if b[4] >= SCORE]
        for a, others in ((theirs, ours), (ours, theirs)):
            for box in a:
                total += 1
                matched += max((box_iou(box, o) for o in others), default=0.0) >= 0.9
    assert total > 80
    assert matched / total >= 0.99, f"{matched}/{total} boxes agree"


def test_mixed_sizes_and_faceless_batch(labelled: list[LabelledImage], fast: FastMtcnnDetector) -> None:
    with_face = next(item for item in labelled if item.boxes)
    faceless = next(item for item in labelled if not item.boxes)
    small = with_face.image.resize((400, 300))
    tiny = Image.new("RGB", (9, 9), (90, 90, 90))
    batch = [with_face.image, small, faceless.image, tiny]
    together = fast._detect_batch(batch)  # the whole-batch path CUDA takes, here on CPU
    alone = [fast.detect([image])[0] for image in batch]
    assert fast.detect(batch) == alone
    assert len(together) == 4
    assert together[2] == [] and together[3] == []
    assert len(together[0]) >= 1 and len(together[1]) >= 1
    for joint, single in zip(together, alone, strict=True):
        assert len(joint) == len(single)
        for a, b in zip(sorted(joint, key=lambda f: f.x1), sorted(single, key=lambda f: f.x1), strict=True):
            assert np.allclose([a.x1, a.y1, a.x2, a.y2], [b.x1, b.y1, b.x2, b.y2], atol=0.5)
    face = together[0][0]
    assert isinstance(face, Face) and face.detector == FAST_MTCNN and len(face.landmarks) == 5
    assert fast.detect([]) == [] and fast.detect([faceless.image]) == [[]]


def test_recall_per_size_band(labelled: list[LabelledImage], fast: FastMtcnnDetector,
                              stock_boxes: list[list[tuple[float, ...]]]) -> None:
    """>= 0.99 for faces >= 40 px, >= 0.95 for 20-40 px; no more false positives than stock."""
    counts = BandCounts.empty()
    stock_fp = 0
    for item, stock in zip(labelled, stock_boxes, strict=True):
        boxes = [(f.x1, f.y1, f.x2, f.y2) for f in fast.detect([item.image])[0] if f.score >= SCORE]
        score_image(counts, list(item.boxes), boxes, [grow(b, 1.2) for b in boxes])
        if not item.boxes:
            stock_fp += sum(1 for b in stock if b[4] >= SCORE)
    assert counts.faces["20-40"] >= 15 and counts.faces["40-80"] >= 15 and counts.faces[">=80"] >= 10
    assert counts.recall("40-80") >= 0.99 and counts.recall(">=80") >= 0.99, counts
    assert counts.recall("20-40") >= 0.95, counts
    assert counts.faceless_images == 12
    assert counts.faceless_false_positives <= stock_fp


def test_cpu_chunks_of_crops_give_the_same_faces(labelled: list[LabelledImage], fast: FastMtcnnDetector,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import transforms.detection.fast_mtcnn as fast_mtcnn

    images = [item.image for item in labelled[:6]]
    chunked = [fast.detect([image])[0] for image in images]
    monkeypatch.setattr(fast_mtcnn, "CPU_CHUNK", 10**6)  # every crop of an image in one call
    whole = [fast.detect([image])[0] for image in images]
    assert sum(len(faces) for faces in whole) >= 6
    for a_faces, b_faces in zip(chunked, whole, strict=True):
        assert len(a_faces) == len(b_faces)
        for a, b in zip(a_faces, b_faces, strict=True):
            assert np.allclose([a.x1, a.y1, a.x2, a.y2, a.score], [b.x1, b.y1, b.x2, b.y2, b.score], atol=1e-3)
