"""Test-session settings shared by every test folder.

pytest-xdist runs one worker per core; each worker uses one torch thread, since two workers with two
OpenMP threads each on two cores make small tensor operations wait on descheduled threads (measured:
a 10x slowdown of the verifier's small ops).
"""

import torch

torch.set_num_threads(1)
