import pytest

from medmem.eval.interactive import final_score, interaction_auc


def test_cvpr25_auc_uses_the_five_click_steps():
    # [box, click1..click5]; the challenge integrates the last 5 values with unit spacing
    scores = [0.1, 0.5, 0.6, 0.7, 0.8, 0.9]
    expect = (0.5 + 0.6) / 2 + (0.6 + 0.7) / 2 + (0.7 + 0.8) / 2 + (0.8 + 0.9) / 2
    assert interaction_auc(scores) == pytest.approx(expect)  # 2.8
    assert interaction_auc(scores[1:]) == pytest.approx(expect)  # box value optional
    assert interaction_auc([1.0] * 6) == pytest.approx(4.0)  # maximum is n_clicks - 1
    assert interaction_auc(scores, normalize=True) == pytest.approx(expect / 4)


def test_auc_variants():
    scores = [0.0, 1.0, 1.0]
    assert interaction_auc(scores, include_box=True) == pytest.approx(0.5 + 1.0)
    assert interaction_auc(scores, n_clicks=None) == pytest.approx(1.5)
    assert interaction_auc([0.4], n_clicks=1) == 0.0
    assert interaction_auc([0.4], n_clicks=1, normalize=True) == 0.4
    with pytest.raises(ValueError):
        interaction_auc([0.1, 0.2], n_clicks=5)
    with pytest.raises(ValueError):
        interaction_auc([])
    with pytest.raises(ValueError):
        interaction_auc([0.1, float("nan"), 0.2, 0.3, 0.4])


def test_final_score():
    assert final_score([0.2, 0.9]) == 0.9
    with pytest.raises(ValueError):
        final_score([])
