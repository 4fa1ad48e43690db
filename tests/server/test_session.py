"""The editing session: prompts, propagation, undo/redo (snapshot and replay paths), objects, masks."""
from __future__ import annotations

import numpy as np
import pytest

from server_live import blob_volume
from medmem.io import Volume
from medmem.server.session import EditSession


@pytest.fixture()
def edit(model):
    return EditSession(model, Volume(blob_volume(), spacing=(1.5, 1.5, 2.0)))


def test_propagate_correct_undo_redo(edit, model):
    """Same labels as an engine VolumeSession; undo/redo restore exact states (copy and replay paths);
    undoing another object's step leaves the first object alone."""
    from medmem import VolumeSession

    o = edit.add_object("blob")
    edit.prompt(o, "axial", 4, box=[8, 10, 32, 38])
    edit.propagate()
    vs = VolumeSession(model, edit.volume, "fifo", axis="axial")
    vs.add_prompt(4, 1, box=[8, 10, 32, 38])
    list(vs.propagate())
    before = edit.label_volume().copy()
    assert before.sum() > 100
    np.testing.assert_array_equal(before, vs.label_volume())
    assert not edit.dirty_objects()

    edit.prompt(o, "axial", 6, points=[[20, 24]], labels=[0])
    edit.propagate()
    after = edit.label_volume().copy()
    assert not np.array_equal(before, after), "the correction changed nothing; the test would prove nothing"
    edit.undo()
    np.testing.assert_array_equal(edit.label_volume(), before)
    edit.redo()
    np.testing.assert_array_equal(edit.label_volume(), after)
    edit._snapshots.clear()          # no kept copy: undo replays the object's log
    edit.undo()
    np.testing.assert_array_equal(edit.label_volume(), before)

    o2 = edit.add_object("second")
    edit.prompt(o2, "axial", 2, box=[2, 2, 12, 12])
    assert edit.dirty_objects() == [o2]
    assert not np.array_equal(edit.label_volume(), before)
    edit.undo()
    np.testing.assert_array_equal(edit.label_volume(), before)


def test_bad_prompts_change_nothing(edit):
    o = edit.add_object()
    v = edit.version
    with pytest.raises(ValueError, match="outside"):
        edit.prompt(o, "axial", 99, box=[1, 1, 5, 5])
    with pytest.raises(ValueError, match="box"):
        edit.prompt(o, "axial", 2, box=[5, 5, 1, 1])
    with pytest.raises(ValueError, match="axis"):
        edit.prompt(o, "oblique", 2, box=[1, 1, 5, 5])
    with pytest.raises(KeyError):
        edit.prompt(42, "axial", 2, box=[1, 1, 5, 5])
    assert edit.history == [] and edit.version == v
    edit.prompt(o, "axial", 2, box=[1, 1, 20, 20])
    with pytest.raises(ValueError, match="propagates along the axial"):
        edit.prompt(o, "coronal", 2, box=[1, 1, 5, 5])


def test_start_from_mask_and_replay_from_log(edit, model):
    ref = (edit.volume.array > 110).astype(np.uint8) * 3
    new = edit.seed_from_mask(ref, "axial", every=3)
    assert [edit.objects[i].name for i in new] == ["label 3"]
    lab = edit.label_volume()
    dice = 2 * ((lab > 0) & (ref > 0)).sum() / ((lab > 0).sum() + (ref > 0).sum())
    assert dice > 0.8, dice
    with pytest.raises(ValueError, match="shape"):
        edit.seed_from_mask(ref[:3], "axial")
    again = EditSession(model, edit.volume)      # the saved log alone rebuilds the masks (server restart)
    again.load_json(edit.to_json())
    again.replay_all()
    np.testing.assert_array_equal(again.label_volume(), lab)


def test_object_names_and_colours(edit):
    o = edit.add_object("liver", "#00FF00")
    assert edit.objects[o].color == "#00ff00"
    with pytest.raises(ValueError, match="colour"):
        edit.update_object(o, color="red; x")
    edit.update_object(o, name="  <b>x</b>\x00 ")
    assert edit.objects[o].name == "<b>x</b>"
    edit.delete_object(o)
    assert o not in edit.objects
