import os
import sys

# "auto" precision stays fp32 on the CPU in the tests, also on CPUs with native bf16, where it would be bf16
# (engine/autocast.py): the oracle tests compare fp32 outputs to 1e-4. Set before medmem is imported, and
# inherited by the subprocesses that tests start; tests/engine/test_precision.py covers the bf16 rule itself.
os.environ["MEDMEM_CPU_BF16"] = "0"

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
