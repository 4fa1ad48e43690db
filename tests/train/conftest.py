import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
# one thread: on a shared 2-core machine, 2 OpenMP threads competing with another process run ~50x slower
torch.set_num_threads(1)
