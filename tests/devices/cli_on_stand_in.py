"""`python -m tests.devices.cli_on_stand_in ARGS...`: the chainrule command with the stand-in GPU registered as
"cuda" (run under NUMBA_ENABLE_CUDASIM=1, so the recurrent kernels run in numba's simulator)."""
import sys

from chainrule._kernels.device import use_cuda_backend
from chainrule.charlm.cli import main
from tests.devices.fake_cuda import BACKEND

if __name__ == "__main__":
    use_cuda_backend(BACKEND)
    sys.exit(main(sys.argv[1:]))
