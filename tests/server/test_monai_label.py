"""The MONAI Label-compatible subset, driven as 3D Slicer's MONAI Label extension drives it."""
from __future__ import annotations

import numpy as np
import pytest

from server_live import need_serve_extra
from medmem.io import read_volume
from slicer_client import SlicerLikeClient

need_serve_extra()
from medmem.server.monai_label import segment_request  # noqa: E402  (needs FastAPI)


@pytest.fixture()
def client(server, tmp_path):
    return SlicerLikeClient("127.0.0.1", server.port, tmp_path)


def test_info_and_auth_as_slicer_reads_them(client):
    assert client.auth_enabled() is False
    status, info = client.info()
    assert status == 200
    assert "config" not in info, "Slicer refuses servers whose /info/ has a top-level 'config'"
    assert info["labels"] and info["name"]
    m = info["models"]["medmem_3d"]
    assert m["type"] == "deepgrow" and m["dimension"] == 3 and m["labels"] == info["labels"]
    assert info["models"]["medmem_2d"]["dimension"] == 2


def test_session_and_3d_infer_with_roi_and_clicks(client, server, data_dir, model):
    src = data_dir / "blob.nii.gz"
    status, created = client.create_session(src)
    assert status == 200, created
    sid = created["session_id"]
    status, info = client.get_session(sid)
    assert status == 200 and info
    vol = read_volume(src)
    # Slicer's ROI comes from RAS -> IJK: each (min, max) pair may arrive reversed
    params = {"label": "object", "foreground": [[20, 24, 4]], "background": [[2, 2, 4]],
              "roi": [33, 7, 40, 9, 2, 6]}
    status, result, out = client.infer("medmem_3d", "blob", params, session_id=sid)
    assert status == 200, out
    assert result.name.endswith(".nrrd") and out["label_names"] == {"object": 1}
    lab = read_volume(result)
    assert lab.shape == vol.shape
    np.testing.assert_allclose(lab.spacing, vol.spacing)
    np.testing.assert_allclose(lab.origin, vol.origin)
    arr = lab.array
    assert set(np.unique(arr)) <= {0, 1} and arr.sum() > 100
    outside = np.ones(vol.shape, bool)
    outside[2:7, 9:41, 7:34] = False
    assert not arr[outside].any(), "voxels outside the ROI"
    assert arr[:, 24, 20].sum() >= 3, "the clicked voxel's column is not segmented through the ROI"
    expected = segment_request(model, vol, dict(params, roi=[7, 33, 9, 40, 2, 6]), 3)
    np.testing.assert_array_equal(arr, expected)
    assert client.remove_session(sid)[0] == 200
    assert client.get_session(sid)[0] == 404


def test_2d_infer_segments_one_slice_and_bad_requests(client, data_dir):
    status, created = client.create_session(data_dir / "blob.nii.gz")
    sid = created["session_id"]
    status, result, out = client.infer("medmem_2d", "blob", {"label": "object", "foreground": [[20, 24, 3]],
                                                             "background": [], "slice": 3}, session_id=sid)
    assert status == 200, out
    arr = read_volume(result).array
    assert arr[3].sum() > 20 and arr.sum() == arr[3].sum()
    status, _, body = client.infer("medmem_3d", "blob", {"foreground": [[500, 2, 2]]}, session_id=sid)
    assert status == 400 and b"outside the image" in body
    status, _, body = client.infer("medmem_3d", "blob", {"foreground": []}, session_id=sid)
    assert status == 400 and b"foreground clicks or an ROI" in body
    status, _, body = client.infer("nope", "blob", {"foreground": [[2, 2, 2]]}, session_id=sid)
    assert status == 404
    status, _, body = client.infer("medmem_3d", "blob", {"foreground": [[2, 2, 2]]}, session_id="A" * 24)
    assert status == 404
    assert client.info()[0] == 200
