"""train_metrics.json's train_top1_final: the last tenth of the steps' training-batch top-1 per domain."""

import pandas as pd
import pytest

from mpnas.training.trainer import final_train_accuracy


def test_mean_over_the_last_tenth_of_logged_steps():
    history = pd.DataFrame({"step": range(1, 21), "train_acc/a": [0.0] * 18 + [0.5, 0.7],
                            "train_acc/b": [1.0] * 20, "val_top1/a": [None] * 19 + [0.4]})
    assert final_train_accuracy(history, ["a", "b"]) == pytest.approx({"a": 0.6, "b": 1.0})


def test_short_history_uses_at_least_one_row_and_skips_unknown_domains():
    history = pd.DataFrame({"step": [1, 2], "train_acc/a": [0.2, 0.4]})
    assert final_train_accuracy(history, ["a", "c"]) == pytest.approx({"a": 0.4})
